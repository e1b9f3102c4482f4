// metrics.cpp: the Prometheus text format (metrics.h).
#include "serve/metrics.h"

#include <cmath>
#include <cstdio>
#include <limits>

#include "engine/error.h"

namespace ich {

namespace {

// Label values escape backslash, double quote and line feed (the format's rule).
std::string label_text(const MetricLabels& labels) {
  if (labels.empty()) return "";
  std::string s = "{";
  for (size_t i = 0; i < labels.size(); ++i) {
    s += (i ? "," : "") + labels[i].first + "=\"";
    for (char c : labels[i].second) {
      if (c == '\\') s += "\\\\";
      else if (c == '"') s += "\\\"";
      else if (c == '\n') s += "\\n";
      else s += c;
    }
    s += "\"";
  }
  return s + "}";
}

std::string number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  char b[64];
  if (v == std::floor(v) && std::fabs(v) < 1e15) std::snprintf(b, sizeof b, "%.0f", v);
  else std::snprintf(b, sizeof b, "%.9g", v);
  return b;
}

// A label set with one more label (le) inserted before the closing brace.
std::string with_le(const std::string& labels, const std::string& le) {
  if (labels.empty()) return "{le=\"" + le + "\"}";
  return labels.substr(0, labels.size() - 1) + ",le=\"" + le + "\"}";
}

}  // namespace

std::vector<double> latency_buckets() { return {0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}; }

void declare_serve_metrics(Metrics& m) {
  using T = Metrics::Type;
  m.declare("ich_serve_connections_total", T::counter,
            "TCP connections by what became of them: association (its request reached DICOM negotiation), "
            "closed_early, silent, not_dicom, tls_failed, tls_required, tls_not_configured, too_many, bad_request");
  for (const char* o : {"association", "closed_early", "silent", "not_dicom", "tls_failed", "tls_required",
                        "tls_not_configured", "too_many", "bad_request"})
    m.touch("ich_serve_connections_total", {{"outcome", o}});
  m.declare("ich_serve_associations_accepted_total", T::counter, "Associations accepted");
  m.touch("ich_serve_associations_accepted_total");
  m.declare("ich_serve_associations_rejected_total", T::counter,
            "Associations rejected (A-ASSOCIATE-RJ) by reason: called_aet, calling_aet, local_limit, "
            "no_presentation_context, application_context");
  for (const char* r : {"called_aet", "calling_aet", "local_limit", "no_presentation_context", "application_context"})
    m.touch("ich_serve_associations_rejected_total", {{"reason", r}});
  m.declare("ich_serve_handshakes", T::gauge, "Connections still in their TLS handshake or association request");
  m.touch("ich_serve_handshakes");
  m.declare("ich_serve_associations_active", T::gauge, "Associations in progress");
  m.touch("ich_serve_associations_active");
  m.declare("ich_serve_fhir_sent_total", T::counter, "FHIR Bundles taken by the --fhir server (200 or 201)");
  m.touch("ich_serve_fhir_sent_total");
  m.declare("ich_serve_fhir_failures_total", T::counter, "FHIR Bundle posts that failed (retried)");
  m.touch("ich_serve_fhir_failures_total");
  m.declare("ich_serve_stow_requests_total", T::counter,
            "STOW-RS requests (POST /studies) by outcome: stored, partly, refused (no part stored), bad_request, "
            "forbidden (not on the allow-list), busy (--max-pending)");
  for (const char* o : {"stored", "partly", "refused", "bad_request", "forbidden", "busy"})
    m.touch("ich_serve_stow_requests_total", {{"outcome", o}});
  m.declare("ich_serve_instances_received_total", T::counter, "Instances stored (C-STORE status 0000, or a STOW-RS part)");
  m.touch("ich_serve_instances_received_total");
  m.declare("ich_serve_instances_refused_total", T::counter,
            "Instances refused by status: A700 out of resources (disk), C000 cannot understand, 0122 not CT (STOW-RS)");
  for (const char* st : {"A700", "C000", "0122"}) m.touch("ich_serve_instances_refused_total", {{"status", st}});
  m.declare("ich_serve_studies_received_total", T::counter, "Studies opened (a new study, or new instances for a finished one)");
  m.declare("ich_serve_studies_processed_total", T::counter, "Studies analysed (results written)");
  m.declare("ich_serve_studies_failed_total", T::counter, "Studies that could not be analysed");
  m.declare("ich_serve_studies_sent_total", T::counter, "Studies whose results the destination stored");
  m.declare("ich_serve_send_failures_total", T::counter, "Failed attempts to send a study's results (each retried)");
  for (const char* c : {"ich_serve_studies_received_total", "ich_serve_studies_processed_total",
                        "ich_serve_studies_failed_total", "ich_serve_studies_sent_total", "ich_serve_send_failures_total"})
    m.touch(c);
  m.declare("ich_serve_studies", T::gauge, "Studies held, by phase: receiving, stable (queued), processed (to send), sent, failed");
  for (const char* p : {"receiving", "stable", "processed", "sent", "failed"}) m.touch("ich_serve_studies", {{"phase", p}});
  m.declare("ich_serve_stage_seconds", T::histogram,
            "Time per study in each stage: quiet (last instance to stable), queued, predict, key_images, write, send",
            latency_buckets());
  m.declare("ich_serve_latency_seconds", T::histogram, "Last instance received to results stored at the destination",
            latency_buckets());
  m.touch("ich_serve_latency_seconds");
  m.declare("ich_serve_work_bytes", T::gauge, "Bytes of files under the work folder");
  m.declare("ich_serve_work_free_bytes", T::gauge, "Free bytes on the work folder's file system");
  m.declare("ich_serve_destination_up", T::gauge, "1 when the destination answered the last C-ECHO, else 0");
  m.declare("ich_serve_ready", T::gauge, "1 when every /readyz check passes, else 0");
  m.declare("ich_serve_audit_records_total", T::counter, "Audit records written");
  m.declare("ich_serve_audit_write_errors_total", T::counter, "Audit records the audit log file could not take");
  m.declare("ich_serve_audit_syslog_sent_total", T::counter, "Audit records the syslog collector took");
  m.declare("ich_serve_audit_syslog_dropped_total", T::counter, "Audit records dropped from a full syslog queue");
  m.declare("ich_serve_audit_syslog_queue", T::gauge, "Audit records waiting for the syslog collector");
  m.declare("ich_serve_audit_syslog_up", T::gauge,
            "1 while the syslog collector is connected (over TLS: verified), else 0 (also with no --audit-syslog)");
}

