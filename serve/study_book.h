// study_book.h: every study ich-serve holds, in memory and on disk
// (serve/study_state.h), shared by the receiver, the workers and the sender.
// It is the receiver's StoreSink: it files each received instance under its
// study, and refuses associations while --max-pending studies wait.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "io/json.h"
#include "serve/receiver.h"
#include "serve/study_state.h"

namespace ich {

class Metrics;

// The fhir.jsonl line of a study whose FHIR Bundle was taken.
std::string fhir_jsonl_line(const StudyState& s);

struct BookOptions {
  std::string work;
  Metrics* metrics = nullptr;  // optional: studies received (new, or reopened by new instances)
  int64_t stable_ms = 10000;
  int max_pending = 64;
  int64_t min_free_mb = 512;
};

class StudyBook : public StoreSink {
 public:
  // Reads every study back from DIR/studies (a restart): receiving ones wait
  // a full quiet period from now; sent ones get their results.jsonl line if
  // a kill came between the sending and the line.
  explicit StudyBook(BookOptions o);

  std::string refuse_association() override;
  uint16_t store(const std::string& path, const std::string& sop_uid_in_request, AssociationLog& log) override;
  void association_ended(AssociationLog& log) override;

  // Receiving studies quiet for stable_ms become stable.
  void mark_stable(int64_t now);
  // The first study in arrival order in phase (processed: due to be sent)
  // that no one holds; it is held until release().
  std::optional<StudyState> claim(StudyPhase phase, int64_t now);
  // Changes a study under the lock and writes its state file.
  void modify(const std::string& uid, const std::function<void(StudyState&)>& f);
  // Lets a claimed study go; a study that got new instances meanwhile reopens.
  void release(const std::string& uid);
  // Appends one line to DIR/results.jsonl, or another file of DIR (one write, fsynced).
  void append_jsonl(const std::string& line, const std::string& file = "results.jsonl");
  // The first study in arrival order whose FHIR Bundle is due (fhir_round
  // set, not taken yet, its next try reached) that no one holds; held until release().
  std::optional<StudyState> claim_fhir(int64_t now);
  std::string dir(const std::string& uid) const { return study_dir(o_.work, uid); }
  std::map<StudyPhase, int> census();

 private:
  // The first study in arrival order that no one holds and `due` takes, now held.
  std::optional<StudyState> claim_first(const std::function<bool(const StudyState&)>& due);
  void reopen_locked(StudyState& s);
  bool jsonl_has(const std::string& prefix, const std::string& file = "results.jsonl");
  BookOptions o_;
  std::mutex mu_, jsonl_mu_;
  std::map<std::string, StudyState> studies_;
  std::set<std::string> claimed_;
  int64_t next_seq_ = 1;
};

}  // namespace ich
