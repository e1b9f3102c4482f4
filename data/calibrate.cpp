#include "data/calibrate.h"

#include <algorithm>
#include <cmath>

#include "engine/error.h"

namespace ich {

namespace {

// Mean BCE of sigmoid(b z) against y: log(1 + e^{-bz}) for positives,
// log(1 + e^{bz}) for negatives, in the stable form.
double mean_bce(const std::vector<double>& z, const std::vector<int>& y, double b) {
  double s = 0;
  for (size_t i = 0; i < z.size(); ++i) {
    const double m = y[i] ? -b * z[i] : b * z[i];
    s += m > 0 ? m + std::log1p(std::exp(-m)) : std::log1p(std::exp(m));
  }
  return s / double(z.size());
}

}  // namespace

double calibrated_probability(double logit, double temperature) {
  const double u = logit / temperature;
  return u >= 0 ? 1 / (1 + std::exp(-u)) : std::exp(u) / (1 + std::exp(u));
}

TemperatureFit fit_temperature(const std::vector<double>& z, const std::vector<int>& y) {
  ICH_CHECK(z.size() == y.size(), "fit_temperature: ", z.size(), " logits, ", y.size(), " labels");
  TemperatureFit f;
  if (z.empty()) return f;
  f.loss_before = f.loss_after = mean_bce(z, y, 1.0);
  const auto pos = std::count(y.begin(), y.end(), 1);
  if (pos == 0 || pos == int64_t(y.size())) return f;
  // golden section over u = log(1/T) in [-7, 7]: T from e^-7 to e^7
  const double g = (std::sqrt(5.0) - 1) / 2;
  double a = -7, b = 7, c = b - g * (b - a), d = a + g * (b - a);
  double fc = mean_bce(z, y, std::exp(c)), fd = mean_bce(z, y, std::exp(d));
  for (int it = 0; it < 200 && b - a > 1e-12; ++it) {
    if (fc < fd) {
      b = d, d = c, fd = fc;
      c = b - g * (b - a);
      fc = mean_bce(z, y, std::exp(c));
    } else {
      a = c, c = d, fc = fd;
      d = a + g * (b - a);
      fd = mean_bce(z, y, std::exp(d));
    }
  }
  const double u = (a + b) / 2, loss = mean_bce(z, y, std::exp(u));
  if (loss < f.loss_before) {  // never worse than no scaling
    f.temperature = std::exp(-u);
    f.loss_after = loss;
  }
  f.fitted = true;
  return f;
}

}  // namespace ich
