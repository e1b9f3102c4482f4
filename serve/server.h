// server.h: ich-serve, a DICOM node that triages head CT studies as they
// arrive and sends its results back to the PACS (docs/serve.md).
//
//   receiver (serve/receiver.h)   admitted peers' instances -> DIR/studies/<uid>/instances/
//   scheduler (run_server)        quiet studies -> stable; stable ones to the
//                                 worker pool in arrival order; processed ones
//                                 to the sender when due
//   workers (serve/analyse.h)     a study's SR and key images
//   sender (serve/sender.h)       C-STORE to the destination, retried with
//                                 backoff while it is down
//   audit, metrics, health        serve/audit.h, serve/metrics.h, serve/http.h
// Every step is recorded in the study's state file (serve/study_state.h)
// before the next depends on it, so kill -9 and a restart lose nothing and
// send nothing twice.
#pragma once
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "serve/dicomweb.h"
#include "serve/fhir.h"
#include "serve/sender.h"
#include "serve/syslog_transport.h"
#include "serve/tls.h"

namespace ich {

struct ServeOptions {
  std::string aet = "ICH";
  std::string bind = "0.0.0.0";
  int port = 11112;
  std::string checkpoint;
  std::vector<std::string> sequence;
  std::vector<std::string> ensemble;  // --checkpoint given more than once: the others
  std::string tta = "none";
  std::string precision = "fp32";  // or bf16 (layers/resnext_compiled.h)
  std::string work;
  Destination dest;
  TlsFiles dest_tls;           // TLS to the destination when dest_tls.ca is set
  // The results also over STOW-RS to an archive (serve/dicomweb.h) when
  // dest_stow.url is set, its Authorization from dest_stow_auth (a file).
  StowDestination dest_stow;
  std::string dest_stow_auth;
  // Studies taken over STOW-RS on --http's POST /studies, from peers the
  // allow-list names as STOW@HOST; bodies up to stow_max_mb.
  bool stow = false;
  int64_t stow_max_mb = 1024;
  // Each study's FHIR Bundle (serve/fhir.h) POSTed to fhir.url when set,
  // its Authorization from fhir_auth (a file), retried on its own.
  FhirDestination fhir;
  std::string fhir_auth;
  double stable_seconds = 10;
  int workers = 1;
  int max_pending = 64;        // studies received but not yet processed, before new associations are refused
  int max_associations = 8;
  int64_t min_free_mb = 512;   // below this free space in DIR, instances are refused (0xA700, out of resources)
  double threshold = 0.5;
  std::string thresholds;  // per-label operating points (ich-eval --studies' study_thresholds.csv) at `sensitivity`
  double sensitivity = 0.95;
  int key_images = 3;
  std::string device = "auto";
  int64_t batch = 16;
  double retry_first_seconds = 2, retry_max_seconds = 60;
  // Who may talk to the node (serve/access.h): none unless allowed.
  std::vector<std::string> allow;  // AET@HOST
  std::string allow_file;          // read at start and on SIGHUP
  bool allow_any = false;
  TlsFiles tls;                    // receiving over TLS when tls.cert is set
  bool tls_allow_plain = false;
  int acse_timeout_s = 10;
  std::string audit_log;           // default WORK/audit.jsonl
  std::string audit_syslog;        // HOST:PORT, RFC 5424 over TCP
  SyslogTls audit_syslog_tls;      // ... over TLS (RFC 5425) when its ca is set
  std::string http;                // ADDR:PORT for /healthz, /readyz, /metrics; empty: none
  double dest_echo_seconds = 30;   // how often /readyz's destination check sends a C-ECHO
};

// Serves until stop is set (SIGINT/SIGTERM in ich-serve), then finishes
// the studies in hand and returns; reload (SIGHUP) re-reads --allow-file.
// Throws on a bad checkpoint, work folder, port or option.
void run_server(const ServeOptions& o, const std::atomic<bool>& stop, std::atomic<bool>* reload = nullptr);

}  // namespace ich
