// study_book.cpp: the receiver's sink and the studies' registry (study_book.h).
#include "serve/study_book.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>

#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "engine/error.h"
#include "serve/metrics.h"

namespace ich {

namespace fs = std::filesystem;

namespace {

std::string line_prefix(const StudyState& s) {
  return "{\"study_uid\":" + json_quote(s.study_uid) + ",\"round\":" + std::to_string(s.round) + ",";
}

}  // namespace

std::string fhir_jsonl_line(const StudyState& s) {
  return "{\"study_uid\":" + json_quote(s.study_uid) + ",\"round\":" + std::to_string(s.fhir_round) +
         ",\"fhir\":{\"attempts\":" + std::to_string(s.fhir_attempts) + ",\"sent_ms\":" + std::to_string(s.fhir_sent_ms) + "}}";
}

namespace {

int64_t free_mb(const std::string& dir) {
  struct statvfs v;
  if (::statvfs(dir.c_str(), &v) != 0) return -1;
  return int64_t(v.f_bavail) * int64_t(v.f_frsize) / (1024 * 1024);
}


}  // namespace

StudyBook::StudyBook(BookOptions o) : o_(std::move(o)) {
  fs::create_directories(o_.work + "/studies");
  fs::create_directories(o_.work + "/incoming");
  fs::create_directories(o_.work + "/rejected");
  // Instances being received when the last run ended were never acknowledged:
  // their senders send them again.
  for (const auto& e : fs::directory_iterator(o_.work + "/incoming")) fs::remove(e.path());
  const int64_t now = now_ms();
  for (const auto& e : fs::directory_iterator(o_.work + "/studies")) {
    if (!fs::exists(e.path() / "state")) continue;  // a study whose first instance never landed
    StudyState s;
    try {
      s = load_study_state(e.path().string());
    } catch (const std::exception& ex) {
      std::fprintf(stderr, "ich-serve: skipping a study: %s\n", ex.what());
      continue;
    }
    if (s.phase == StudyPhase::receiving) s.last_ms = std::max(s.last_ms, now);
    if (s.phase == StudyPhase::processed) s.next_send_ms = now;
    if (s.phase == StudyPhase::sent && !s.jsonl_written) {
      if (!jsonl_has(line_prefix(s))) append_jsonl(s.result_json);
      s.jsonl_written = true;
      save_study_state(e.path().string(), s);
    }
    if (s.fhir_round > 0 && !s.fhir_done) s.fhir_next_ms = now;
    if (s.fhir_done && !s.fhir_jsonl_written) {  // taken by the FHIR server, killed before the line
      const std::string line = fhir_jsonl_line(s);
      if (!jsonl_has(line.substr(0, line.find("\"fhir\"") + 6), "fhir.jsonl")) append_jsonl(line, "fhir.jsonl");
      s.fhir_jsonl_written = true;
      save_study_state(e.path().string(), s);
    }
    if (s.reopen && (s.phase == StudyPhase::sent || s.phase == StudyPhase::failed)) reopen_locked(s);
    next_seq_ = std::max(next_seq_, s.seq + 1);
    studies_[s.study_uid] = s;
  }
}

std::map<StudyPhase, int> StudyBook::census() {
  std::lock_guard<std::mutex> lock(mu_);
  std::map<StudyPhase, int> n;
  for (const auto& [uid, s] : studies_) ++n[s.phase];
  return n;
}

std::string StudyBook::refuse_association() {
  const int64_t mb = free_mb(o_.work);
  if (mb >= 0 && mb < o_.min_free_mb)
    return o_.work + " has " + std::to_string(mb) + " MB free (--min-free-mb " + std::to_string(o_.min_free_mb) + ")";
  std::lock_guard<std::mutex> lock(mu_);
  int pending = 0;
  for (const auto& [uid, s] : studies_) pending += s.phase == StudyPhase::receiving || s.phase == StudyPhase::stable;
  if (pending >= o_.max_pending)
    return std::to_string(pending) + " studies wait to be processed (--max-pending " + std::to_string(o_.max_pending) + ")";
  return "";
}

void StudyBook::reopen_locked(StudyState& s) {
  if (o_.metrics) o_.metrics->add("ich_serve_studies_received_total");
  s.phase = StudyPhase::receiving;
  s.round += 1;
  s.reopen = false;
  s.last_ms = std::max(s.last_ms, now_ms());
  s.stable_ms = s.processed_ms = s.sent_ms = 0;
  s.send_attempts = s.next_send_ms = 0;
  s.jsonl_written = false;
  s.last_error.clear();
  s.result_json.clear();
  save_study_state(dir(s.study_uid), s);
}

uint16_t StudyBook::store(const std::string& path, const std::string& sop_in_request, AssociationLog& log) {
  const int64_t mb = free_mb(o_.work);
  if (mb >= 0 && mb < o_.min_free_mb) {
    std::fprintf(stderr, "ich-serve: refused instance %s from %s: %s has %lld MB free (--min-free-mb %lld)\n",
                 sop_in_request.c_str(), log.calling_aet.c_str(), o_.work.c_str(), (long long)mb,
                 (long long)o_.min_free_mb);
    fs::remove(path);
    return 0xA700;  // Refused: Out of Resources
  }
  // Read it whole: a truncated or non-DICOM payload fails here.
  std::string study, sop, why, sop_class, patient;
  {
    DcmFileFormat ff;
    const OFCondition c = ff.loadFile(path.c_str());
    OFString v;
    if (c.bad()) why = std::string("not a readable DICOM data set (") + c.text() + ")";
    else if (ff.getDataset()->findAndGetOFString(DCM_StudyInstanceUID, v).bad() || !usable_uid(v.c_str()))
      why = "no valid StudyInstanceUID";
    else {
      study = v.c_str();
      if (ff.getDataset()->findAndGetOFString(DCM_SOPInstanceUID, v).bad() || !usable_uid(v.c_str()))
        why = "no valid SOPInstanceUID";
      else sop = v.c_str();
      if (ff.getDataset()->findAndGetOFString(DCM_SOPClassUID, v).good()) sop_class = v.c_str();
      if (ff.getDataset()->findAndGetOFString(DCM_PatientID, v).good()) patient = v.c_str();
    }
  }
  if (!why.empty()) {
    const std::string kept = o_.work + "/rejected/" + std::to_string(now_ms()) + "-" +
                             (usable_uid(sop_in_request) ? sop_in_request : std::string("instance")) + ".bin";
    fs::rename(path, kept);
    const std::string text = "instance " + sop_in_request + " from " + log.calling_aet + ": " + why + " (kept as " + kept + ")";
    std::fprintf(stderr, "ich-serve: %s\n", text.c_str());
    if (!log.last_study.empty())
      modify(log.last_study, [&](StudyState& s) { s.rejected.push_back(text); });
    else
      log.unattributed.push_back(text);
    return 0xC000;  // Error: Cannot understand
  }
  std::lock_guard<std::mutex> lock(mu_);
  const std::string d = dir(study);
  const std::string dest = d + "/instances/" + sop + ".dcm";
  StudyState* s = nullptr;
  auto it = studies_.find(study);
  if (it == studies_.end()) {
    fs::create_directories(d + "/instances");
    StudyState n;
    n.study_uid = study;
    n.seq = next_seq_++;
    n.first_ms = now_ms();
    n.calling_aet = log.calling_aet;
    s = &(studies_[study] = n);
    if (o_.metrics) o_.metrics->add("ich_serve_studies_received_total");
  } else {
    s = &it->second;
  }
  if (fs::exists(dest)) {  // a resend of an instance already held
    fs::remove(path);
    if (s->phase == StudyPhase::receiving) s->last_ms = now_ms();
  } else {
    fs::rename(path, dest);
    s->instances += 1;
    s->last_ms = now_ms();
    if (s->phase != StudyPhase::receiving) {
      if (claimed_.count(study)) s->reopen = true;
      else reopen_locked(*s);
    }
  }
  for (const std::string& u : log.unattributed) s->rejected.push_back(u);
  log.unattributed.clear();
  log.last_study = study;
  ReceivedStudy& got = log.received[study];  // the association's audit record
  got.sop_classes[sop_class] += 1;
  if (got.patient_id.empty()) got.patient_id = patient;
  save_study_state(d, *s);
  return 0;
}

void StudyBook::association_ended(AssociationLog& log) {
  if (log.unattributed.empty()) return;
  std::string line = "{\"event\":\"unattributed\",\"calling_aet\":" + json_quote(log.calling_aet) + ",\"peer\":" +
                     json_quote(log.peer) + ",\"unreadable\":[";
  for (size_t i = 0; i < log.unattributed.size(); ++i) line += (i ? "," : "") + json_quote(log.unattributed[i]);
  append_jsonl(line + "]}");
  log.unattributed.clear();
}

void StudyBook::mark_stable(int64_t now) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [uid, s] : studies_)
    if (s.phase == StudyPhase::receiving && now - s.last_ms >= o_.stable_ms) {
      s.phase = StudyPhase::stable;
      s.stable_ms = now;
      save_study_state(dir(uid), s);
    }
}

