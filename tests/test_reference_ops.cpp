// Every op's float32 forward output and gradients against PyTorch 1.13's,
// on the inputs of tests/fixtures/ops.ichw (tests/reference/gen_op_fixtures.py).
// The cases are the op table's (tests/op_cases.cpp, kReference); below it
// batch norm's three steps (the running statistics over steps) and ReLU's
// NaN. Tolerance: 1e-5 relative to the largest reference value (max norm,
// see test_util.h); float32 rounding differences between summation orders
// are ~1e-7..1e-6 on these sizes.
#include <cmath>

#include "tests/fixtures.h"
#include "tests/op_cases.h"
#include "tests/test_util.h"

namespace ich {
namespace {

std::string param_name(const ::testing::TestParamInfo<const char*>& i) { return i.param; }

using test::fx;
using test::has_fx;
using test::OpCase;
constexpr double kTol = 1e-5;

// Reads the case's inputs by name under its fixture prefix, runs the op,
// backward with the fixture's gy (a scalar result: 1), and compares y and
// the gradient of each differentiated input (g_<name>) with PyTorch's.
class OpReference : public ::testing::TestWithParam<OpCase> {};
TEST_P(OpReference, MatchesPyTorch) {
  const OpCase& c = GetParam();
  const std::string& prefix = c.prefix();
  if (!c.params.empty()) {
    EXPECT_EQ(fx(prefix + "/params").to_vector(), c.params) << "the table's parameters are not the fixture's";
  }
  std::vector<Tensor> in;
  for (const test::OpInput& i : c.inputs) {
    const std::string name = prefix + "/" + i.name;
    ASSERT_TRUE(i.optional || has_fx(name)) << name << " is not in tests/fixtures/ops.ichw";
    in.push_back(has_fx(name) ? fx(name, i.grad) : Tensor());
  }
  Tensor y = c.op(in);
  EXPECT_CLOSE(y, fx(prefix + "/y"), kTol);
  if (has_fx(prefix + "/gy"))
    y.backward(fx(prefix + "/gy"));
  else
    y.backward();
  for (size_t k = 0; k < in.size(); ++k) {
    const std::string g = prefix + "/g_" + c.inputs[k].name;
    if (!in[k].defined() || !c.inputs[k].grad) continue;
    ASSERT_TRUE(has_fx(g)) << g << " is not in the fixture";
    EXPECT_CLOSE(in[k].grad(), fx(g), kTol);
  }
}
INSTANTIATE_TEST_SUITE_P(Ops, OpReference, ::testing::ValuesIn(test::op_cases_with(test::kReference)),
                         test::op_case_test_name);

// Three steps of a BatchNorm2d in each mode: outputs, gradients, and the
// running statistics after every step (momentum 0.1, unbiased variance).
class BatchNormReference : public ::testing::TestWithParam<const char*> {};
TEST_P(BatchNormReference, ThreeStepsMatchPyTorch) {
  const std::string mode = GetParam(), prefix = "bn/" + mode;
  const bool training = mode == "train";
  Tensor gamma = fx(prefix + "/gamma", true), beta = fx(prefix + "/beta", true);
  Tensor rm = fx(prefix + "/rm0"), rv = fx(prefix + "/rv0");
  for (int step = 0; step < 3; ++step) {
    const std::string s = prefix + "/" + std::to_string(step);
    SCOPED_TRACE(s);
    gamma.zero_grad();
    beta.zero_grad();
    Tensor x = fx(s + "/x", true);
    Tensor y = batch_norm2d(x, gamma, beta, rm, rv, training);
    EXPECT_CLOSE(y, fx(s + "/y"), kTol);
    y.backward(fx(s + "/gy"));
    EXPECT_CLOSE(x.grad(), fx(s + "/g_x"), kTol);
    EXPECT_CLOSE(gamma.grad(), fx(s + "/g_gamma"), kTol);
    EXPECT_CLOSE(beta.grad(), fx(s + "/g_beta"), kTol);
    EXPECT_CLOSE(rm, fx(s + "/rm"), kTol);
    EXPECT_CLOSE(rv, fx(s + "/rv"), kTol);
  }
}
INSTANTIATE_TEST_SUITE_P(BatchNorm2d, BatchNormReference, ::testing::Values("train", "eval"), param_name);

// torch.relu(nan) is nan (and its gradient there 0): a NaN that enters the
// network reaches the loss, where training stops, instead of being zeroed
// while NaN gradients ruin the weights. The fused training op agrees.
TEST(PointwiseReference, ReluKeepsNanAsPyTorch) {
  const Tensor x = Tensor::from_vector({NAN, -1.0, 2.0, 0.0}, {4}).set_requires_grad(true);
  const Tensor y = relu(x);
  const std::vector<double> v = y.to_vector();
  EXPECT_TRUE(std::isnan(v[0]));
  EXPECT_EQ(std::vector<double>(v.begin() + 1, v.end()), (std::vector<double>{0, 2, 0}));
  sum(y).backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{0, 0, 1, 0}));
  Tensor xb = Tensor::ones({2, 2, 2, 2});
  xb.data<float>()[3] = NAN;
  const Tensor one = Tensor::ones({2}), zero = Tensor::zeros({2});
  Tensor rm = Tensor::zeros({2}), rv = Tensor::ones({2});
  const Tensor fused = batch_norm_relu(xb, one, zero, rm, rv, true, 0.1, 1e-5);
  EXPECT_TRUE(std::isnan(fused.to_vector()[3]));
}
}  // namespace
}  // namespace ich
