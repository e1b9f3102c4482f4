// study_state.cpp: the per-study state file, one "key value" per line.
#include "serve/study_state.h"

#include <chrono>
#include <fstream>
#include <sstream>

#include "engine/error.h"
#include "io/atomic_file.h"

namespace ich {

const char* phase_name(StudyPhase p) {
  switch (p) {
    case StudyPhase::receiving: return "receiving";
    case StudyPhase::stable: return "stable";
    case StudyPhase::processed: return "processed";
    case StudyPhase::sent: return "sent";
    case StudyPhase::failed: return "failed";
  }
  return "?";
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool usable_uid(const std::string& u) {
  return !u.empty() && u.size() <= 64 && u != "." && u != ".." &&
         u.find_first_not_of("0123456789.abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_-") == std::string::npos;
}

std::string study_dir(const std::string& work, const std::string& uid) {
  ICH_CHECK(usable_uid(uid), "StudyInstanceUID '", uid, "' is not a UID (digits and dots, at most 64 characters)");
  return work + "/studies/" + uid;
}

namespace {
std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}
}  // namespace

void save_study_state(const std::string& dir, const StudyState& s) {
  std::ostringstream o;
  o << "study_uid " << s.study_uid << "\nphase " << phase_name(s.phase) << "\nseq " << s.seq << "\nround " << s.round
    << "\ninstances " << s.instances << "\ncalling_aet " << one_line(s.calling_aet) << "\nfirst_ms " << s.first_ms
    << "\nlast_ms " << s.last_ms << "\nstable_ms " << s.stable_ms << "\nprocessed_ms " << s.processed_ms
    << "\nsent_ms " << s.sent_ms << "\nsend_attempts " << s.send_attempts << "\nnext_send_ms " << s.next_send_ms
    << "\njsonl_written " << (s.jsonl_written ? 1 : 0) << "\nreopen " << (s.reopen ? 1 : 0) << "\nlast_error " << one_line(s.last_error)
    << "\nresult_json " << one_line(s.result_json) << "\nfhir_round " << s.fhir_round << "\nfhir_attempts "
    << s.fhir_attempts << "\nfhir_next_ms " << s.fhir_next_ms << "\nfhir_sent_ms " << s.fhir_sent_ms << "\nfhir_done "
    << (s.fhir_done ? 1 : 0) << "\nfhir_jsonl_written " << (s.fhir_jsonl_written ? 1 : 0) << "\nfhir_error "
    << one_line(s.fhir_error) << "\n";
  for (const std::string& r : s.rejected) o << "rejected " << one_line(r) << "\n";
  o << "end\n";  // a state file without it was not written by save_study_state
  write_file_atomic(dir + "/state", o.str());
}

StudyState load_study_state(const std::string& dir) {
  const std::string path = dir + "/state";
  std::ifstream in(path);
  ICH_CHECK(in.good(), path, ": cannot open");
  StudyState s;
  std::string line;
  bool ended = false;
  for (int n = 1; std::getline(in, line); ++n) {
    const size_t sp = line.find(' ');
    const std::string key = line.substr(0, sp), v = sp == std::string::npos ? "" : line.substr(sp + 1);
    auto num = [&] {
      try {
        size_t used = 0;
        const long long x = std::stoll(v, &used);
        if (used == v.size()) return int64_t(x);
      } catch (const std::exception&) {
      }
      throw Error(path + ":" + std::to_string(n) + ": '" + key + "' wants an integer, not '" + v + "'");
    };
    if (key == "study_uid") s.study_uid = v;
    else if (key == "phase") {
      if (v == "receiving") s.phase = StudyPhase::receiving;
      else if (v == "stable") s.phase = StudyPhase::stable;
      else if (v == "processed") s.phase = StudyPhase::processed;
      else if (v == "sent") s.phase = StudyPhase::sent;
      else if (v == "failed") s.phase = StudyPhase::failed;
      else throw Error(path + ":" + std::to_string(n) + ": unknown phase '" + v + "'");
    } else if (key == "seq") s.seq = num();
    else if (key == "round") s.round = num();
    else if (key == "instances") s.instances = num();
    else if (key == "calling_aet") s.calling_aet = v;
    else if (key == "first_ms") s.first_ms = num();
    else if (key == "last_ms") s.last_ms = num();
    else if (key == "stable_ms") s.stable_ms = num();
    else if (key == "processed_ms") s.processed_ms = num();
    else if (key == "sent_ms") s.sent_ms = num();
    else if (key == "send_attempts") s.send_attempts = num();
    else if (key == "next_send_ms") s.next_send_ms = num();
    else if (key == "jsonl_written") s.jsonl_written = num() != 0;
    else if (key == "reopen") s.reopen = num() != 0;
    else if (key == "last_error") s.last_error = v;
    else if (key == "result_json") s.result_json = v;
    else if (key == "fhir_round") s.fhir_round = num();
    else if (key == "fhir_attempts") s.fhir_attempts = num();
    else if (key == "fhir_next_ms") s.fhir_next_ms = num();
    else if (key == "fhir_sent_ms") s.fhir_sent_ms = num();
    else if (key == "fhir_done") s.fhir_done = num() != 0;
    else if (key == "fhir_jsonl_written") s.fhir_jsonl_written = num() != 0;
    else if (key == "fhir_error") s.fhir_error = v;
    else if (key == "rejected") s.rejected.push_back(v);
    else if (key == "end") ended = true;
    else throw Error(path + ":" + std::to_string(n) + ": unknown key '" + key + "'");
  }
  ICH_CHECK(ended, path, ": incomplete (no 'end' line)");
  ICH_CHECK(s.study_uid.size() > 0, path, ": no study_uid");
  return s;
}

}  // namespace ich
