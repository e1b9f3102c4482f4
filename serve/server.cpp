// server.cpp: ich-serve's threads (server.h): the receiver, the scheduler
// (this thread), the worker pool and the sender, around one StudyBook.
#include "serve/server.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <thread>

#include <sys/statvfs.h>
#include <unistd.h>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmtls/tlslayer.h>

#include "data/labels.h"
#include "engine/error.h"
#include "io/atomic_file.h"
#include "io/csv.h"
#include "serve/access.h"
#include "serve/analyse.h"
#include "serve/audit.h"
#include "serve/http.h"
#include "serve/metrics.h"
#include "serve/receiver.h"
#include "serve/results.h"
#include "serve/study_book.h"

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
                  "\",\"threshold\":" + f.threshold[5] + ",\"operating_point\":" + json_quote(f.operating_point) +
                  ",\"thresholds\":{";
  for (size_t k = 0; k < 6; ++k) j += std::string(k ? "," : "") + "\"" + kSubtypes[k] + "\":" + f.threshold[k];
  j += "},\"probabilities\":{";
  for (size_t k = 0; k < 6; ++k) j += std::string(k ? "," : "") + "\"" + kSubtypes[k] + "\":" + f.p[k];
  j += "},\"key_images\":[";
  for (size_t k = 0; k < a.keys.size(); ++k)
    j += std::string(k ? "," : "") + "{\"sop_uid\":" + json_quote(a.keys[k].sop_uid) + ",\"source_sop_uid\":" +
         json_quote(a.keys[k].source.sop_uid) + ",\"frame\":" + std::to_string(a.keys[k].source.frame) +
         ",\"any\":" + a.keys[k].p[5] + "}";
  j += "],\"sr_sop_uid\":" + json_quote(a.written.sr_sop_uid) + ",\"kos_sop_uid\":" + json_quote(a.written.kos_sop_uid) +
       ",\"unreadable\":[";
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

// What the workers and the sender share besides the book.
struct NodeParts {
  const ServeOptions& o;
  StudyBook& book;
  Metrics& metrics;
  AuditLog& audit;
};

AuditEvent study_event(const ServeOptions& o, const StudyState& s, bool sent, int outcome, const std::string& text) {
  AuditEvent e;
  e.id = sent ? audit::code("110104", "DICOM Instances Transferred") : audit::code("110103", "DICOM Instances Accessed");
  e.action = sent ? 'R' : 'C';
  e.outcome = outcome;
  e.outcome_text = text;
  if (sent)
    e.participants = {audit::node(o.aet, audit::this_host(), true, audit::code("110153", "Source Role ID")),
                      audit::peer(o.dest.aet, o.dest.host, false, audit::code("110152", "Destination Role ID"))};
  else
    e.participants = {audit::node(o.aet, audit::this_host(), true, audit::code("110150", "Application"))};
  IpAddress ip;
  if (sent && !parse_ip(o.dest.host, ip)) e.participants.back().address_type = 1;  // a host name
  e.objects = {audit::study(s.study_uid, {})};
  return e;
}

void process_one(NodeParts& n, StudyAnalyser& analyser, const StudyState& s) {
  StudyBook& book = n.book;
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
    n.metrics.add("ich_serve_studies_processed_total");
    n.metrics.observe("ich_serve_stage_seconds", {{"stage", "quiet"}}, (s.stable_ms - s.last_ms) / 1e3);
    n.metrics.observe("ich_serve_stage_seconds", {{"stage", "queued"}}, (started - s.stable_ms) / 1e3);
    n.metrics.observe("ich_serve_stage_seconds", {{"stage", "predict"}}, a.predict_s);
    n.metrics.observe("ich_serve_stage_seconds", {{"stage", "key_images"}}, a.key_images_s);
    n.metrics.observe("ich_serve_stage_seconds", {{"stage", "write"}}, a.write_s);
    n.audit.record(study_event(n.o, s, false, 0,
                               std::to_string(a.slices) + " slices analysed; results (SR " + a.written.sr_sop_uid + ", " +
                                   std::to_string(a.keys.size()) + " key images) created in the study"));
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
    n.metrics.add("ich_serve_studies_failed_total");
    n.audit.record(study_event(n.o, s, false, 8, std::string("could not be analysed: ") + e.what()));
  }
}