void Metrics::declare(const std::string& name, Type type, const std::string& help, std::vector<double> buckets) {
  std::lock_guard<std::mutex> l(mu_);
  Family& f = families_[name];
  f.type = type;
  f.help = help;
  f.buckets = std::move(buckets);
}

Metrics::Series& Metrics::series_locked(const std::string& name, const MetricLabels& labels) {
  auto it = families_.find(name);
  ICH_CHECK(it != families_.end(), "metric ", name, " was not declared");
  Series& s = it->second.series[label_text(labels)];
  if (it->second.type == Type::histogram && s.bucket_counts.empty()) s.bucket_counts.assign(it->second.buckets.size(), 0);
  return s;
}

void Metrics::touch(const std::string& name, const MetricLabels& labels) {
  std::lock_guard<std::mutex> l(mu_);
  series_locked(name, labels);
}

void Metrics::add(const std::string& name, const MetricLabels& labels, double v) {
  std::lock_guard<std::mutex> l(mu_);
  series_locked(name, labels).value += v;
}

void Metrics::set(const std::string& name, const MetricLabels& labels, double v) {
  std::lock_guard<std::mutex> l(mu_);
  series_locked(name, labels).value = v;
}

void Metrics::observe(const std::string& name, const MetricLabels& labels, double v) {
  std::lock_guard<std::mutex> l(mu_);
  Series& s = series_locked(name, labels);
  const std::vector<double>& b = families_.at(name).buckets;
  for (size_t i = 0; i < b.size(); ++i)
    if (v <= b[i]) s.bucket_counts[i] += 1;  // cumulative: every bucket whose bound holds v
  s.value += v;
  s.count += 1;
}

double Metrics::value(const std::string& name, const MetricLabels& labels) const {
  std::lock_guard<std::mutex> l(mu_);
  auto f = families_.find(name);
  if (f == families_.end()) return std::numeric_limits<double>::quiet_NaN();
  auto s = f->second.series.find(label_text(labels));
  if (s == f->second.series.end()) return std::numeric_limits<double>::quiet_NaN();
  return f->second.type == Type::histogram ? s->second.count : s->second.value;
}

std::string Metrics::render() const {
  std::lock_guard<std::mutex> l(mu_);
  std::string out;
  for (const auto& [name, f] : families_) {
    if (f.series.empty()) continue;
    out += "# HELP " + name + " " + f.help + "\n# TYPE " + name + " " +
           (f.type == Type::counter ? "counter" : f.type == Type::gauge ? "gauge" : "histogram") + "\n";
    for (const auto& [labels, s] : f.series) {
      if (f.type != Type::histogram) {
        out += name + labels + " " + number(s.value) + "\n";
        continue;
      }
      for (size_t i = 0; i < f.buckets.size(); ++i)
        out += name + "_bucket" + with_le(labels, number(f.buckets[i])) + " " + number(s.bucket_counts[i]) + "\n";
      out += name + "_bucket" + with_le(labels, "+Inf") + " " + number(s.count) + "\n";
      out += name + "_sum" + labels + " " + number(s.value) + "\n";
      out += name + "_count" + labels + " " + number(s.count) + "\n";
    }
  }
  return out;
}

}  // namespace ich
