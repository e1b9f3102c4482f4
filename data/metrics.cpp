#include "data/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "engine/error.h"

namespace ich {

double roc_auc(const std::vector<double>& s, const std::vector<int>& y) {
  ICH_CHECK(s.size() == y.size(), "roc_auc: ", s.size(), " scores for ", y.size(), " labels");
  std::vector<size_t> idx(s.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return s[a] < s[b]; });
  // Average ranks over ties, then U = sum of positive ranks - P(P+1)/2.
  double pos_rank_sum = 0;
  int64_t P = 0, N = 0;
  for (size_t i = 0; i < idx.size();) {
    size_t j = i;
    while (j < idx.size() && s[idx[j]] == s[idx[i]]) ++j;
    const double avg_rank = (double(i + 1) + double(j)) / 2;
    for (size_t k = i; k < j; ++k) {
      if (y[idx[k]]) {
        pos_rank_sum += avg_rank;
        ++P;
      } else {
        ++N;
      }
    }
    i = j;
  }
  if (P == 0 || N == 0) return NAN;
  return (pos_rank_sum - double(P) * double(P + 1) / 2) / (double(P) * double(N));
}

std::vector<std::pair<double, double>> roc_curve(const std::vector<double>& s, const std::vector<int>& y) {
  std::vector<size_t> idx(s.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return s[a] > s[b]; });
  const double P = double(std::count(y.begin(), y.end(), 1)), N = double(y.size()) - P;
  std::vector<std::pair<double, double>> pts{{0, 0}};
  double tp = 0, fp = 0;
  for (size_t i = 0; i < idx.size();) {
    size_t j = i;
    while (j < idx.size() && s[idx[j]] == s[idx[i]]) {
      (y[idx[j]] ? tp : fp) += 1;
      ++j;
    }
    pts.emplace_back(N > 0 ? fp / N : 0, P > 0 ? tp / P : 0);
    i = j;
  }
  return pts;
}

BinaryMetrics binary_metrics(const std::vector<double>& s, const std::vector<int>& y, double threshold) {
  BinaryMetrics m;
  for (size_t i = 0; i < s.size(); ++i) {
    const bool p = s[i] >= threshold;
    if (p && y[i]) ++m.tp;
    else if (p) ++m.fp;
    else if (y[i]) ++m.fn;
    else ++m.tn;
  }
  const double n = double(s.size());
  m.accuracy = n > 0 ? double(m.tp + m.tn) / n : NAN;
  m.precision = m.tp + m.fp > 0 ? double(m.tp) / double(m.tp + m.fp) : NAN;
  m.recall = m.tp + m.fn > 0 ? double(m.tp) / double(m.tp + m.fn) : NAN;
  m.f1 = (m.tp + m.fp > 0 && m.tp + m.fn > 0 && m.tp > 0) ? 2 * m.precision * m.recall / (m.precision + m.recall)
         : (m.tp + m.fp + m.fn > 0 ? 0.0 : NAN);
  m.auc = roc_auc(s, y);
  return m;
}

namespace {
double clipped_bce(double p, int y) {
  p = std::clamp(p, 1e-7, 1 - 1e-7);
  return -(y ? std::log(p) : std::log(1 - p));
}
}  // namespace

double weighted_log_loss(const std::vector<std::array<double, 6>>& p, const std::vector<std::array<int, 6>>& y) {
  ICH_CHECK(p.size() == y.size() && !p.empty(), "weighted_log_loss: ", p.size(), " predictions for ", y.size(),
            " labels");
  const double w[6] = {1, 1, 1, 1, 1, 2};
  double total = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    double s = 0;
    for (size_t k = 0; k < 6; ++k) s += w[k] * clipped_bce(p[i][k], y[i][k]);
    total += s / 7.0;
  }
  return total / double(p.size());
}

