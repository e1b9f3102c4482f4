// audit.cpp: DICOM audit messages as JSON lines and RFC 5424 syslog (audit.h).
#include "serve/audit.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <ctime>

#include "engine/error.h"
#include "io/json.h"

namespace ich {

namespace {

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string xml_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      case '\'': o += "&apos;"; break;
      default:
        // XML 1.0 forbids most control characters even escaped: a peer's
        // AE title is free text from the network.
        o += (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n' && c != '\r') ? '?' : c;
    }
  }
  return o;
}

std::string code_json(const AuditCode& c) {
  return "{\"csd-code\":" + json_quote(c.code) + ",\"codeSystemName\":" + json_quote(c.scheme) +
         ",\"originalText\":" + json_quote(c.meaning) + "}";
}

std::string code_xml(const char* element, const AuditCode& c) {
  return std::string("<") + element + " csd-code=\"" + xml_escape(c.code) + "\" codeSystemName=\"" + xml_escape(c.scheme) +
         "\" originalText=\"" + xml_escape(c.meaning) + "\"/>";
}

const AuditCode kSourceRole{"110153", "DCM", "Source Role ID"};
const AuditCode kDestinationRole{"110152", "DCM", "Destination Role ID"};
const AuditCode kApplicationRole{"110150", "DCM", "Application"};

}  // namespace

namespace audit {

AuditCode code(const std::string& c, const std::string& meaning, const std::string& scheme) { return {c, scheme, meaning}; }

AuditParticipant node(const std::string& aet, const std::string& address, bool requestor, const AuditCode& role) {
  AuditParticipant p;
  p.user_id = aet;
  p.alt_user_id = std::to_string(::getpid());  // the process, as PS3.15 A.5.2.1 suggests
  p.user_name = "ich-serve";
  p.requestor = requestor;
  p.address = address;
  p.address_type = 1;
  p.role = role;
  return p;
}

AuditParticipant peer(const std::string& calling_aet, const std::string& address, bool requestor, const AuditCode& role) {
  AuditParticipant p;
  p.user_id = calling_aet;
  p.requestor = requestor;
  p.address = address;
  p.address_type = 2;
  p.role = role;
  return p;
}

AuditObject study(const std::string& uid, const std::map<std::string, int64_t>& sop_classes) {
  AuditObject o;
  o.id = uid;
  o.type_code = 2;
  o.type_role = 3;
  o.id_type = code("110180", "Study Instance UID");
  o.sop_classes = sop_classes;
  return o;
}

AuditObject patient(const std::string& id) {
  AuditObject o;
  o.id = id;
  o.type_code = 1;
  o.type_role = 1;
  o.id_type = code("2", "Patient Number", "RFC-3881");
  return o;
}

const std::string& this_host() {
  static const std::string name = [] {
    char h[256] = "";
    if (::gethostname(h, sizeof h - 1) != 0) std::strcpy(h, "localhost");
    return std::string(h);
  }();
  return name;
}

AuditEvent association_accepted(const std::string& node_aet, const std::string& calling, const std::string& peer_ip, bool tls) {
  AuditEvent e;
  e.id = code("110114", "User Authentication");
  e.types = {code("110122", "Login")};
  e.action = 'E';
  e.outcome = 0;
  e.outcome_text = std::string("association accepted") + (tls ? " over TLS" : "");
  e.participants = {peer(calling, peer_ip, true, kSourceRole), node(node_aet, this_host(), false, kDestinationRole)};
  return e;
}

AuditEvent association_rejected(const std::string& node_aet, const std::string& calling, const std::string& called,
                                const std::string& peer_ip, const std::string& reason) {
  AuditEvent e;
  e.id = code("110113", "Security Alert");
  e.types = {code("110126", "Node Authentication")};
  e.action = 'E';
  e.outcome = 4;
  e.outcome_text = "association rejected: " + reason + " (calling AE " + calling + ", called AE " + called + ")";
  e.participants = {peer(calling, peer_ip, true, kSourceRole), node(node_aet, this_host(), false, kApplicationRole)};
  return e;
}

AuditEvent connection_refused(const std::string& node_aet, const std::string& peer_ip, const std::string& reason) {
  AuditEvent e;
  e.id = code("110113", "Security Alert");
  e.types = {code("110126", "Node Authentication")};
  e.action = 'E';
  e.outcome = 4;
  e.outcome_text = "connection refused before an association: " + reason;
  e.participants = {peer("", peer_ip, true, kSourceRole), node(node_aet, this_host(), false, kApplicationRole)};
  return e;
}

AuditEvent application(const std::string& node_aet, bool start, const std::string& config) {
  AuditEvent e;
  e.id = code("110100", "Application Activity");
  e.types = {start ? code("110120", "Application Start") : code("110121", "Application Stop")};
  e.action = 'E';
  e.outcome = 0;
  e.outcome_text = config;
  e.participants = {node(node_aet, this_host(), false, kApplicationRole)};
  return e;
}

AuditEvent configuration(const std::string& node_aet, bool ok, const std::string& what) {
  AuditEvent e;
  e.id = code("110113", "Security Alert");
  e.types = {code("110129", "Security Configuration")};
  e.action = 'E';
  e.outcome = ok ? 0 : 4;
  e.outcome_text = what;
  e.participants = {node(node_aet, this_host(), true, kApplicationRole)};
  return e;
}

}  // namespace audit

