// server.cpp: ich-serve's threads (server.h): the receiver, the scheduler
// (this thread), the worker pool and the sender, around one StudyBook.
#include "serve/server.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <thread>

#include "data/csv.h"
#include "data/phantom.h"
#include "engine/dist/store.h"
#include "engine/error.h"
#include "serve/analyse.h"
#include "serve/receiver.h"
#include "serve/results.h"
#include "serve/study_book.h"
#include "weights/atomic_file.h"

namespace ich {

namespace fs = std::filesystem;

namespace {

// This node's Device Observer UID, made once per work folder.
std::string node_uid(const std::string& work) {
  const std::string path = work + "/node_uid";
  std::ifstream in(path);
  std::string uid;
  if (in >> uid && !uid.empty()) return uid;
  uid = new_dicom_uid();
  write_file_atomic(path, uid + "\n");
  return uid;
}

std::string seconds(double s) { return fmt_double(std::round(s * 1000) / 1000, 6); }

// The results.jsonl line of a processed study, less what sending adds
// (it starts as StudyBook's jsonl_has() looks for).
std::string result_line(const StudyState& s, const Analysis& a, int64_t started_ms) {
  const StudyFindings& f = a.findings;
  std::string j = "{\"study_uid\":" + json_quote(s.study_uid) + ",\"round\":" + std::to_string(s.round) +
                  ",\"calling_aet\":" + json_quote(s.calling_aet) + ",\"instances\":" + std::to_string(s.instances) +
                  ",\"slices\":" + std::to_string(a.slices) + ",\"finding\":\"" + (f.present ? "present" : "absent") +
                  "\",\"threshold\":" + f.threshold + ",\"probabilities\":{";
  for (size_t k = 0; k < 6; ++k) j += std::string(k ? "," : "") + "\"" + kSubtypes[k] + "\":" + f.p[k];
  j += "},\"key_images\":[";
  for (size_t k = 0; k < a.keys.size(); ++k)
    j += std::string(k ? "," : "") + "{\"sop_uid\":" + json_quote(a.keys[k].sop_uid) + ",\"source_sop_uid\":" +
         json_quote(a.keys[k].source.sop_uid) + ",\"frame\":" + std::to_string(a.keys[k].source.frame) +
         ",\"any\":" + a.keys[k].p[5] + "}";
  j += "],\"sr_sop_uid\":" + json_quote(a.written.sr_sop_uid) + ",\"unreadable\":[";
  for (size_t k = 0; k < f.unreadable.size(); ++k) j += std::string(k ? "," : "") + json_quote(f.unreadable[k]);
  j += "],\"timings_s\":{\"receiving\":" + seconds((s.last_ms - s.first_ms) / 1e3) +
       ",\"quiet\":" + seconds((s.stable_ms - s.last_ms) / 1e3) + ",\"queued\":" + seconds((started_ms - s.stable_ms) / 1e3) +
       ",\"predict\":" + seconds(a.predict_s) + ",\"key_images\":" + seconds(a.key_images_s) +
       ",\"write\":" + seconds(a.write_s) + "}}";
  return j;
}

// A step that failed outside a study's own error handling (its state file
// could not be written: a full disk) is reported and retried on the next
// round instead of ending the node; the study keeps its last written phase.
void guarded(const std::string& what, const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ich-serve: %s failed: %s\n", what.c_str(), e.what());
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
}

void process_one(StudyBook& book, StudyAnalyser& analyser, const StudyState& s) {
  const int64_t started = now_ms();
  try {
    const Analysis a = analyser.analyse(s, book.dir(s.study_uid));
    const std::string line = result_line(s, a, started);
    book.modify(s.study_uid, [&](StudyState& t) {
      t.phase = StudyPhase::processed;
      t.processed_ms = now_ms();
      t.result_json = line;
      t.next_send_ms = 0;
      t.send_attempts = 0;
    });
    std::fprintf(stderr, "ich-serve: study %s (round %lld): %lld slices, intracranial hemorrhage %s (p(any) %s), %zu key images, %zu instances not read\n",
                 s.study_uid.c_str(), (long long)s.round, (long long)a.slices, a.findings.present ? "PRESENT" : "absent",
                 a.findings.p[5].c_str(), a.keys.size(), a.findings.unreadable.size());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ich-serve: study %s (round %lld) could not be analysed: %s\n", s.study_uid.c_str(),
                 (long long)s.round, e.what());
    const std::string line = "{\"study_uid\":" + json_quote(s.study_uid) + ",\"round\":" + std::to_string(s.round) +
                             ",\"error\":" + json_quote(e.what()) + "}";
    book.modify(s.study_uid, [&](StudyState& t) {
      t.phase = StudyPhase::failed;
      t.last_error = e.what();
      t.result_json = line;
    });
    book.append_jsonl(line);
    book.modify(s.study_uid, [&](StudyState& t) { t.jsonl_written = true; });
  }
}

std::vector<std::string> result_files(const std::string& dir) {
  std::vector<std::string> keys;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().rfind("key_", 0) == 0 && e.path().extension() == ".dcm") keys.push_back(e.path().string());
  std::sort(keys.begin(), keys.end());
  keys.push_back(dir + "/sr.dcm");  // after the images it references
  return keys;
}

