// calibrate.h: temperature scaling (Guo et al. 2017, "On Calibration of
// Modern Neural Networks"), one temperature per label for six sigmoids.
//
// A network trained to low loss is often over-confident: its probabilities
// are more extreme than its hit rate. Dividing each label's logit by a
// temperature T > 1 pulls them toward 0.5 (T < 1 pushes them out) without
// changing their order, so every ranking metric (AUC, the operating points'
// sensitivity and specificity at matching thresholds) stays as it was and
// the log loss and calibration error fall. T is fitted on validation data
// by minimising the mean binary cross-entropy of sigmoid(z / T): a convex
// problem in 1/T, solved by golden-section search over log(1/T).
#pragma once
#include <array>
#include <vector>

namespace ich {

struct TemperatureFit {
  double temperature = 1.0;  // 1 where the label had no positives or no negatives (nothing to fit)
  double loss_before = 0, loss_after = 0;  // mean BCE at T = 1 and at the fitted T
  bool fitted = false;
};
TemperatureFit fit_temperature(const std::vector<double>& logits, const std::vector<int>& labels);

// sigmoid(z / T), computed stably.
double calibrated_probability(double logit, double temperature);

}  // namespace ich