std::string iso_utc(int64_t ms) {
  const std::time_t t = std::time_t(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char b[96];
  std::snprintf(b, sizeof b, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, int(ms % 1000));
  return b;
}

std::string audit_json(const AuditEvent& e, const std::string& source_id) {
  std::string j = "{\"EventIdentification\":{\"EventActionCode\":\"" + std::string(1, e.action) +
                  "\",\"EventDateTime\":\"" + iso_utc(e.time_ms) + "\",\"EventOutcomeIndicator\":" +
                  std::to_string(e.outcome) + ",\"EventID\":" + code_json(e.id) + ",\"EventTypeCode\":[";
  for (size_t i = 0; i < e.types.size(); ++i) j += (i ? "," : "") + code_json(e.types[i]);
  j += "],\"EventOutcomeDescription\":" + json_quote(e.outcome_text) + "},\"ActiveParticipant\":[";
  for (size_t i = 0; i < e.participants.size(); ++i) {
    const AuditParticipant& p = e.participants[i];
    j += std::string(i ? "," : "") + "{\"UserID\":" + json_quote(p.user_id);
    if (!p.alt_user_id.empty()) j += ",\"AlternativeUserID\":" + json_quote(p.alt_user_id);
    if (!p.user_name.empty()) j += ",\"UserName\":" + json_quote(p.user_name);
    j += std::string(",\"UserIsRequestor\":") + (p.requestor ? "true" : "false") +
         ",\"NetworkAccessPointID\":" + json_quote(p.address) +
         ",\"NetworkAccessPointTypeCode\":" + std::to_string(p.address_type) + ",\"RoleIDCode\":" + code_json(p.role) + "}";
  }
  j += "],\"AuditSourceIdentification\":{\"AuditSourceID\":" + json_quote(source_id) +
       ",\"AuditSourceTypeCode\":{\"csd-code\":\"4\",\"codeSystemName\":\"DCM\",\"originalText\":\"Application Server\"}}"
       ",\"ParticipantObjectIdentification\":[";
  for (size_t i = 0; i < e.objects.size(); ++i) {
    const AuditObject& o = e.objects[i];
    j += std::string(i ? "," : "") + "{\"ParticipantObjectID\":" + json_quote(o.id) +
         ",\"ParticipantObjectTypeCode\":" + std::to_string(o.type_code) +
         ",\"ParticipantObjectTypeCodeRole\":" + std::to_string(o.type_role) +
         ",\"ParticipantObjectIDTypeCode\":" + code_json(o.id_type) + ",\"SOPClass\":[";
    size_t k = 0;
    for (const auto& [uid, n] : o.sop_classes)
      j += std::string(k++ ? "," : "") + "{\"UID\":" + json_quote(uid) + ",\"NumberOfInstances\":" + std::to_string(n) + "}";
    j += "],\"ParticipantObjectDetail\":[";
    for (size_t d = 0; d < o.details.size(); ++d)
      j += std::string(d ? "," : "") + "{\"type\":" + json_quote(o.details[d].first) + ",\"value\":" +
           json_quote(o.details[d].second) + "}";
    j += "]}";
  }
  return j + "]}";
}

std::string audit_xml(const AuditEvent& e, const std::string& source_id) {
  std::string x = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><AuditMessage><EventIdentification EventActionCode=\"" +
                  std::string(1, e.action) + "\" EventDateTime=\"" + iso_utc(e.time_ms) + "\" EventOutcomeIndicator=\"" +
                  std::to_string(e.outcome) + "\">" + code_xml("EventID", e.id);
  for (const AuditCode& t : e.types) x += code_xml("EventTypeCode", t);
  x += "<EventOutcomeDescription>" + xml_escape(e.outcome_text) + "</EventOutcomeDescription></EventIdentification>";
  for (const AuditParticipant& p : e.participants) {
    x += "<ActiveParticipant UserID=\"" + xml_escape(p.user_id) + "\"";
    if (!p.alt_user_id.empty()) x += " AlternativeUserID=\"" + xml_escape(p.alt_user_id) + "\"";
    if (!p.user_name.empty()) x += " UserName=\"" + xml_escape(p.user_name) + "\"";
    x += std::string(" UserIsRequestor=\"") + (p.requestor ? "true" : "false") + "\" NetworkAccessPointID=\"" +
         xml_escape(p.address) + "\" NetworkAccessPointTypeCode=\"" + std::to_string(p.address_type) + "\">" +
         code_xml("RoleIDCode", p.role) + "</ActiveParticipant>";
  }
  x += "<AuditSourceIdentification AuditSourceID=\"" + xml_escape(source_id) +
       "\"><AuditSourceTypeCode csd-code=\"4\" codeSystemName=\"DCM\" originalText=\"Application Server\"/>"
       "</AuditSourceIdentification>";
  for (const AuditObject& o : e.objects) {
    x += "<ParticipantObjectIdentification ParticipantObjectID=\"" + xml_escape(o.id) +
         "\" ParticipantObjectTypeCode=\"" + std::to_string(o.type_code) + "\" ParticipantObjectTypeCodeRole=\"" +
         std::to_string(o.type_role) + "\">" + code_xml("ParticipantObjectIDTypeCode", o.id_type);
    for (const auto& [type, value] : o.details)
      x += "<ParticipantObjectDetail type=\"" + xml_escape(type) + "\" value=\"" + xml_escape(value) + "\"/>";
    for (const auto& [uid, n] : o.sop_classes)
      x += "<SOPClass UID=\"" + xml_escape(uid) + "\" NumberOfInstances=\"" + std::to_string(n) + "\"/>";
    x += "</ParticipantObjectIdentification>";
  }
  return x + "</AuditMessage>";
}

std::string syslog_message(const AuditEvent& e, const std::string& xml, const std::string& hostname, int pid) {
  // PRI: facility 10 (security/authorization, as ATNA's RFC 5425 examples),
  // severity notice (5) for a success, warning (4) for a failure.
  const int pri = 10 * 8 + (e.outcome == 0 ? 5 : 4);
  std::string host;
  for (char c : hostname) host += (c > 32 && c < 127) ? c : '-';
  if (host.empty()) host = "-";
  // VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA BOM MSG
  return "<" + std::to_string(pri) + ">1 " + iso_utc(e.time_ms) + " " + host.substr(0, 255) + " ich-serve " +
         std::to_string(pid) + " IHE+RFC-3881 - \xEF\xBB\xBF" + xml;
}

AuditLog::AuditLog(AuditOptions o) : o_(std::move(o)) {
  hostname_ = audit::this_host();
  if (!o_.path.empty()) {
    fd_ = ::open(o_.path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    ICH_CHECK(fd_ >= 0, o_.path, ": cannot open the audit log for appending: ", std::strerror(errno));
  }
  if (!o_.syslog_host.empty()) {
    conn_ = std::make_unique<SyslogConnection>(o_.syslog_host, o_.syslog_port, o_.syslog_tls);
    syslog_ = std::thread([this] { syslog_loop(); });
  }
}

AuditLog::~AuditLog() {
  if (syslog_.joinable()) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (std::chrono::steady_clock::now() < end) {
      {
        std::lock_guard<std::mutex> l(q_mu_);
        if (queue_.empty()) break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    stop_ = true;
    q_cv_.notify_all();
    syslog_.join();
  }
  if (fd_ >= 0) ::close(fd_);
}

void AuditLog::record(AuditEvent e) {
  if (e.time_ms == 0) e.time_ms = wall_ms();
  if (fd_ >= 0) {
    const std::string line = audit_json(e, o_.source_id) + "\n";
    std::lock_guard<std::mutex> l(file_mu_);
    // One write of the whole line (O_APPEND), then fdatasync: a record is on
    // disk before the event it records goes on.
    const ssize_t w = ::write(fd_, line.data(), line.size());
    if (w != ssize_t(line.size()) || ::fdatasync(fd_) != 0) {
      if (write_errors_++ == 0)
        std::fprintf(stderr, "ich-serve: cannot write the audit log %s: %s\n", o_.path.c_str(), std::strerror(errno));
    }
  }
  records_++;
  if (!o_.syslog_host.empty()) {
    std::string msg = syslog_message(e, audit_xml(e, o_.source_id), hostname_, int(::getpid()));
    std::lock_guard<std::mutex> l(q_mu_);
    if (queue_.size() >= o_.syslog_queue) {
      queue_.pop_front();
      dropped_++;
    }
    queue_.push_back(std::to_string(msg.size()) + " " + msg);  // RFC 6587 octet counting
    q_cv_.notify_one();
  }
}

void AuditLog::record_noisy(const std::string& key, AuditEvent e) {
  const int64_t now = wall_ms();
  int64_t suppressed = 0;
  {
    std::lock_guard<std::mutex> l(noisy_mu_);
    Noisy& n = noisy_[key];
    if (n.start != 0 && now - n.start < int64_t(o_.noisy_window_s * 1000)) {
      if (++n.recorded > o_.noisy_burst) {
        ++n.suppressed;
        return;
      }
    } else {
      suppressed = n.suppressed;
      n = Noisy{now, 1, 0};
    }
    if (noisy_.size() > 4096) noisy_.clear();  // many peers: forget old windows rather than grow
  }
  if (suppressed > 0)
    e.outcome_text += " (and " + std::to_string(suppressed) + " more like it from this peer in the last window, not recorded one by one)";
  record(std::move(e));
}

AuditLog::Stats AuditLog::stats() {
  Stats s;
  s.records = records_;
  s.syslog_sent = sent_;
  s.syslog_dropped = dropped_;
  s.write_errors = write_errors_;
  s.syslog_connected = connected_;
  std::lock_guard<std::mutex> l(q_mu_);
  s.syslog_queued = int64_t(queue_.size());
  return s;
}

void AuditLog::syslog_loop() {
  double backoff = 0.5;
  std::string failing;  // the reason last logged: a collector down for hours is one line, not one a retry
  while (!stop_) {
    std::string msg;
    {
      std::unique_lock<std::mutex> l(q_mu_);
      q_cv_.wait_for(l, std::chrono::milliseconds(500), [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) continue;
      msg = queue_.front();
    }
    if (!conn_->connected()) {
      std::string why;
      if (!conn_->connect(why)) {
        connected_ = false;
        if (why != failing)
          std::fprintf(stderr, "ich-serve: audit syslog %s: %s (records are kept in --audit-log and retried)\n",
                       conn_->where().c_str(), why.c_str());
        failing = why;
        std::unique_lock<std::mutex> l(q_mu_);
        q_cv_.wait_for(l, std::chrono::milliseconds(int(backoff * 1000)), [&] { return bool(stop_); });
        backoff = std::min(backoff * 2, 30.0);
        continue;
      }
      if (!failing.empty() || sent_ == 0)
        std::fprintf(stderr, "ich-serve: audit syslog %s: connected (%s)\n", conn_->where().c_str(),
                     conn_->protocol().c_str());
      failing.clear();
      connected_ = true;
      backoff = 0.5;
    }
    if (!conn_->send_all(msg)) {  // the collector went away: reconnect and send this one again whole
      connected_ = false;
      continue;
    }
    sent_++;
    std::lock_guard<std::mutex> l(q_mu_);
    if (!queue_.empty() && queue_.front() == msg) queue_.pop_front();
  }
  conn_->close();
}

}  // namespace ich