void send_one(StudyBook& book, const ServeOptions& o, const StudyState& s) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::string dir = book.dir(s.study_uid) + "/round" + std::to_string(s.round) + "/results";
  try {
    send_files(o.dest, result_files(dir));
  } catch (const std::exception& e) {
    const int64_t attempts = s.send_attempts + 1;
    const double wait = std::min(o.retry_max_seconds, o.retry_first_seconds * std::pow(2.0, double(attempts - 1)));
    book.modify(s.study_uid, [&](StudyState& t) {
      t.send_attempts = attempts;
      t.next_send_ms = now_ms() + int64_t(wait * 1000);
      t.last_error = e.what();
    });
    std::fprintf(stderr, "ich-serve: study %s: sending failed (attempt %lld), next try in %.0f s: %s\n",
                 s.study_uid.c_str(), (long long)attempts, wait, e.what());
    return;
  }
  const int64_t sent = now_ms();
  const double send_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::string line = s.result_json;
  line.pop_back();  // the closing brace
  line += ",\"sent\":{\"destination\":" + json_quote(o.dest.aet + "@" + o.dest.host + ":" + std::to_string(o.dest.port)) +
          ",\"attempts\":" + std::to_string(s.send_attempts + 1) + ",\"send_s\":" + seconds(send_s) +
          ",\"latency_s\":" + seconds((sent - s.last_ms) / 1e3) + "}}";
  book.modify(s.study_uid, [&](StudyState& t) {
    t.phase = StudyPhase::sent;
    t.sent_ms = sent;
    t.send_attempts += 1;
    t.result_json = line;
    t.last_error.clear();
  });
  book.append_jsonl(line);
  book.modify(s.study_uid, [&](StudyState& t) { t.jsonl_written = true; });
  std::fprintf(stderr, "ich-serve: study %s: results sent to %s (%.2f s after its last instance)\n",
               s.study_uid.c_str(), o.dest.aet.c_str(), (sent - s.last_ms) / 1e3);
}

}  // namespace

void run_server(const ServeOptions& o, const std::atomic<bool>& stop) {
  ICH_CHECK(!o.work.empty(), "--work is required");
  ICH_CHECK(o.workers >= 1 && o.max_pending >= 1 && o.max_associations >= 1 && o.key_images >= 0,
            "--workers, --max-pending and --max-associations must be positive");
  ICH_CHECK(o.threshold > 0 && o.threshold < 1, "--threshold ", o.threshold, " is not between 0 and 1");
  ICH_CHECK(!dist::port_in_use(o.port), "port ", o.port, " is in use: another ich-serve or DICOM node listens there (--port)");
  fs::create_directories(o.work);
  AnalyseOptions ao;
  ao.checkpoint = o.checkpoint;
  ao.sequence = o.sequence;
  ao.device = o.device;
  ao.batch = o.batch;
  ao.threshold = o.threshold;
  ao.key_images = o.key_images;
  ao.aet = o.aet;
  ao.observer_uid = node_uid(o.work);
  // One analyser (its own models) per worker, all loaded before anything
  // listens: a bad checkpoint fails here.
  std::vector<std::unique_ptr<StudyAnalyser>> analysers;
  for (int i = 0; i < o.workers; ++i) analysers.push_back(std::make_unique<StudyAnalyser>(ao));
  BookOptions bo;
  bo.work = o.work;
  bo.stable_ms = int64_t(o.stable_seconds * 1000);
  bo.max_pending = o.max_pending;
  bo.min_free_mb = o.min_free_mb;
  StudyBook book(bo);
  {
    const auto n = book.census();
    std::fprintf(stderr, "ich-serve: %s listening on port %d; work %s (%d receiving, %d stable, %d processed, %d sent); results to %s@%s:%d\n",
                 o.aet.c_str(), o.port, o.work.c_str(), n.count(StudyPhase::receiving) ? n.at(StudyPhase::receiving) : 0,
                 n.count(StudyPhase::stable) ? n.at(StudyPhase::stable) : 0,
                 n.count(StudyPhase::processed) ? n.at(StudyPhase::processed) : 0,
                 n.count(StudyPhase::sent) ? n.at(StudyPhase::sent) : 0, o.dest.aet.c_str(), o.dest.host.c_str(), o.dest.port);
  }
  std::atomic<bool> halt{false};
  std::string receiver_error;  // written before receiver_failed is set
  std::atomic<bool> receiver_failed{false};
  ReceiverOptions ro;
  ro.aet = o.aet;
  ro.port = o.port;
  ro.max_associations = o.max_associations;
  ro.incoming = o.work + "/incoming";
  std::thread receiver([&] {
    try {
      run_receiver(ro, book, halt);
    } catch (const std::exception& e) {
      receiver_error = e.what();
      receiver_failed = true;
    }
  });
  // A worker or the sender: claim the next study of a phase, handle it, let it go.
  auto serve_phase = [&](StudyPhase phase, const std::string& what, const std::function<void(const StudyState&)>& f) {
    while (!halt.load()) {
      const std::optional<StudyState> s = book.claim(phase, now_ms());
      if (!s) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        continue;
      }
      guarded(what + " " + s->study_uid, [&] { f(*s); });
      guarded("releasing " + s->study_uid, [&] { book.release(s->study_uid); });
    }
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < o.workers; ++i)
    threads.emplace_back(serve_phase, StudyPhase::stable, "processing",
                         [&, a = analysers[size_t(i)].get()](const StudyState& s) { process_one(book, *a, s); });
  threads.emplace_back(serve_phase, StudyPhase::processed, "sending",
                       [&](const StudyState& s) { send_one(book, o, s); });
  while (!stop.load() && !receiver_failed.load()) {
    guarded("checking for complete studies", [&] { book.mark_stable(now_ms()); });
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  halt = true;  // the receiver stops after its associations; the workers after their study
  receiver.join();
  for (std::thread& t : threads) t.join();
  ICH_CHECK(receiver_error.empty(), receiver_error);
}

}  // namespace ich
