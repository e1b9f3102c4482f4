// Every op's float32 forward output and gradients against PyTorch 1.13's,
// on the inputs of tests/fixtures/ops.ichw (tests/reference/gen_op_fixtures.py).
// Tolerance: 1e-5 relative to the largest reference value (max norm, see
// test_util.h); float32 rounding differences between summation orders are
// ~1e-7..1e-6 on these sizes.
#include <cmath>

#include "tests/fixtures.h"
#include "tests/test_util.h"

namespace ich {
namespace {

std::string param_name(const ::testing::TestParamInfo<const char*>& i) { return i.param; }

using test::fx;
using test::has_fx;
constexpr double kTol = 1e-5;

// Runs y = f(inputs), backward with the fixture's gy, and compares y and the
// gradients of the inputs named a, b, c... with the fixture.
void check_case(const std::string& prefix, int n_inputs, const std::function<Tensor(std::vector<Tensor>&)>& f) {
  SCOPED_TRACE(prefix);
  std::vector<Tensor> in;
  const char* names = "abcdefgh";
  for (int i = 0; i < n_inputs; ++i) in.push_back(fx(prefix + "/" + names[i], true));
  Tensor y = f(in);
  EXPECT_CLOSE(y, fx(prefix + "/y"), kTol);
  y.backward(fx(prefix + "/gy"));
  for (int i = 0; i < n_inputs; ++i) {
    const std::string g = prefix + "/g_" + names[i];
    if (has_fx(g)) EXPECT_CLOSE(in[size_t(i)].grad(), fx(g), kTol);
  }
}

class ConvReference : public ::testing::TestWithParam<const char*> {};
TEST_P(ConvReference, MatchesPyTorch) {
  const std::string prefix = std::string("conv2d/") + GetParam();
  const std::vector<double> p = fx(prefix + "/params").to_vector();  // stride, pad, groups, has bias
  const Conv2dParams cp{int64_t(p[0]), int64_t(p[0]), int64_t(p[1]), int64_t(p[1]), int64_t(p[2])};
  check_case(prefix, p[3] != 0 ? 3 : 2, [&](std::vector<Tensor>& t) {
    return conv2d(t[0], t[1], t.size() > 2 ? t[2] : Tensor(), cp);
  });
}
INSTANTIATE_TEST_SUITE_P(Conv2d, ConvReference,
                         ::testing::Values("plain", "groups2_stride2", "groups32", "downsample_1x1_s2", "stem_7x7_s2",
                                           "pointwise_1x1"),
                         param_name);

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

TEST(PointwiseReference, Relu) {
  check_case("relu/a", 1, [](std::vector<Tensor>& t) { return relu(t[0]); });
}
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
TEST(PointwiseReference, Sigmoid) {
  check_case("sigmoid/a", 1, [](std::vector<Tensor>& t) { return sigmoid(t[0]); });
}
TEST(PointwiseReference, Add) {
  check_case("add/a", 2, [](std::vector<Tensor>& t) { return add(t[0], t[1]); });
}
TEST(PointwiseReference, Mul) {
  check_case("mul/a", 2, [](std::vector<Tensor>& t) { return mul(t[0], t[1]); });
}

class MaxPoolReference : public ::testing::TestWithParam<const char*> {};
TEST_P(MaxPoolReference, MatchesPyTorch) {
  const std::string prefix = std::string("max_pool2d/") + GetParam();
  const std::vector<double> p = fx(prefix + "/params").to_vector();  // kernel, stride, pad
  const Pool2dParams pp{int64_t(p[0]), int64_t(p[0]), int64_t(p[1]), int64_t(p[1]), int64_t(p[2]), int64_t(p[2])};
  check_case(prefix, 1, [&](std::vector<Tensor>& t) { return max_pool2d(t[0], pp); });
}
INSTANTIATE_TEST_SUITE_P(MaxPool2d, MaxPoolReference, ::testing::Values("stem_3x3_s2_p1", "k2_s2"), param_name);

class AvgPoolReference : public ::testing::TestWithParam<const char*> {};
TEST_P(AvgPoolReference, MatchesPyTorch) {
  const std::string prefix = std::string("adaptive_avg_pool2d/") + GetParam();
  const std::vector<double> p = fx(prefix + "/params").to_vector();  // output h, w
  check_case(prefix, 1, [&](std::vector<Tensor>& t) { return adaptive_avg_pool2d(t[0], int64_t(p[0]), int64_t(p[1])); });
}
INSTANTIATE_TEST_SUITE_P(AdaptiveAvgPool2d, AvgPoolReference, ::testing::Values("global", "3x2"), param_name);

TEST(LinearReference, MatchesPyTorch) {
  check_case("linear/a", 3, [](std::vector<Tensor>& t) { return linear(t[0], t[1], t[2]); });
}

class BceReference : public ::testing::TestWithParam<const char*> {};
TEST_P(BceReference, MatchesPyTorch) {
  const std::string prefix = std::string("bce/") + GetParam();
  Tensor x = fx(prefix + "/x", true);
  const Tensor pw = has_fx(prefix + "/pos_weight") ? fx(prefix + "/pos_weight") : Tensor();
  Tensor loss = bce_with_logits(x, fx(prefix + "/target"), pw);
  EXPECT_CLOSE(loss, fx(prefix + "/y"), kTol);
  loss.backward();
  EXPECT_CLOSE(x.grad(), fx(prefix + "/g_x"), kTol);
}
INSTANTIATE_TEST_SUITE_P(BceWithLogits, BceReference, ::testing::Values("plain", "pos_weight"), param_name);

}  // namespace
}  // namespace ich
