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
// The cases are the op table's (tests/op_cases.cpp, kAccuracy); Adam's
// twenty steps (a state over steps, not an op on inputs) are below it.
#include <cmath>
#include <cstdio>
#include <functional>

#include "engine/ops/optim.h"
#include "tests/op_cases.h"
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

// Runs the case on the file's float32 inputs, backward with its gy, and
// compares y, the gradient of each differentiated input (g_<name>) and
// the state it updated (running statistics) with the truth and with
// PyTorch's float32; where the case says its results are sums of products,
// each element also against the rounding bound of its sum, the sums of
// absolute terms computed by the same op in float64 on |inputs| and |gy|.
class OpAccuracy : public ::testing::TestWithParam<test::OpCase> {};
TEST_P(OpAccuracy, Float32WithinBoundAndPyTorch) {
  const test::OpCase& c = GetParam();
  const std::string& p = c.prefix();
  if (!c.params.empty()) {
    EXPECT_EQ(ref().read(p + "/params").to_vector(), c.params) << "the table's parameters are not the file's";
  }
  std::vector<Tensor> in, abs_in;
  for (const test::OpInput& i : c.inputs) {
    in.push_back(input(p + "/" + i.name, DType::Float32, i.grad));
    abs_in.push_back(input(p + "/" + i.name, DType::Float64, i.grad, true));
  }
  Tensor y = c.op(in);
  y.backward(ref().read(p + "/gy"));
  std::vector<std::pair<std::string, Tensor>> results{{"y", y}};
  for (size_t k = 0; k < in.size(); ++k)
    if (c.inputs[k].grad) results.emplace_back("g_" + c.inputs[k].name, in[k].grad());
  for (const auto& [name, k] : c.state) results.emplace_back(name, in[k]);
  for (const auto& [r, t] : results) compare(p, r, t);
  if (!c.sum_terms) return;
  Tensor ay = c.op(abs_in);
  ay.backward(input(p + "/gy", DType::Float64, false, true));
  for (const auto& [r, n] : c.sum_terms(in, y)) {
    const Tensor* ours = nullptr;
    for (const auto& [name, t] : results)
      if (name == r) ours = &t;
    ASSERT_NE(ours, nullptr) << r;
    Tensor bound = ay;
    for (size_t k = 0; k < in.size(); ++k)
      if (r == "g_" + c.inputs[k].name) bound = abs_in[k].grad();
    within_sum_bound(r, *ours, ref().read(p + "/" + r + "64").to_vector(), bound, n);
  }
}
INSTANTIATE_TEST_SUITE_P(Ops, OpAccuracy, ::testing::ValuesIn(test::op_cases_with(test::kAccuracy)),
                         test::op_case_test_name);

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
