// metrics.h: ich-serve's counters, gauges and histograms, rendered in
// Prometheus' text exposition format (version 0.0.4) for GET /metrics.
// Every metric is declared once with its type and help text, so that it is
// exposed (at zero) before its first event and `promtool check metrics`
// finds HELP and TYPE for each. Thread-safe; updates take one lock.
#pragma once
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace ich {

using MetricLabels = std::vector<std::pair<std::string, std::string>>;

class Metrics {
 public:
  enum class Type { counter, gauge, histogram };
  void declare(const std::string& name, Type type, const std::string& help, std::vector<double> buckets = {});
  // Also creates the series at zero (for labels known in advance).
  void touch(const std::string& name, const MetricLabels& labels = {});
  void add(const std::string& name, const MetricLabels& labels = {}, double v = 1);  // counter
  void set(const std::string& name, const MetricLabels& labels, double v);           // gauge
  void observe(const std::string& name, const MetricLabels& labels, double v);       // histogram
  std::string render() const;
  double value(const std::string& name, const MetricLabels& labels = {}) const;  // for tests; NaN if none

 private:
  struct Series {
    double value = 0;                  // counter, gauge; histogram: sum
    std::vector<double> bucket_counts; // histogram, cumulative at render
    double count = 0;
  };
  struct Family {
    Type type;
    std::string help;
    std::vector<double> buckets;
    std::map<std::string, Series> series;  // by rendered label set
  };
  Series& series_locked(const std::string& name, const MetricLabels& labels);
  mutable std::mutex mu_;
  std::map<std::string, Family> families_;
};

// Seconds buckets for per-stage latencies: 10 ms to 10 minutes.
std::vector<double> latency_buckets();

// Every metric ich-serve exposes, declared in this one place (docs/serve.md
// lists them), with the series known in advance created at zero.
void declare_serve_metrics(Metrics& m);

}  // namespace ich