EvalReport evaluate(const std::vector<std::array<double, 6>>& p, const std::vector<std::array<int, 6>>& y) {
  EvalReport r;
  r.images = int64_t(p.size());
  std::vector<double> s(p.size());
  std::vector<int> l(p.size());
  // Normal: not any. Its score is 1 - p(any).
  for (size_t i = 0; i < p.size(); ++i) s[i] = 1 - p[i][5], l[i] = 1 - y[i][5];
  r.per_label[0] = binary_metrics(s, l);
  for (size_t k = 0; k < 6; ++k) {
    for (size_t i = 0; i < p.size(); ++i) s[i] = p[i][k], l[i] = y[i][k];
    r.per_label[k + 1] = binary_metrics(s, l);
  }
  r.weighted_log_loss = weighted_log_loss(p, y);
  double bce = 0;
  for (size_t i = 0; i < p.size(); ++i)
    for (size_t k = 0; k < 6; ++k) bce += clipped_bce(p[i][k], y[i][k]);
  r.mean_bce = bce / double(6 * p.size());
  return r;
}

namespace {
const char* kColumns[7] = {"Normal", "Epidural", "Intraparenchymal", "Intraventricular", "Subarachnoid", "Subdural",
                           "Any"};
std::string num(double v) {
  if (std::isnan(v)) return "n/a";
  char b[32];
  std::snprintf(b, sizeof b, "%.3f", v);
  return b;
}
}  // namespace

std::string format_table(const EvalReport& r) {
  std::string t = "|          |";
  for (const char* c : kColumns) t += std::string(" ") + c + " |";
  t += "\n|----------|";
  for (int i = 0; i < 7; ++i) t += "------|";
  t += "\n";
  auto row = [&](const char* name, double BinaryMetrics::*f) {
    char b[16];
    std::snprintf(b, sizeof b, "| %-8s |", name);
    t += b;
    for (const auto& m : r.per_label) t += " " + num(m.*f) + " |";
    t += "\n";
  };
  row("Accuracy", &BinaryMetrics::accuracy);
  row("Precision", &BinaryMetrics::precision);
  row("Recall", &BinaryMetrics::recall);
  row("F1", &BinaryMetrics::f1);
  row("AUC", &BinaryMetrics::auc);
  t += "\nweighted log loss (competition metric, any x2): " + num(r.weighted_log_loss) +
       "   mean BCE: " + num(r.mean_bce) + "   images: " + std::to_string(r.images) + "\n";
  return t;
}

std::string to_json(const EvalReport& r) {
  auto j = [](double v) {
    if (std::isnan(v)) return std::string("null");
    char b[32];
    std::snprintf(b, sizeof b, "%.6f", v);
    return std::string(b);
  };
  std::string s = "{\n  \"images\": " + std::to_string(r.images) + ",\n  \"weighted_log_loss\": " +
                  j(r.weighted_log_loss) + ",\n  \"mean_bce\": " + j(r.mean_bce) + ",\n  \"labels\": {\n";
  for (size_t i = 0; i < 7; ++i) {
    const auto& m = r.per_label[i];
    s += "    \"" + std::string(kColumns[i]) + "\": {\"accuracy\": " + j(m.accuracy) + ", \"precision\": " +
         j(m.precision) + ", \"recall\": " + j(m.recall) + ", \"f1\": " + j(m.f1) + ", \"auc\": " + j(m.auc) +
         ", \"tp\": " + std::to_string(m.tp) + ", \"fp\": " + std::to_string(m.fp) + ", \"tn\": " +
         std::to_string(m.tn) + ", \"fn\": " + std::to_string(m.fn) + "}" + (i < 6 ? "," : "") + "\n";
  }
  return s + "  }\n}\n";
}

OperatingPoint operating_point(const std::vector<double>& scores, const std::vector<int>& labels, double target) {
  OperatingPoint op;
  op.target = target;
  const int64_t pos = std::count(labels.begin(), labels.end(), 1), neg = int64_t(labels.size()) - pos;
  if (pos == 0 || neg == 0) return op;
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  int64_t tp = 0, fp = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    (labels[order[i]] == 1 ? tp : fp) += 1;
    if (i + 1 < order.size() && scores[order[i + 1]] == scores[order[i]]) continue;  // a threshold takes all ties
    if (double(tp) >= target * double(pos) - 1e-9) {
      op.threshold = scores[order[i]];
      op.sensitivity = double(tp) / double(pos);
      op.specificity = double(neg - fp) / double(neg);
      op.ppv = double(tp) / double(tp + fp);
      return op;
    }
  }
  return op;
}

}  // namespace ich
