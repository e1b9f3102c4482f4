// Float32 accuracy, op by op: how far our float32 kernels are from the
// float64 truth, beside how far PyTorch's float32 is on the same inputs, on
// this machine (tests/reference/gen_accuracy_reference.py writes the truth
// and PyTorch's results into the build folder when the suite runs).
//
// Two claims per result, neither tuned to one machine:
// - the standard's bound (Higham, Accuracy and Stability of Numerical
//   Algorithms, Thm 3.1 and 3.5): a sum of n products in float32, in any
//   order, with or without fused multiply-add, is off by at most
//   gamma_n * sum|a_k b_k|, gamma_n = n*u/(1-n*u), u = 2^-24; plus u for
//   rounding where a result is formed in double. Checked element by
//   element where the op is such a sum (convolution, linear layer), with
//   sum|a_k b_k| computed by the same op in float64 on absolute values;
// - against PyTorch: our normwise error ||ours - truth|| / ||truth|| is at
//   most twice PyTorch's, or u (a correctly rounded result's error) where
//   PyTorch's is smaller than that. A normwise error over thousands of
//   elements is an average of many roundings: it moves little between CPUs
//   and BLAS kernels, unlike one training trajectory (test_train_reference).
// The table it prints is the one in docs/engine.md ("Float32 accuracy").
#include <cmath>
#include <cstdio>
#include <functional>

#include "engine/ops/optim.h"
#include "tests/test_util.h"
#include "weights/weights_file.h"

