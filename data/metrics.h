// metrics.h: what ich-eval reports, per label.
//
//   accuracy, precision, recall, F1 at threshold 0.5 (the seed's table),
//     with "Normal" = not any: predicted normal when p(any) < 0.5
//   ROC AUC: the probability that a random positive scores above a random
//     negative (ties count half), from ranks (Mann-Whitney U)
//   the competition's weighted multi-label log loss: per image, the BCE of
//     the six labels weighted 1,1,1,1,1 and 2 for "any", divided by the
//     weight sum (7); averaged over images. Probabilities are clipped to
//     [1e-7, 1 - 1e-7] so one confident mistake is finite.
#pragma once
#include <array>
#include <cmath>
#include <string>
#include <vector>

namespace ich {

struct BinaryMetrics {
  int64_t tp = 0, fp = 0, tn = 0, fn = 0;
  double accuracy = 0, precision = 0, recall = 0, f1 = 0, auc = 0;  // NaN where undefined
};

// scores: predicted probabilities; labels: 0/1.
BinaryMetrics binary_metrics(const std::vector<double>& scores, const std::vector<int>& labels,
                             double threshold = 0.5);
double roc_auc(const std::vector<double>& scores, const std::vector<int>& labels);
// ROC curve points (false positive rate, true positive rate), from (0,0) to (1,1).
std::vector<std::pair<double, double>> roc_curve(const std::vector<double>& scores, const std::vector<int>& labels);

// probs, labels: N x 6 (RSNA order, "any" last).
double weighted_log_loss(const std::vector<std::array<double, 6>>& probs, const std::vector<std::array<int, 6>>& labels);

struct EvalReport {
  std::array<BinaryMetrics, 7> per_label;  // Normal, the five subtypes, Any (the seed's column order)
  double weighted_log_loss = 0, mean_bce = 0;
  int64_t images = 0;
};
EvalReport evaluate(const std::vector<std::array<double, 6>>& probs, const std::vector<std::array<int, 6>>& labels);
std::string format_table(const EvalReport& r);  // markdown, the seed's table plus F1 and AUC
std::string to_json(const EvalReport& r);

struct OperatingPoint {
  double target = 0;  // sensitivity asked for
  double threshold = NAN, sensitivity = NAN, specificity = NAN, ppv = NAN;
};
// The highest threshold t (one of the scores; positive when p >= t) whose
// sensitivity reaches `target`; NaN without positives or negatives.
OperatingPoint operating_point(const std::vector<double>& scores, const std::vector<int>& labels, double target);


}  // namespace ich
