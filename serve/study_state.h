// study_state.h: what ich-serve knows about one study, on disk.
//
// A study moves receiving -> stable -> processed -> sent. Each change is
// written atomically to DIR/studies/<StudyInstanceUID>/state before anything
// depends on it, so that after kill -9 a restart reads every study back and
// goes on from its last written phase:
//   receiving  instances are arriving; it becomes stable when none has come
//              for --stable-seconds (after a restart, counted from the restart)
//   stable     waiting for, or in, the worker pool (processing is redone)
//   processed  its SR and key images are written under results/ (with their
//              UIDs), waiting to be sent or being retried
//   sent       the destination acknowledged every object; results.jsonl has
//              its line (jsonl_written)
//   failed     nothing in it could be analysed (results.jsonl says why)
// New instances for a study past receiving reopen it (round + 1): new results
// in a new series; instances already held are acknowledged and ignored.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ich {

enum class StudyPhase { receiving, stable, processed, sent, failed };
const char* phase_name(StudyPhase p);

struct StudyState {
  std::string study_uid;
  StudyPhase phase = StudyPhase::receiving;
  int64_t seq = 0;     // arrival order (the first instance's) among all studies
  int64_t round = 1;   // results made for this study so far + 1 while open
  int64_t instances = 0;
  std::string calling_aet;
  std::vector<std::string> rejected;  // instances that could not be read on arrival: "SOP UID: reason"
  // wall-clock milliseconds since the epoch
  int64_t first_ms = 0, last_ms = 0, stable_ms = 0, processed_ms = 0, sent_ms = 0;
  int64_t send_attempts = 0, next_send_ms = 0;
  bool jsonl_written = false;
  bool reopen = false;  // new instances came while its results were being made or sent
  std::string last_error;
  // The FHIR Bundle of round fhir_round (0: none due), posted on its own
  // schedule once the DICOM results of that round were sent (serve/fhir.h);
  // fhir.jsonl gets a line when it was taken (fhir_jsonl_written).
  int64_t fhir_round = 0, fhir_attempts = 0, fhir_next_ms = 0, fhir_sent_ms = 0;
  bool fhir_done = false, fhir_jsonl_written = false;
  std::string fhir_error;
  std::string result_json;  // the results.jsonl line, less the sending fields (set when processed)
};

// A UID ich-serve files things under: digits and dots as PS3.5 9.1 says, or
// the letters, '_' and '-' of de-identified data sets (RSNA's "ID_3f1c..."),
// at most 64 characters, never "." or "..".
bool usable_uid(const std::string& uid);
// DIR/studies/<uid>, for a usable_uid (checked).
std::string study_dir(const std::string& work, const std::string& study_uid);
void save_study_state(const std::string& dir, const StudyState& s);
StudyState load_study_state(const std::string& dir);  // throws naming the file and line

int64_t now_ms();

}  // namespace ich
