// test_util.h: comparisons and the finite-difference gradient checker shared
// by the test suites.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/random.h"
#include "engine/tensor.h"

namespace ich::test {

// Relative error of `got` against `want`, in the max norm:
//   max_i |got_i - want_i| / max(max_i |want_i|, floor)
// A per-op error measure that does not blow up on entries near zero (a sum
// of many products rounds to about eps times its largest terms, not eps times
// itself), and still catches any wrong entry of a visible size.
inline double max_rel_error(const std::vector<double>& got, const std::vector<double>& want, double floor = 1e-6) {
  EXPECT_EQ(got.size(), want.size());
  double err = 0, scale = floor;
  for (size_t i = 0; i < got.size() && i < want.size(); ++i) {
    err = std::max(err, std::fabs(got[i] - want[i]));
    scale = std::max(scale, std::fabs(want[i]));
    if (std::isnan(got[i]) != std::isnan(want[i])) return INFINITY;
  }
  return err / scale;
}

#define EXPECT_CLOSE(got, want, tol)                                                            \
  do {                                                                                          \
    const ::ich::Tensor g_ = (got), w_ = (want);                                                \
    ASSERT_EQ(g_.shape(), w_.shape()) << #got << " " << g_.str() << " vs " << w_.str();         \
    const double e_ = ::ich::test::max_rel_error(g_.to_vector(), w_.to_vector());               \
    EXPECT_LE(e_, (tol)) << #got << " differs from " << #want << " by " << e_ << " (relative)"; \
  } while (0)

// Central finite differences in float64 against the analytic backward.
//
// f maps the inputs to any tensor y; the checked scalar is L = sum(y * R)
// with a fixed random R, so every output element's gradient path is used
// with a different weight. For each input that requires grad and each of its
// elements: dL/dx ~ (L(x+h) - L(x-h)) / 2h. With h = 1e-6 in float64, the
// truncation error is ~h^2 and the rounding error ~1e-16*|L|/h ~ 1e-10, so
// the tolerance below (1e-6 relative to the largest gradient) passes a right
// backward with a wide margin and fails any wrong one (a dropped term or
// factor changes entries by O(1) relative).
struct GradcheckResult {
  double max_error = 0;  // relative, as max_rel_error
  std::string worst;     // "input 1 element 17: analytic a, numeric n"
};

inline GradcheckResult gradcheck(const std::vector<Tensor>& inputs,
                                 const std::function<Tensor(const std::vector<Tensor>&)>& f, double h = 1e-6) {
  Generator gen(99);
  Tensor y = f(inputs);
  const Tensor R = Tensor::randn(y.shape(), gen, DType::Float64);
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) const_cast<Tensor&>(t).zero_grad();
  sum(mul(y, R)).backward();

  auto loss_value = [&] {
    NoGradGuard ng;
    return sum(mul(f(inputs), R)).item();
  };
  GradcheckResult r;
  double scale = 1e-6;
  std::vector<std::pair<std::vector<double>, std::vector<double>>> pairs;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& t = inputs[i];
    if (!t.defined() || !t.requires_grad()) continue;
    // No gradient means zero: right for an input f does not use, and caught
    // by the numeric side for one it does.
    const std::vector<double> analytic =
        t.grad().defined() ? t.grad().to_vector() : std::vector<double>(size_t(t.numel()), 0.0);
    std::vector<double> numeric(analytic.size());
    double* p = const_cast<Tensor&>(t).data<double>();
    for (size_t j = 0; j < numeric.size(); ++j) {
      const double keep = p[j];
      p[j] = keep + h;
      const double up = loss_value();
      p[j] = keep - h;
      const double down = loss_value();
      p[j] = keep;
      numeric[j] = (up - down) / (2 * h);
      scale = std::max(scale, std::fabs(analytic[j]));
    }
    for (size_t j = 0; j < numeric.size(); ++j) {
      const double e = std::fabs(analytic[j] - numeric[j]);
      if (e > r.max_error) {
        r.max_error = e;
        r.worst = "input " + std::to_string(i) + " element " + std::to_string(j) + ": analytic " +
                  std::to_string(analytic[j]) + ", numeric " + std::to_string(numeric[j]);
      }
    }
  }
  r.max_error /= scale;
  return r;
}

constexpr double kGradcheckTol = 1e-6;

#define EXPECT_GRADCHECK(inputs, fn)                                                         \
  do {                                                                                       \
    const auto r_ = ::ich::test::gradcheck((inputs), (fn));                                  \
    EXPECT_LE(r_.max_error, ::ich::test::kGradcheckTol) << "worst: " << r_.worst;            \
  } while (0)

inline Tensor leaf64(const Shape& s, Generator& gen, double scale = 1.0) {
  Tensor t = Tensor::randn(s, gen, DType::Float64);
  if (scale != 1.0) {
    std::vector<double> v = t.to_vector();
    for (double& x : v) x *= scale;
    t = Tensor::from_vector(v, s, DType::Float64);
  }
  t.set_requires_grad(true);
  return t;
}

}  // namespace ich::test
