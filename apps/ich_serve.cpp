// ich-serve: a DICOM node that triages head CT studies as they arrive and
// sends the results back to the PACS (serve/server.h, docs/serve.md).
#include <dcmtk/config/osconfig.h>
#include <dcmtk/oflog/oflog.h>

#include <csignal>

#include "apps/app_main.h"
#include "serve/server.h"

namespace {
std::atomic<bool> g_stop{false}, g_reload{false};
void on_signal(int) { g_stop = true; }
void on_hangup(int) { g_reload = true; }
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "A DICOM storage SCP (C-ECHO; C-STORE of CT and Enhanced CT) that triages head CT studies for intracranial\n"
      "hemorrhage. Instances are stored under --work as they arrive, grouped by study; a study with no new instance\n"
      "for --stable-seconds is processed (windowing, the slice model, the series model when given) and its results\n"
      "go back into the study with C-STORE to the destination: a Comprehensive SR (finding, probabilities, key\n"
      "slices) and Secondary Capture key images (Grad-CAM), and one line per study in WORK/results.jsonl.\n"
      "Killed at any moment, a restart on the same --work goes on where each study was; results are sent once.\n"
      "Only the senders on the allow-list are admitted (--allow AET@HOST, --allow-file; SIGHUP reads the file again);\n"
      "the called AE title must be --aet. With --tls-cert/--tls-key it speaks DICOM TLS (BCP 195: TLS 1.2+). Every\n"
      "association, refusal and study is an audit record (DICOM PS3.15) in --audit-log and, with --audit-syslog, on\n"
      "syslog (over TLS with --audit-syslog-tls-ca). --http serves /healthz, /readyz and /metrics (Prometheus).\n"
      "docs/serve.md has a hardening checklist.\n"
      "Stops on SIGINT/SIGTERM after the studies in hand. Exit codes: 0 stopped by a signal, 1 failed (bad\n"
      "checkpoint, busy port, unusable --work, unreadable allow file or certificate), 2 bad flags."};
  ich::ServeOptions o;
  app.add_option("--aet", o.aet, "this node's AE title")->capture_default_str();
  app.add_option("--port", o.port, "TCP port to listen on")->capture_default_str()->check(CLI::Range(1, 65535));
  app.add_option("--bind", o.bind, "address to listen on (IPv4 or IPv6; 0.0.0.0 is every IPv4 interface)")->capture_default_str();
  app.add_option("--allow", o.allow,
                 "a sender that may associate, AET@HOST (HOST: an address, a CIDR block, a name or *); repeatable. "
                 "Default: nobody (every association refused, each with a log line saying how to admit it)");
  app.add_option("--allow-file", o.allow_file, "file of AET@HOST lines (# comments), read at start and on SIGHUP");
  app.add_flag("--allow-any", o.allow_any, "admit any calling AE title from any host (a lab bench, never a hospital network)");
  app.add_option("--acse-timeout", o.acse_timeout_s,
                 "seconds a new connection has to finish TLS and send its association request")->capture_default_str();
  app.add_option("--tls-cert", o.tls.cert, "this node's certificate (PEM): accept DICOM TLS (BCP 195, TLS 1.2+)");
  app.add_option("--tls-key", o.tls.key, "the private key of --tls-cert (PEM, unencrypted)");
  app.add_option("--tls-ca", o.tls.ca, "require senders' certificates, signed by this CA (PEM)");
  app.add_flag("--tls-allow-plain", o.tls_allow_plain, "with --tls-cert, also accept plain (non-TLS) associations");
  std::vector<std::string> checkpoints;
  app.add_option("--checkpoint", checkpoints, "slice model from ich-train; more than once: an ensemble, averaged")
      ->required();
  app.add_option("--tta", o.tta, "test-time views averaged: none, flip, flip+transpose")->capture_default_str();
  app.add_option("--precision", o.precision,
                 "fp32 (on a CPU with AVX-512F or AVX2 + FMA: batch norm folded, NHWC float32 kernels; ICH_CPU_F32=engine "
                 "for the layer-by-layer engine), or bf16: the CPU's bfloat16 inference (batch norm folded, AMX or AVX512-BF16 "
                 "kernels; refused on CPUs without them); Grad-CAM runs the engine in float32")
      ->check(CLI::IsMember({"fp32", "bf16"}))
      ->capture_default_str();
  app.add_option("--sequence", o.sequence, "series model(s) from ich-train-seq on this CNN's embeddings (averaged)");
  app.add_option("--work", o.work, "folder for received studies, their state and results (results.jsonl)")->required();
  app.add_option("--dest-aet", o.dest.aet, "AE title of the destination (the PACS)")->required();
  app.add_option("--dest-host", o.dest.host, "host of the destination")->required();
  app.add_option("--dest-port", o.dest.port, "port of the destination")->required()->check(CLI::Range(1, 65535));
  app.add_option("--dest-tls-ca", o.dest_tls.ca, "send over DICOM TLS, verifying the destination against this CA (PEM)");
  app.add_option("--dest-tls-cert", o.dest_tls.cert, "the certificate (PEM) ich presents to the destination");
  app.add_option("--dest-tls-key", o.dest_tls.key, "the private key of --dest-tls-cert (PEM, unencrypted)");
  app.add_option("--dest-echo-seconds", o.dest_echo_seconds, "how often the destination is sent a C-ECHO (for /readyz)")
      ->capture_default_str();
  app.add_option("--dest-stow", o.dest_stow.url,
                 "also send the results with STOW-RS to this URL (http(s)://host:port/.../studies), retried as C-STORE is");
  app.add_option("--dest-stow-auth", o.dest_stow_auth,
                 "file holding the STOW-RS archive's credentials: one line 'bearer TOKEN' or 'basic USER:PASSWORD'");
  app.add_option("--dest-stow-ca", o.dest_stow.ca_file, "https: verify the archive against this CA bundle (PEM)");
  app.add_option("--fhir", o.fhir.url,
                 "POST each study's FHIR R4 Bundle (DiagnosticReport and Observations, also in its results folder) "
                 "to this FHIR server base URL, retried on its own");
  app.add_option("--fhir-auth", o.fhir_auth, "file holding the FHIR server's credentials: 'bearer TOKEN' or 'basic USER:PASSWORD'");
  app.add_option("--fhir-ca", o.fhir.ca_file, "https: verify the FHIR server against this CA bundle (PEM)");
  app.add_flag("--stow", o.stow,
               "take studies over STOW-RS on --http's POST /studies, from peers the allow-list names as STOW@HOST");
  app.add_option("--stow-max-mb", o.stow_max_mb, "the largest STOW-RS request body taken (413 above)")->capture_default_str();
  app.add_option("--audit-log", o.audit_log, "audit records, one JSON line each (default WORK/audit.jsonl)");
  app.add_option("--audit-syslog", o.audit_syslog, "also send audit records as RFC 5424 syslog over TCP to HOST:PORT");
  app.add_option("--audit-syslog-tls-ca", o.audit_syslog_tls.ca,
                 "send them over TLS instead (RFC 5425), verifying that the collector's certificate chains to this CA "
                 "(PEM) and names the --audit-syslog host");
  app.add_option("--audit-syslog-tls-cert", o.audit_syslog_tls.cert,
                 "the certificate (PEM) ich presents to the collector (IHE ATNA's mutual authentication)");
  app.add_option("--audit-syslog-tls-key", o.audit_syslog_tls.key, "the private key of --audit-syslog-tls-cert (PEM, unencrypted)");
  app.add_option("--http", o.http,
                 "serve /healthz, /readyz and /metrics (and with --stow POST /studies) on [ADDRESS:]PORT (loopback when no "
                 "address)");
  app.add_option("--stable-seconds", o.stable_seconds, "a study is complete after this long without a new instance")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  auto* fixed = app.add_option("--threshold", o.threshold,
                               "the probability at or above which the SR says a finding is present (every label)")
                    ->capture_default_str();
  app.add_option("--thresholds", o.thresholds,
                 "each label's operating threshold from a validation run instead: ich-eval --studies' "
                 "study_thresholds.csv, at --sensitivity")
      ->excludes(fixed);
  app.add_option("--sensitivity", o.sensitivity, "the study-level sensitivity of --thresholds' operating points")
      ->capture_default_str();
  app.add_option("--key-images", o.key_images, "key images per study (the highest p(any))")->capture_default_str();
  app.add_option("--workers", o.workers, "studies processed at once, in arrival order (each worker loads its own copy of the models)")->capture_default_str();
  app.add_option("--max-pending", o.max_pending,
                 "studies received but not yet processed at which new associations are refused (rejected-transient)")
      ->capture_default_str();
  app.add_option("--max-associations", o.max_associations, "associations served at once")->capture_default_str();
  app.add_option("--min-free-mb", o.min_free_mb, "free space in --work below which instances are refused")->capture_default_str();
  app.add_option("--retry-max-seconds", o.retry_max_seconds,
                 "longest wait between two tries to send to a destination that is down (the first is 2 s, doubling)")
      ->capture_default_str();
  app.add_option("--device", o.device, "cpu, cuda or auto")->capture_default_str();
  app.add_option("--batch", o.batch, "slices per forward pass")->capture_default_str()->check(CLI::PositiveNumber);
  return ich::run_app("ich-serve", app, argc, argv, [&] {
    o.checkpoint = checkpoints.front();
    o.ensemble.assign(checkpoints.begin() + 1, checkpoints.end());
    o.dest.calling_aet = o.aet;
    OFLog::configure(OFLogger::WARN_LOG_LEVEL);  // DCMTK's per-message lines off; ours name each study
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    std::signal(SIGPIPE, SIG_IGN);
    std::signal(SIGHUP, on_hangup);
    ich::run_server(o, g_stop, &g_reload);
    return 0;
  });
}