std::vector<std::string> result_files(const std::string& dir) {
  std::vector<std::string> keys;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().rfind("key_", 0) == 0 && e.path().extension() == ".dcm") keys.push_back(e.path().string());
  std::sort(keys.begin(), keys.end());
  keys.push_back(dir + "/sr.dcm");  // after the images it references
  if (fs::exists(dir + "/kos.dcm")) keys.push_back(dir + "/kos.dcm");  // results written before the KOS have none
  return keys;
}

// The wait before try attempts + 1 of a send (DICOM, STOW-RS, FHIR): from
// --retry-first-seconds, doubling, at most --retry-max-seconds.
double retry_wait(const ServeOptions& o, int64_t attempts) {
  return std::min(o.retry_max_seconds, o.retry_first_seconds * std::pow(2.0, double(attempts - 1)));
}

// Where the results go: the DICOM destination, and the STOW-RS archive.
std::string destinations(const ServeOptions& o) {
  return where(o.dest) + (o.dest_stow.url.empty() ? "" : " and " + where(o.dest_stow));
}

void send_one(NodeParts& n, const StudyState& s) {
  StudyBook& book = n.book;
  const ServeOptions& o = n.o;
  const auto t0 = std::chrono::steady_clock::now();
  const std::string dir = book.dir(s.study_uid) + "/round" + std::to_string(s.round) + "/results";
  try {
    const std::vector<std::string> files = result_files(dir);
    send_files(o.dest, files);
    if (!o.dest_stow.url.empty()) stow_files(o.dest_stow, files);  // both, every time: a resend stores nothing twice
  } catch (const std::exception& e) {
    const int64_t attempts = s.send_attempts + 1;
    const double wait = retry_wait(o, attempts);
    // The log line first: whoever sees the attempt in the state finds its line in the log.
    std::fprintf(stderr, "ich-serve: study %s: sending failed (attempt %lld), next try in %.0f s: %s\n",
                 s.study_uid.c_str(), (long long)attempts, wait, e.what());
    book.modify(s.study_uid, [&](StudyState& t) {
      t.send_attempts = attempts;
      t.next_send_ms = now_ms() + int64_t(wait * 1000);
      t.last_error = e.what();
    });
    n.metrics.add("ich_serve_send_failures_total");
    if (attempts == 1)  // the first failure of a study; the rest are in its state file and the log
      n.audit.record(study_event(o, s, true, 4, std::string("sending failed (retried): ") + e.what()));
    return;
  }
  const int64_t sent = now_ms();
  const double send_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::string line = s.result_json;
  line.pop_back();  // the closing brace
  line += ",\"sent\":{\"destination\":" + json_quote(destinations(o)) +
          ",\"attempts\":" + std::to_string(s.send_attempts + 1) + ",\"send_s\":" + seconds(send_s) +
          ",\"latency_s\":" + seconds((sent - s.last_ms) / 1e3) + "}}";
  book.modify(s.study_uid, [&](StudyState& t) {
    t.phase = StudyPhase::sent;
    t.sent_ms = sent;
    if (!o.fhir.url.empty()) {  // this round's FHIR Bundle is due now, on its own schedule
      t.fhir_round = s.round;
      t.fhir_done = t.fhir_jsonl_written = false;
      t.fhir_attempts = t.fhir_next_ms = t.fhir_sent_ms = 0;
      t.fhir_error.clear();
    }
    t.send_attempts += 1;
    t.result_json = line;
    t.last_error.clear();
  });
  book.append_jsonl(line);
  book.modify(s.study_uid, [&](StudyState& t) { t.jsonl_written = true; });
  std::fprintf(stderr, "ich-serve: study %s: results sent to %s (%.2f s after its last instance)\n",
               s.study_uid.c_str(), destinations(o).c_str(), (sent - s.last_ms) / 1e3);
  n.metrics.add("ich_serve_studies_sent_total");
  n.metrics.observe("ich_serve_stage_seconds", {{"stage", "send"}}, send_s);
  n.metrics.observe("ich_serve_latency_seconds", {}, (sent - s.last_ms) / 1e3);
  n.audit.record(study_event(o, s, true, 0, "results sent to " + destinations(o) + " (attempt " +
                                                std::to_string(s.send_attempts + 1) + ")"));
}