namespace ich {
namespace {

constexpr double kU = 1.0 / (1 << 24);  // unit roundoff of float32

const WeightsFile& ref() {
  static const WeightsFile f = WeightsFile::open(std::string(ICH_ACCURACY_REF_DIR) + "/accuracy_ref.ichw");
  return f;
}

double l2_rel(const std::vector<double>& got, const std::vector<double>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// One row of the table: result r of case c, ours against PyTorch's.
void compare(const std::string& c, const std::string& r, const Tensor& ours) {
  SCOPED_TRACE(c + " " + r);
  const std::vector<double> truth = ref().read(c + "/" + r + "64").to_vector();
  const std::vector<double> torch32 = ref().read(c + "/" + r + "32").to_vector();
  const std::vector<double> got = ours.to_vector();
  ASSERT_EQ(got.size(), truth.size());
  const double e_ours = l2_rel(got, truth), e_torch = l2_rel(torch32, truth);
  std::printf("| %-34s | %-7s | %9.2e | %9.2e | %5.2f |\n", c.c_str(), r.c_str(), e_ours, e_torch,
              e_torch > 0 ? e_ours / e_torch : (e_ours > 0 ? INFINITY : 1.0));
  EXPECT_LE(e_ours, std::max(2 * e_torch, kU)) << "our float32 is less accurate than PyTorch's (truth: float64)";
}

// |ours - truth| <= gamma_n * bound + u * |truth|, element by element, where
// bound = sum|a_k b_k| of each element's n-term sum.
void within_sum_bound(const std::string& what, const Tensor& ours, const std::vector<double>& truth,
                      const Tensor& abs_bound, int64_t n) {
  const double gamma = double(n) * kU / (1 - double(n) * kU);
  const std::vector<double> got = ours.to_vector(), b = abs_bound.to_vector();
  ASSERT_EQ(got.size(), b.size());
  int64_t bad = 0, first = -1;
  for (size_t i = 0; i < got.size(); ++i)
    if (std::fabs(got[i] - truth[i]) > gamma * b[i] + kU * std::fabs(truth[i])) {
      if (first < 0) first = int64_t(i);
      ++bad;
    }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " elements beyond the rounding bound of a " << n
                    << "-term sum, first at " << first;
}

Tensor input(const std::string& name, DType dt = DType::Float32, bool grad = true, bool absolute = false) {
  Tensor t = ref().read(name);
  if (absolute) {
    std::vector<double> v = t.to_vector();
    for (double& e : v) e = std::fabs(e);
    t = Tensor::from_vector(v, t.shape(), DType::Float64);
  }
  t = t.to(dt);
  if (grad) t.set_requires_grad(true);
  return t;
}

class ConvAccuracy : public ::testing::TestWithParam<const char*> {};
TEST_P(ConvAccuracy, Float32WithinBoundAndPyTorch) {
  const std::string c = std::string("conv2d/") + GetParam();
  const std::vector<double> p = ref().read(c + "/params").to_vector();  // stride, pad, groups
  const Conv2dParams cp{int64_t(p[0]), int64_t(p[0]), int64_t(p[1]), int64_t(p[1]), int64_t(p[2])};
  Tensor x = input(c + "/a"), w = input(c + "/b");
  Tensor y = conv2d(x, w, Tensor(), cp);
  y.backward(ref().read(c + "/gy"));
  compare(c, "y", y);
  compare(c, "g_a", x.grad());
  compare(c, "g_b", w.grad());
  // The same convolution on |x|, |w|, |gy| in float64: each output's sum of
  // absolute terms, forward and for both gradients.
  Tensor ax = input(c + "/a", DType::Float64, true, true), aw = input(c + "/b", DType::Float64, true, true);
  Tensor ay = conv2d(ax, aw, Tensor(), cp);
  ay.backward(input(c + "/gy", DType::Float64, false, true));
  const int64_t k = w.size(1) * w.size(2) * w.size(3);                // forward: C/G * kh * kw terms
  const int64_t kd = (w.size(0) / cp.groups) * w.size(2) * w.size(3);  // backward data: at most O/G * kh * kw
  const int64_t kf = y.size(0) * y.size(2) * y.size(3);               // backward filter: N * Ho * Wo
  within_sum_bound("forward", y, ref().read(c + "/y64").to_vector(), ay, k);
  within_sum_bound("backward data", x.grad(), ref().read(c + "/g_a64").to_vector(), ax.grad(), kd);
  within_sum_bound("backward filter", w.grad(), ref().read(c + "/g_b64").to_vector(), aw.grad(), kf);
}
INSTANTIATE_TEST_SUITE_P(Conv2d, ConvAccuracy,
                         ::testing::Values("stem_7x7_s2", "grouped_3x3_g32", "grouped_3x3_g32_s2", "pointwise_1x1",
                                           "downsample_1x1_s2"),
                         [](const ::testing::TestParamInfo<const char*>& i) { return std::string(i.param); });

TEST(LinearAccuracy, Head2048x6) {
  const std::string c = "linear/head_2048x6";
  Tensor x = input(c + "/a"), w = input(c + "/b"), b = input(c + "/c");
  Tensor y = linear(x, w, b);
  y.backward(ref().read(c + "/gy"));
  for (auto [r, t] : {std::pair{"y", y}, {"g_a", x.grad()}, {"g_b", w.grad()}, {"g_c", b.grad()}}) compare(c, r, t);
  Tensor ax = input(c + "/a", DType::Float64, true, true), aw = input(c + "/b", DType::Float64, true, true);
  Tensor ab = input(c + "/c", DType::Float64, true, true);
  Tensor ay = linear(ax, aw, ab);
  ay.backward(input(c + "/gy", DType::Float64, false, true));
  within_sum_bound("forward", y, ref().read(c + "/y64").to_vector(), ay, w.size(1) + 1);
  within_sum_bound("backward input", x.grad(), ref().read(c + "/g_a64").to_vector(), ax.grad(), w.size(0));
  within_sum_bound("backward weight", w.grad(), ref().read(c + "/g_b64").to_vector(), aw.grad(), x.size(0));
}

class BatchNormAccuracy : public ::testing::TestWithParam<const char*> {};
TEST_P(BatchNormAccuracy, TrainingFloat32AsPyTorch) {
  const std::string c = std::string("batch_norm/") + GetParam();
  Tensor x = input(c + "/a"), gamma = input(c + "/b"), beta = input(c + "/c");
  Tensor rm = ref().read(c + "/rm0"), rv = ref().read(c + "/rv0");
  Tensor y = batch_norm2d(x, gamma, beta, rm, rv, /*training=*/true);
  y.backward(ref().read(c + "/gy"));
  for (auto [r, t] : {std::pair{"y", y}, {"g_a", x.grad()}, {"g_b", gamma.grad()}, {"g_c", beta.grad()}, {"rm", rm},
                      {"rv", rv}})
    compare(c, r, t);
}
INSTANTIATE_TEST_SUITE_P(BatchNorm2d, BatchNormAccuracy, ::testing::Values("centered", "offset_mean"),
                         [](const ::testing::TestParamInfo<const char*>& i) { return std::string(i.param); });

TEST(PoolAccuracy, MaxPoolAndGlobalAverage) {
  {
    const std::string c = "max_pool2d/stem_3x3_s2_p1";
    Tensor x = input(c + "/a");
    Tensor y = max_pool2d(x, Pool2dParams{3, 3, 2, 2, 1, 1});
    y.backward(ref().read(c + "/gy"));
    compare(c, "y", y);
    compare(c, "g_a", x.grad());
  }
  const std::string c = "adaptive_avg_pool2d/global_7x7";
  Tensor x = input(c + "/a");
  Tensor y = adaptive_avg_pool2d(x, 1, 1);
  y.backward(ref().read(c + "/gy"));
  compare(c, "y", y);
  compare(c, "g_a", x.grad());
}

TEST(ReductionAccuracy, SumOfAMillion) {
  const std::string c = "sum/1m";
  Tensor x = input(c + "/a");
  Tensor y = sum(x);
  y.backward(ref().read(c + "/gy"));
  compare(c, "y", y);
  compare(c, "g_a", x.grad());
}

TEST(LossAccuracy, BceWithLogits) {
  const std::string c = "bce/32x6";
  Tensor x = input(c + "/a");
  Tensor y = bce_with_logits(x, ref().read(c + "/target"));
  y.backward(ref().read(c + "/gy"));
  compare(c, "y", y);
  compare(c, "g_a", x.grad());
}

// Twenty Adam steps on gradients spanning eight decades: only the float32
// storage of the parameter and the moments rounds (same order of operations
// as torch.optim.Adam).
TEST(OptimizerAccuracy, AdamTwentySteps) {
  Tensor p = input("adam/p0");
  Adam opt({p}, Adam::Options{1e-3});
  for (int i = 0; i < 20; ++i) {
    p.set_grad(ref().read("adam/grad" + std::to_string(i)));
    opt.step();
  }
  compare("adam", "p", p);
}

}  // namespace
}  // namespace ich