std::optional<StudyState> StudyBook::claim(StudyPhase phase, int64_t now) {
  return claim_first([&](const StudyState& s) {
    return s.phase == phase && (phase != StudyPhase::processed || s.next_send_ms <= now);
  });
}

std::optional<StudyState> StudyBook::claim_first(const std::function<bool(const StudyState&)>& due) {
  std::lock_guard<std::mutex> lock(mu_);
  const StudyState* best = nullptr;
  for (const auto& [uid, s] : studies_)
    if (!claimed_.count(uid) && due(s) && (!best || s.seq < best->seq)) best = &s;
  if (!best) return std::nullopt;
  claimed_.insert(best->study_uid);
  return *best;
}

std::optional<StudyState> StudyBook::claim_fhir(int64_t now) {
  return claim_first([&](const StudyState& s) { return s.fhir_round > 0 && !s.fhir_done && s.fhir_next_ms <= now; });
}

void StudyBook::modify(const std::string& uid, const std::function<void(StudyState&)>& f) {
  std::lock_guard<std::mutex> lock(mu_);
  StudyState& s = studies_.at(uid);
  f(s);
  save_study_state(dir(uid), s);
}

void StudyBook::release(const std::string& uid) {
  std::lock_guard<std::mutex> lock(mu_);
  claimed_.erase(uid);
  StudyState& s = studies_.at(uid);
  if (s.reopen && s.phase != StudyPhase::receiving) reopen_locked(s);
}

bool StudyBook::jsonl_has(const std::string& prefix, const std::string& file) {
  std::lock_guard<std::mutex> lock(jsonl_mu_);
  std::ifstream in(o_.work + "/" + file);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(prefix, 0) == 0) return true;
  return false;
}

void StudyBook::append_jsonl(const std::string& line, const std::string& file) {
  std::lock_guard<std::mutex> lock(jsonl_mu_);
  const std::string path = o_.work + "/" + file;
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  ICH_CHECK(fd >= 0, path, ": cannot open for appending");
  const std::string text = line + "\n";
  const ssize_t n = ::write(fd, text.data(), text.size());  // one write: a line is whole or absent
  const bool ok = n == ssize_t(text.size()) && ::fsync(fd) == 0;
  ::close(fd);
  ICH_CHECK(ok, path, ": cannot append a line (disk full?)");
}

}  // namespace ich