// STOW-RS (POST /studies on --http; serve/dicomweb.h): the peer admitted as
// STOW@<address> by the allow-list, refused while --max-pending studies
// wait, each part filed by the book as a C-STORE instance would be (the same
// checks, rejections and state machine), one association's audit record.
std::pair<int, std::string> stow_error(int status, const std::string& why) {
  return {status, "{\"error\":" + json_quote(why) + "}\n"};
}

// Whether a STOW-RS peer may send its body: {0, ""}, or the answer (403 not
// on the allow-list, 503 while --max-pending studies wait). Asked before
// the body is read (serve/http.h) and again before it is filed.
std::pair<int, std::string> stow_admission(const ServeOptions& o, const PolicyHolder& policy, StudyBook& book,
                                           AuditLog& audit_log, Metrics& metrics, const std::string& peer) {
  IpAddress ip;
  if (!parse_ip(peer, ip) || !policy.get()->admits("STOW", ip)) {
    const std::string why = "STOW-RS from " + peer + ": not on the allow-list (STOW@" + peer + ")";
    std::fprintf(stderr, "ich-serve: refused %s\n", why.c_str());
    metrics.add("ich_serve_stow_requests_total", {{"outcome", "forbidden"}});
    audit_log.record_noisy(peer + "|STOW", audit::connection_refused(o.aet, peer, why));
    return stow_error(403, why);
  }
  if (const std::string why = book.refuse_association(); !why.empty()) {
    metrics.add("ich_serve_stow_requests_total", {{"outcome", "busy"}});
    return stow_error(503, why);
  }
  return {0, ""};
}

