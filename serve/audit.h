// audit.h: ich-serve's audit trail (HIPAA 164.312(b), IHE ATNA) as DICOM
// audit messages (PS3.15 A.5): one record per association (accepted or
// rejected), per connection refused before it became one (garbage, a
// failed TLS handshake, silence), per study received, processed and sent,
// and per configuration change (start, stop, SIGHUP).
//
// Each record is one JSON line in --audit-log (appended with one write and
// fsynced before record() returns: durable), its members named as the
// elements and attributes of PS3.15's AuditMessage schema; and, with
// --audit-syslog HOST:PORT, the same message as the schema's XML in an RFC
// 5424 syslog message over TCP (RFC 6587 octet counting) or, with
// --audit-syslog-tls-ca, over TLS (RFC 5425, the collector verified), the way
// IHE ATNA sends it (serve/syslog_transport.h). A peer repeating one refusal is recorded ten times a minute,
// then counted (a flood must not fill the disk). The syslog side has a queue and a thread of its own: an
// unreachable collector is retried with backoff and never blocks receiving;
// past 10,000 records waiting, the oldest are dropped and counted.
//
// Which PS3.15 event says what (docs/serve.md lists them with their codes):
//   association accepted         User Authentication (110114) / Login (110122)
//   association rejected,        Security Alert (110113) / Node Authentication
//   connection refused             (110126), outcome "minor failure"
//   instances received           DICOM Instances Transferred (110104), action C
//   study processed              DICOM Instances Accessed (110103), action C
//   results sent                 DICOM Instances Transferred (110104), action R
//   start / stop                 Application Activity (110100) / Application
//                                  Start (110120), Application Stop (110121)
//   allow-list read on SIGHUP    Security Alert (110113) / Security
//                                  Configuration (110129)
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "serve/syslog_transport.h"

namespace ich {

struct AuditCode {
  std::string code, scheme = "DCM", meaning;
};

// An ActiveParticipant: an AE (UserID = its AE title) at an address.
struct AuditParticipant {
  std::string user_id, alt_user_id, user_name;
  bool requestor = false;
  std::string address;          // NetworkAccessPointID
  int address_type = 2;         // 1 machine name, 2 IP address
  AuditCode role;               // 110153 Source Role ID, 110152 Destination Role ID, 110150 Application
};

// A ParticipantObject: a study (110180 Study Instance UID) or a patient.
struct AuditObject {
  std::string id;
  int type_code = 2;            // 1 person, 2 system object
  int type_role = 3;            // 1 patient, 3 report, 4 resource...
  AuditCode id_type;
  std::map<std::string, int64_t> sop_classes;  // SOP Class UID -> number of instances
  std::vector<std::pair<std::string, std::string>> details;
};

struct AuditEvent {
  AuditCode id;
  std::vector<AuditCode> types;
  char action = 'E';            // C create, R read, U update, D delete, E execute
  int outcome = 0;              // 0 success, 4 minor failure, 8 serious failure, 12 major failure
  std::string outcome_text;     // EventOutcomeDescription
  int64_t time_ms = 0;          // 0: now
  std::vector<AuditParticipant> participants;
  std::vector<AuditObject> objects;
};

// The events ich-serve records, with their PS3.15 codes.
namespace audit {
AuditCode code(const std::string& code, const std::string& meaning, const std::string& scheme = "DCM");
AuditParticipant node(const std::string& aet, const std::string& address, bool requestor, const AuditCode& role);
AuditParticipant peer(const std::string& calling_aet, const std::string& address, bool requestor, const AuditCode& role);
AuditObject study(const std::string& uid, const std::map<std::string, int64_t>& sop_classes);
AuditObject patient(const std::string& id);
AuditEvent association_accepted(const std::string& node_aet, const std::string& calling, const std::string& peer_ip,
                                bool tls);
AuditEvent association_rejected(const std::string& node_aet, const std::string& calling, const std::string& called,
                                const std::string& peer_ip, const std::string& reason);
AuditEvent connection_refused(const std::string& node_aet, const std::string& peer_ip, const std::string& reason);
AuditEvent application(const std::string& node_aet, bool start, const std::string& config);
AuditEvent configuration(const std::string& node_aet, bool ok, const std::string& what);
const std::string& this_host();  // gethostname(), read once
}  // namespace audit

// Renderers (audit_test checks them against the schema's names).
std::string audit_json(const AuditEvent& e, const std::string& source_id);
std::string audit_xml(const AuditEvent& e, const std::string& source_id);
// The RFC 5424 message (without the RFC 6587 length prefix).
std::string syslog_message(const AuditEvent& e, const std::string& xml, const std::string& hostname, int pid);
// "2026-12-04T10:11:12.345Z"
std::string iso_utc(int64_t ms);

struct AuditOptions {
  std::string path;         // the JSON lines file; empty: none
  std::string syslog_host;  // empty: no syslog
  int syslog_port = 0;
  SyslogTls syslog_tls;     // TLS to the collector when syslog_tls.ca is set
  std::string source_id;    // AuditSourceID: "ich-serve <AET>@<hostname>"
  size_t syslog_queue = 10000;
  // Refusals (connections, associations) per peer and reason: the first
  // noisy_burst in each window are recorded one by one, the rest counted.
  double noisy_window_s = 60;
  int noisy_burst = 10;
};

class AuditLog {
 public:
  explicit AuditLog(AuditOptions o);  // opens the file and loads the TLS files (throws naming them)
  ~AuditLog();                        // sends what it can for up to 2 s, then stops
  void record(AuditEvent e);
  // A refusal: the first noisy_burst per key (peer and reason) in each
  // window are recorded, the rest counted into the next record's description.
  void record_noisy(const std::string& key, AuditEvent e);
  struct Stats {
    int64_t records = 0, syslog_sent = 0, syslog_dropped = 0, syslog_queued = 0, write_errors = 0;
    bool syslog_connected = false;
  };
  Stats stats();

 private:
  void syslog_loop();
  AuditOptions o_;
  std::string hostname_;
  int fd_ = -1;
  std::mutex file_mu_, q_mu_, noisy_mu_;
  std::condition_variable q_cv_;
  std::deque<std::string> queue_;
  struct Noisy {
    int64_t start = 0, recorded = 0, suppressed = 0;  // window start (ms), records in it, counted only
  };
  std::map<std::string, Noisy> noisy_;
  std::atomic<int64_t> records_{0}, sent_{0}, dropped_{0}, write_errors_{0};
  std::atomic<bool> connected_{false}, stop_{false};
  std::unique_ptr<SyslogConnection> conn_;  // used by the syslog thread only
  std::thread syslog_;
};

}  // namespace ich