std::pair<int, std::string> receive_stow(const ServeOptions& o, const PolicyHolder& policy, StudyBook& book,
                                         AuditLog& audit_log, Metrics& metrics, const std::string& peer,
                                         const std::string& type, const std::string& body) {
  if (auto refused = stow_admission(o, policy, book, audit_log, metrics, peer); refused.first != 0) return refused;
  std::vector<std::string_view> parts;
  try {
    parts = parse_multipart_related(type, body);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ich-serve: refused a STOW-RS request from %s: %s\n", peer.c_str(), e.what());
    metrics.add("ich_serve_stow_requests_total", {{"outcome", "bad_request"}});
    return stow_error(dynamic_cast<const UnsupportedMediaType*>(&e) ? 415 : 400, e.what());
  }
  audit_log.record(audit::association_accepted(o.aet, "STOW", peer, false));
  AssociationLog log;
  log.calling_aet = "STOW";
  log.peer = peer;
  std::vector<StowOutcome> outcomes;
  static std::atomic<int64_t> counter{0};
  fs::create_directories(o.work + "/incoming");
  for (const std::string_view part : parts) {
    const std::string path = o.work + "/incoming/" + std::to_string(::getpid()) + "-stow-" + std::to_string(counter++) + ".part";
    StowOutcome out;
    {  // the UIDs for the answer (the book reads the whole instance again)
      std::ofstream f(path, std::ios::binary);
      f.write(part.data(), std::streamsize(part.size()));
      if (!f.good()) out.status = 0xA700;
    }
    DcmFileFormat ff;
    OFString v;
    if (out.status == 0 && ff.loadFile(path.c_str(), EXS_Unknown, EGL_noChange, 1024).good()) {
      if (ff.getDataset()->findAndGetOFString(DCM_SOPClassUID, v).good()) out.sop_class_uid = v.c_str();
      if (ff.getDataset()->findAndGetOFString(DCM_SOPInstanceUID, v).good()) out.sop_uid = v.c_str();
    }
    // what C-STORE's negotiation refuses, refused here too: the node's own results coming back (a PACS that
    // routes everything) would reopen the study, and its new results come back again
    if (out.status == 0 && !out.sop_class_uid.empty() &&
        std::find(kAcceptedSopClasses.begin(), kAcceptedSopClasses.end(), out.sop_class_uid) == kAcceptedSopClasses.end()) {
      std::fprintf(stderr, "ich-serve: refused a STOW-RS instance %s from %s: SOP class %s is not CT\n",
                   out.sop_uid.c_str(), peer.c_str(), out.sop_class_uid.c_str());
      out.status = 0x0122;  // SOP Class not Supported (PS3.18 Table 10.5.3-2 "Failure Reason")
    }
    try {
      if (out.status == 0) out.status = book.store(path, out.sop_uid.empty() ? "instance" : out.sop_uid, log);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "ich-serve: could not keep a STOW-RS instance from %s: %s\n", peer.c_str(), e.what());
      out.status = 0xA700;
    }
    std::error_code ec;
    if (out.status == 0xA700 || out.status == 0x0122) fs::remove(path, ec);
    if (out.status == 0) metrics.add("ich_serve_instances_received_total");
    else
      metrics.add("ich_serve_instances_refused_total",
                  {{"status", out.status == 0xA700 ? "A700" : out.status == 0x0122 ? "0122" : "C000"}});
    outcomes.push_back(out);
  }
  record_instances_received(audit_log, o.aet, log, peer);
  book.association_ended(log);
  const auto answer = stow_response(outcomes);
  metrics.add("ich_serve_stow_requests_total", {{"outcome", answer.first == 200 ? "stored" : answer.first == 202 ? "partly" : "refused"}});
  return answer;
}

// The FHIR Bundle of a study's sent round to --fhir; a failure is retried
// with the same backoff as sending, reported, and holds nothing else back.
void send_fhir(NodeParts& n, const StudyState& s) {
  const ServeOptions& o = n.o;
  const std::string path =
      n.book.dir(s.study_uid) + "/round" + std::to_string(s.fhir_round) + "/results/fhir.json";
  try {
    post_fhir_bundle(o.fhir, path);
  } catch (const std::exception& e) {
    const int64_t attempts = s.fhir_attempts + 1;
    const double wait = retry_wait(o, attempts);
    // The log line first: whoever sees the attempt in the state finds its line in the log.
    std::fprintf(stderr, "ich-serve: study %s: FHIR failed (attempt %lld), next try in %.0f s: %s\n",
                 s.study_uid.c_str(), (long long)attempts, wait, e.what());
    n.book.modify(s.study_uid, [&](StudyState& t) {
      t.fhir_attempts = attempts;
      t.fhir_next_ms = now_ms() + int64_t(wait * 1000);
      t.fhir_error = e.what();
    });
    n.metrics.add("ich_serve_fhir_failures_total");
    return;
  }
  StudyState done;
  n.book.modify(s.study_uid, [&](StudyState& t) {
    t.fhir_done = true;
    t.fhir_attempts += 1;
    t.fhir_sent_ms = now_ms();
    t.fhir_error.clear();
    done = t;
  });
  n.book.append_jsonl(fhir_jsonl_line(done), "fhir.jsonl");
  n.book.modify(s.study_uid, [&](StudyState& t) { t.fhir_jsonl_written = true; });
  std::fprintf(stderr, "ich-serve: study %s: FHIR Bundle taken by %s (attempt %lld)\n", s.study_uid.c_str(),
               o.fhir.url.c_str(), (long long)done.fhir_attempts);
  n.metrics.add("ich_serve_fhir_sent_total");
}

AccessPolicy load_policy(const ServeOptions& o) {
  AccessPolicy p;
  p.allow_any = o.allow_any;
  for (const std::string& a : o.allow) p.entries.push_back(parse_allow_entry(a));
  if (!o.allow_file.empty())
    for (AllowEntry& e : read_allow_file(o.allow_file)) p.entries.push_back(std::move(e));
  return p;
}

std::pair<std::string, int> host_port(const std::string& spec, const char* flag) {
  const size_t colon = spec.rfind(':');
  int port = -1;
  try {
    if (colon != std::string::npos) port = std::stoi(spec.substr(colon + 1));
  } catch (const std::exception&) {
  }
  ICH_CHECK(colon != std::string::npos && colon > 0 && port > 0 && port < 65536, flag, " '", spec, "': expected HOST:PORT");
  std::string host = spec.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return {host, port};
}

int64_t tree_bytes(const std::string& dir) {
  int64_t n = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, fs::directory_options::skip_permission_denied, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    std::error_code e2;
    if (it->is_regular_file(e2)) n += int64_t(it->file_size(e2));
  }
  return n;
}

// The destination's last C-ECHO, for /readyz and the destination_up gauge.
struct EchoState {
  std::mutex mu;
  int64_t at_ms = 0;
  std::string error = "not tried yet";
};

}  // namespace

void run_server(const ServeOptions& o, const std::atomic<bool>& stop, std::atomic<bool>* reload) {
  ICH_CHECK(!o.work.empty(), "--work is required");
  ICH_CHECK(o.workers >= 1 && o.max_pending >= 1 && o.max_associations >= 1 && o.key_images >= 0,
            "--workers, --max-pending and --max-associations must be positive");
  ICH_CHECK(o.threshold > 0 && o.threshold < 1, "--threshold ", o.threshold, " is not between 0 and 1");
  ICH_CHECK(o.acse_timeout_s >= 1, "--acse-timeout must be at least 1 s");
  ICH_CHECK(o.dest_echo_seconds > 0, "--dest-echo-seconds must be positive");
  ICH_CHECK(o.tls.cert.empty() == o.tls.key.empty(), "--tls-cert and --tls-key go together");
  ICH_CHECK(!o.tls_allow_plain || !o.tls.cert.empty(), "--tls-allow-plain needs --tls-cert and --tls-key");
  ICH_CHECK(o.tls.ca.empty() || !o.tls.cert.empty(), "--tls-ca needs --tls-cert and --tls-key");
  ICH_CHECK(o.dest_tls.ca.empty() ? o.dest_tls.cert.empty() && o.dest_tls.key.empty() : true,
            "--dest-tls-cert/--dest-tls-key need --dest-tls-ca (TLS to the destination verifies it)");
  ICH_CHECK(o.dest_stow_auth.empty() || !o.dest_stow.url.empty(), "--dest-stow-auth needs --dest-stow");
  ICH_CHECK(o.fhir_auth.empty() || !o.fhir.url.empty(), "--fhir-auth needs --fhir");
  if (!o.fhir.url.empty()) (void)parse_http_url(o.fhir.url, "--fhir");
  if (!o.dest_stow.url.empty()) (void)parse_http_url(o.dest_stow.url, "--dest-stow");
  ICH_CHECK(!o.stow || !o.http.empty(), "--stow takes studies on the HTTP port: give --http too");
  ICH_CHECK(o.stow_max_mb >= 1, "--stow-max-mb must be at least 1");
  fs::create_directories(o.work);
  // DCMTK disables Nagle's algorithm on its connections (ours to the
  // destination) only when told by this variable; the receiver does it on
  // its own sockets (serve/receiver.cpp). Small C-STORE messages otherwise
  // wait for delayed ACKs, 40 ms each.
  ::setenv("TCP_NODELAY", "1", 0);
  Metrics metrics;
  declare_serve_metrics(metrics);
  AuditOptions au;
  au.path = o.audit_log.empty() ? o.work + "/audit.jsonl" : o.audit_log;
  if (!o.audit_syslog.empty()) std::tie(au.syslog_host, au.syslog_port) = host_port(o.audit_syslog, "--audit-syslog");
  ICH_CHECK(!o.audit_syslog.empty() || (o.audit_syslog_tls.ca.empty() && o.audit_syslog_tls.cert.empty()),
            "--audit-syslog-tls-* options need --audit-syslog HOST:PORT (the collector)");
  au.syslog_tls = o.audit_syslog_tls;
  au.source_id = "ich-serve " + o.aet + "@" + audit::this_host();
  AuditLog audit_log(au);
  PolicyHolder policy(load_policy(o));
  ServeOptions so = o;  // with the TLS layers made
  if (!o.dest_tls.ca.empty()) so.dest.tls = make_tls_layer(o.dest_tls, false);
  if (!o.dest_stow_auth.empty()) so.dest_stow.auth = read_http_auth_file(o.dest_stow_auth, "--dest-stow-auth");
  if (!o.fhir_auth.empty()) so.fhir.auth = read_http_auth_file(o.fhir_auth, "--fhir-auth");
  ReceiverOptions ro;
  ro.aet = o.aet;
  ro.bind = o.bind;
  ro.port = o.port;
  ro.max_associations = o.max_associations;
  ro.incoming = o.work + "/incoming";
  ro.acse_timeout_s = o.acse_timeout_s;
  if (!o.tls.cert.empty()) ro.tls = make_tls_layer(o.tls, true);
  ro.tls_allow_plain = o.tls_allow_plain;
  ro.policy = &policy;
  ro.audit = &audit_log;
  ro.metrics = &metrics;
  BookOptions bo;
  bo.work = o.work;
  bo.stable_ms = int64_t(o.stable_seconds * 1000);
  bo.max_pending = o.max_pending;
  bo.min_free_mb = o.min_free_mb;
  bo.metrics = &metrics;
  StudyBook book(bo);
  Receiver receiver(ro, book);  // binds now: a busy port fails before the models load

  // Health and metrics answer while the models load (/readyz: not ready).
  std::atomic<bool> models_loaded{false};
  EchoState echo_state;
  std::mutex work_mu;
  int64_t work_bytes_at = 0, work_bytes = 0;
  auto readiness = [&] {
    std::vector<ReadyCheck> c;
    c.push_back({"models", models_loaded.load(), models_loaded.load() ? "loaded" : "loading"});
    {
      struct statvfs v {};
      std::string detail;
      bool ok = ::statvfs(o.work.c_str(), &v) == 0;
      const int64_t free_mb = ok ? int64_t(v.f_bavail) * int64_t(v.f_frsize) / (1024 * 1024) : -1;
      if (!ok) detail = o.work + ": cannot stat";
      else if (free_mb < o.min_free_mb) {
        ok = false;
        detail = o.work + " has " + std::to_string(free_mb) + " MB free (--min-free-mb " + std::to_string(o.min_free_mb) + ")";
      } else {
        const std::string probe = o.work + "/.ready-probe";
        ok = ::access(o.work.c_str(), W_OK) == 0;
        try {
          write_file_atomic(probe, "ok\n");
          fs::remove(probe);
        } catch (const std::exception& e) {
          ok = false;
          detail = e.what();
        }
        if (ok) detail = std::to_string(free_mb) + " MB free, writable";
      }
      c.push_back({"work", ok, detail});
    }
    {
      std::lock_guard<std::mutex> l(echo_state.mu);
      const double age = (now_ms() - echo_state.at_ms) / 1e3;
      const bool fresh = echo_state.at_ms > 0 && age <= 3 * o.dest_echo_seconds + 30;
      const bool ok = fresh && echo_state.error.empty();
      std::string d = echo_state.error.empty() ? "answered C-ECHO " : "C-ECHO failed: " + echo_state.error + "; ";
      if (echo_state.at_ms == 0) d = "no C-ECHO yet";
      else d += fmt_double(std::round(age * 10) / 10, 4) + " s ago";
      c.push_back({"destination", ok, where(so.dest) + ": " + d});
    }
    return c;
  };
  auto render_metrics = [&] {
    for (const auto& [phase, count] : book.census()) metrics.set("ich_serve_studies", {{"phase", phase_name(phase)}}, count);
    {
      std::lock_guard<std::mutex> l(work_mu);
      if (now_ms() - work_bytes_at > 10000) {  // a walk of the work folder at most every 10 s
        work_bytes = tree_bytes(o.work);
        work_bytes_at = now_ms();
      }
      metrics.set("ich_serve_work_bytes", {}, double(work_bytes));
    }
    struct statvfs v {};
    if (::statvfs(o.work.c_str(), &v) == 0)
      metrics.set("ich_serve_work_free_bytes", {}, double(v.f_bavail) * double(v.f_frsize));
    const AuditLog::Stats a = audit_log.stats();
    metrics.set("ich_serve_audit_records_total", {}, double(a.records));
    metrics.set("ich_serve_audit_write_errors_total", {}, double(a.write_errors));
    metrics.set("ich_serve_audit_syslog_sent_total", {}, double(a.syslog_sent));
    metrics.set("ich_serve_audit_syslog_dropped_total", {}, double(a.syslog_dropped));
    metrics.set("ich_serve_audit_syslog_queue", {}, double(a.syslog_queued));
    metrics.set("ich_serve_audit_syslog_up", {}, a.syslog_connected ? 1.0 : 0.0);
    {
      std::lock_guard<std::mutex> l(echo_state.mu);
      metrics.set("ich_serve_destination_up", {}, echo_state.at_ms > 0 && echo_state.error.empty() ? 1 : 0);
    }
    bool ready = true;
    for (const ReadyCheck& c : readiness()) ready = ready && c.ok;
    metrics.set("ich_serve_ready", {}, ready ? 1 : 0);
    return metrics.render();
  };
  std::unique_ptr<HttpServer> http;
  // STOW-RS: a request's instances go to the book as one association's, from the peer STOW@<address>
  auto stow = [&](const std::string& peer_ip, const std::string& type, const std::string& body) {
    return receive_stow(so, policy, book, audit_log, metrics, peer_ip, type, body);
  };
  auto stow_admit = [&](const std::string& peer_ip) {
    return stow_admission(so, policy, book, audit_log, metrics, peer_ip);
  };
  if (!o.http.empty())
    http = std::make_unique<HttpServer>(
        o.http, HttpHandlers{render_metrics, readiness, o.stow ? HttpHandlers::Stow(stow) : nullptr, stow_admit,
                             size_t(o.stow_max_mb) << 20});

  AnalyseOptions ao;
  ao.checkpoint = o.checkpoint;
  ao.sequence = o.sequence;
  ao.ensemble = o.ensemble;
  ao.tta = o.tta;
  ao.precision = o.precision;
  ao.device = o.device;
  ao.batch = o.batch;
  ao.threshold = o.threshold;
  ao.thresholds = o.thresholds;
  ao.sensitivity = o.sensitivity;
  ao.key_images = o.key_images;
  ao.aet = o.aet;
  ao.observer_uid = node_uid(o.work);
  // One analyser (its own models) per worker, all loaded before anything
  // is received: a bad checkpoint fails here.
  std::vector<std::unique_ptr<StudyAnalyser>> analysers;
  for (int i = 0; i < o.workers; ++i) analysers.push_back(std::make_unique<StudyAnalyser>(ao));
  models_loaded = true;
  const std::string config = "listening on " + o.bind + " port " + std::to_string(receiver.port()) + (ro.tls ? " (TLS" + std::string(o.tls_allow_plain ? " and plain" : " only") + (o.tls.ca.empty() ? "" : ", client certificates required") + ")" : " (plain TCP)") +
                             "; admits " + policy.get()->describe() + "; results to " + destinations(so) +
                             (o.stow ? "; STOW-RS on " + o.http + " POST /studies" : "") +
                             (o.fhir.url.empty() ? "" : "; FHIR Bundles to " + o.fhir.url);
  audit_log.record(audit::application(o.aet, true, config));
  {
    const auto n = book.census();
    auto at = [&](StudyPhase p) { return n.count(p) ? n.at(p) : 0; };
    std::fprintf(stderr, "ich-serve: %s %s; work %s (%d receiving, %d stable, %d processed, %d sent)%s\n", o.aet.c_str(),
                 config.c_str(), o.work.c_str(), at(StudyPhase::receiving), at(StudyPhase::stable),
                 at(StudyPhase::processed), at(StudyPhase::sent),
                 http ? (std::string("; health and metrics on http ") + o.http).c_str() : "");
    if (!o.allow_any && policy.get()->entries.empty())
      std::fprintf(stderr, "ich-serve: no sender is admitted yet: every association will be refused; admit senders with "
                           "--allow AET@HOST (or --allow-file), or --allow-any on a lab bench\n");
  }

  std::atomic<bool> halt{false};
  std::string receiver_error;  // written before receiver_failed is set
  std::atomic<bool> receiver_failed{false};
  std::thread receiving([&] {
    try {
      receiver.run(halt);
    } catch (const std::exception& e) {
      receiver_error = e.what();
      receiver_failed = true;
    }
  });
  NodeParts parts{so, book, metrics, audit_log};
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
                         [&, a = analysers[size_t(i)].get()](const StudyState& s) { process_one(parts, *a, s); });
  threads.emplace_back(serve_phase, StudyPhase::processed, "sending", [&](const StudyState& s) { send_one(parts, s); });
  if (!o.fhir.url.empty())  // the FHIR Bundles, on their own: a FHIR server down holds no DICOM result back
    threads.emplace_back([&] {
      while (!halt.load()) {
        const std::optional<StudyState> s = book.claim_fhir(now_ms());
        if (!s) {
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
          continue;
        }
        guarded("FHIR of " + s->study_uid, [&] { send_fhir(parts, *s); });
        guarded("releasing " + s->study_uid, [&] { book.release(s->study_uid); });
      }
    });
  // The destination's C-ECHO, every --dest-echo-seconds (for /readyz).
  threads.emplace_back([&] {
    int64_t next = 0;
    while (!halt.load()) {
      if (now_ms() >= next) {
        const std::string err = echo(so.dest);
        std::lock_guard<std::mutex> l(echo_state.mu);
        echo_state.at_ms = now_ms();
        echo_state.error = err;
        next = now_ms() + int64_t(o.dest_echo_seconds * 1000);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  while (!stop.load() && !receiver_failed.load()) {
    guarded("checking for complete studies", [&] { book.mark_stable(now_ms()); });
    if (reload && reload->exchange(false)) {
      try {
        policy.set(load_policy(o));
        const std::string what = "allow-list read again (SIGHUP): admits " + policy.get()->describe();
        std::fprintf(stderr, "ich-serve: %s\n", what.c_str());
        audit_log.record(audit::configuration(o.aet, true, what));
      } catch (const std::exception& e) {
        const std::string what = std::string("allow-list not changed (SIGHUP): ") + e.what();
        std::fprintf(stderr, "ich-serve: %s\n", what.c_str());
        audit_log.record(audit::configuration(o.aet, false, what));
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  halt = true;  // the receiver stops after its associations; the workers after their study
  receiving.join();
  for (std::thread& t : threads) t.join();
  audit_log.record(audit::application(o.aet, false, receiver_error.empty() ? "stopped by a signal" : "stopped: " + receiver_error));
  ICH_CHECK(receiver_error.empty(), receiver_error);
}

}  // namespace ich
