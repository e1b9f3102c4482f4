// Gradient checks of every op: analytic backward vs central finite
// differences, in float64 (see test_util.h for the method and tolerance).
#include "tests/test_util.h"

namespace ich {
namespace {

using test::leaf64;

struct ConvCase {
  const char* name;
  Shape x, w;
  int64_t stride, pad, groups;
  bool bias;
};
// Test names show the case name, not the bytes of the struct.
inline void PrintTo(const ConvCase& c, std::ostream* os) { *os << c.name; }


class ConvGradcheck : public ::testing::TestWithParam<ConvCase> {};

TEST_P(ConvGradcheck, MatchesFiniteDifferences) {
  const ConvCase& c = GetParam();
  Generator gen(7);
  std::vector<Tensor> in{leaf64(c.x, gen), leaf64(c.w, gen), c.bias ? leaf64({c.w[0]}, gen) : Tensor()};
  const Conv2dParams p{c.stride, c.stride, c.pad, c.pad, c.groups};
  EXPECT_GRADCHECK(in, [&](const std::vector<Tensor>& t) { return conv2d(t[0], t[1], t[2], p); });
}

INSTANTIATE_TEST_SUITE_P(
    Conv2d, ConvGradcheck,
    ::testing::Values(ConvCase{"k3_pad1_bias", {1, 3, 5, 6}, {4, 3, 3, 3}, 1, 1, 1, true},
                      ConvCase{"groups2_stride2_odd", {2, 4, 7, 5}, {6, 2, 3, 3}, 2, 1, 2, false},
                      ConvCase{"groups32", {1, 64, 4, 5}, {64, 2, 3, 3}, 1, 1, 32, false},
                      ConvCase{"groups8_stride2_nonsquare", {2, 32, 5, 3}, {32, 4, 3, 3}, 2, 1, 8, false},
                      ConvCase{"pointwise_stride2", {2, 3, 9, 7}, {5, 3, 1, 1}, 2, 0, 1, false},
                      ConvCase{"pointwise_identity_bias", {1, 2, 7, 8}, {3, 2, 1, 1}, 1, 0, 1, true},
                      ConvCase{"stem_k7_stride2_pad3", {1, 3, 11, 9}, {4, 3, 7, 7}, 2, 3, 1, false},
                      // the direct grouped 3x3 forward (8 or 16 output channels at a time,
                      // 8 pixels, a ragged last run): 8, 16 and 24 channels per group
                      // (small: the mutation check runs these on an unoptimised build 30 times)
                      ConvCase{"direct_og8_bias_ragged", {2, 4, 3, 11}, {16, 2, 3, 3}, 1, 1, 2, true},
                      ConvCase{"direct_og16_stride2", {1, 4, 7, 6}, {32, 2, 3, 3}, 2, 1, 2, false},
                      ConvCase{"direct_og24", {1, 2, 3, 9}, {48, 1, 3, 3}, 1, 1, 2, false},
                      // the direct backward kernels: the data gradient needs 8 or 16 input
                      // channels per group (stride 1); the filter gradient sums blocks of
                      // whole rows (here 3 blocks of one 40-pixel row) and 2 images in order
                      ConvCase{"direct_backward_cg8_row_blocks", {1, 16, 3, 40}, {16, 8, 3, 3}, 1, 1, 2, false},
                      ConvCase{"direct_backward_cg16_two_images", {2, 32, 4, 5}, {32, 16, 3, 3}, 1, 1, 2, false}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(BatchNormGradcheck, TrainingMode4d) {
  Generator gen(8);
  std::vector<Tensor> in{leaf64({3, 4, 3, 5}, gen, 2.0), leaf64({4}, gen), leaf64({4}, gen)};
  Tensor rm = Tensor::zeros({4}, DType::Float64), rv = Tensor::ones({4}, DType::Float64);
  EXPECT_GRADCHECK(in, [&](const std::vector<Tensor>& t) { return batch_norm2d(t[0], t[1], t[2], rm, rv, true); });
}

TEST(BatchNormGradcheck, TrainingMode2d) {
  Generator gen(9);
  std::vector<Tensor> in{leaf64({6, 3}, gen), leaf64({3}, gen), leaf64({3}, gen)};
  Tensor rm = Tensor::zeros({3}, DType::Float64), rv = Tensor::ones({3}, DType::Float64);
  EXPECT_GRADCHECK(in, [&](const std::vector<Tensor>& t) { return batch_norm2d(t[0], t[1], t[2], rm, rv, true); });
}

// The fused batch norm + residual add + ReLU (training), with and without a
// residual; and bit for bit the three separate ops.
TEST(BatchNormGradcheck, FusedWithResidualAndRelu) {
  Generator gen(11);
  std::vector<Tensor> in{leaf64({2, 4, 3, 3}, gen, 2.0), leaf64({4}, gen), leaf64({4}, gen), leaf64({2, 4, 3, 3}, gen)};
  Tensor rm = Tensor::zeros({4}, DType::Float64), rv = Tensor::ones({4}, DType::Float64);
  EXPECT_GRADCHECK(in, [&](const std::vector<Tensor>& t) {
    return batch_norm_relu(t[0], t[1], t[2], rm, rv, true, 0.1, 1e-5, t[3]);
  });
  EXPECT_GRADCHECK(std::vector<Tensor>(in.begin(), in.begin() + 3), [&](const std::vector<Tensor>& t) {
    return batch_norm_relu(t[0], t[1], t[2], rm, rv, true, 0.1, 1e-5);
  });
  auto grads = [&](bool fused) {
    for (Tensor& t : in) t.zero_grad();
    Tensor rm2 = Tensor::zeros({4}, DType::Float64), rv2 = Tensor::ones({4}, DType::Float64);
    const Tensor y = fused ? batch_norm_relu(in[0], in[1], in[2], rm2, rv2, true, 0.1, 1e-5, in[3])
                           : relu(add(batch_norm2d(in[0], in[1], in[2], rm2, rv2, true, 0.1, 1e-5), in[3]));
    sum(mul(y, y)).backward();
    std::vector<double> out = y.to_vector();
    for (const Tensor& t : in)
      for (double v : t.grad().to_vector()) out.push_back(v);
    for (double v : rv2.to_vector()) out.push_back(v);
    return out;
  };
  EXPECT_EQ(grads(true), grads(false));
}

TEST(BatchNormGradcheck, EvalMode) {
  Generator gen(10);
  std::vector<Tensor> in{leaf64({2, 3, 4, 3}, gen), leaf64({3}, gen), leaf64({3}, gen)};
  Tensor rm = Tensor::from_vector({0.1, -0.2, 0.3}, {3}, DType::Float64);
  Tensor rv = Tensor::from_vector({0.5, 1.5, 2.0}, {3}, DType::Float64);
  EXPECT_GRADCHECK(in, [&](const std::vector<Tensor>& t) { return batch_norm2d(t[0], t[1], t[2], rm, rv, false); });
}

// Inference: the fused op in evaluation (no gradients) equals the separate
// ops bit for bit, float32 and float64, NCHW and channels-last, with and
// without a residual; with gradients wanted it refuses (the layer then runs
// the separate ops, as Grad-CAM needs).
TEST(BatchNormFusion, EvalWithoutGradientsEqualsTheSeparateOps) {
  Generator gen(12);
  for (DType dt : {DType::Float32, DType::Float64})
    for (MemoryFormat fmt : {MemoryFormat::Contiguous, MemoryFormat::ChannelsLast}) {
      const Tensor x = Tensor::randn({3, 5, 4, 6}, gen, dt).contiguous(fmt);
      const Tensor r = Tensor::randn({3, 5, 4, 6}, gen, dt).contiguous(fmt);
      const Tensor gamma = Tensor::randn({5}, gen, dt), beta = Tensor::randn({5}, gen, dt);
      Tensor rm = Tensor::randn({5}, gen, dt), rv = Tensor::uniform({5}, 0.5, 2.0, gen, dt);
      const NoGradGuard no_grad;
      for (const Tensor& res : {r, Tensor()}) {
        const Tensor fused = batch_norm_relu(x, gamma, beta, rm, rv, false, 0.1, 1e-5, res);
        const Tensor bn = batch_norm2d(x, gamma, beta, rm, rv, false, 0.1, 1e-5);
        const Tensor separate = relu(res.defined() ? add(bn, res) : bn);
        EXPECT_EQ(fused.to_vector(), separate.to_vector()) << dtype_name(dt) << (res.defined() ? " residual" : "");
        EXPECT_EQ(memory_format_of(fused), fmt);
      }
    }
  std::vector<Tensor> in{leaf64({2, 3, 2, 2}, gen), leaf64({3}, gen), leaf64({3}, gen)};
  Tensor rm = Tensor::zeros({3}, DType::Float64), rv = Tensor::ones({3}, DType::Float64);
  EXPECT_THROW(batch_norm_relu(in[0], in[1], in[2], rm, rv, false, 0.1, 1e-5), Error);
}

TEST(PointwiseGradcheck, Relu) {
  Generator gen(11);
  EXPECT_GRADCHECK(std::vector<Tensor>{leaf64({3, 4, 5}, gen)},
                   [](const std::vector<Tensor>& t) { return relu(t[0]); });
}

TEST(PointwiseGradcheck, Sigmoid) {
  Generator gen(12);
  EXPECT_GRADCHECK(std::vector<Tensor>{leaf64({3, 4, 5}, gen, 3.0)},
                   [](const std::vector<Tensor>& t) { return sigmoid(t[0]); });
}

TEST(PointwiseGradcheck, AddMulScale) {
  Generator gen(13);
  std::vector<Tensor> in{leaf64({2, 3, 4}, gen), leaf64({2, 3, 4}, gen)};
  EXPECT_GRADCHECK(in, [](const std::vector<Tensor>& t) { return add(t[0], t[1]); });
  EXPECT_GRADCHECK(in, [](const std::vector<Tensor>& t) { return mul(t[0], t[1]); });
  EXPECT_GRADCHECK(in, [](const std::vector<Tensor>& t) { return scale(t[0], -2.5); });
}

TEST(ReductionGradcheck, SumMeanReshapeFlatten) {
  Generator gen(14);
  std::vector<Tensor> in{leaf64({2, 3, 2, 2}, gen)};
  EXPECT_GRADCHECK(in, [](const std::vector<Tensor>& t) { return sum(t[0]); });
  EXPECT_GRADCHECK(in, [](const std::vector<Tensor>& t) { return mean(t[0]); });
  EXPECT_GRADCHECK(in, [](const std::vector<Tensor>& t) { return reshape(t[0], {4, 6}); });
  EXPECT_GRADCHECK(in, [](const std::vector<Tensor>& t) { return flatten(t[0]); });
}

struct PoolCase {
  const char* name;
  Shape x;
  int64_t k, s, p;
};
// Test names show the case name, not the bytes of the struct.
inline void PrintTo(const PoolCase& c, std::ostream* os) { *os << c.name; }

class MaxPoolGradcheck : public ::testing::TestWithParam<PoolCase> {};
TEST_P(MaxPoolGradcheck, MatchesFiniteDifferences) {
  const PoolCase& c = GetParam();
  Generator gen(15);
  const Pool2dParams p{c.k, c.k, c.s, c.s, c.p, c.p};
  EXPECT_GRADCHECK(std::vector<Tensor>{leaf64(c.x, gen)},
                   [&](const std::vector<Tensor>& t) { return max_pool2d(t[0], p); });
}
INSTANTIATE_TEST_SUITE_P(MaxPool2d, MaxPoolGradcheck,
                         ::testing::Values(PoolCase{"stem_k3_s2_p1", {2, 3, 9, 10}, 3, 2, 1},
                                           PoolCase{"k2_s2_ragged_edge", {1, 2, 7, 7}, 2, 2, 0},
                                           PoolCase{"k3_s1_p1_overlapping", {1, 1, 5, 6}, 3, 1, 1}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(AdaptiveAvgPoolGradcheck, GlobalAndUneven) {
  Generator gen(16);
  std::vector<Tensor> in{leaf64({2, 3, 7, 5}, gen)};
  EXPECT_GRADCHECK(in, [](const std::vector<Tensor>& t) { return adaptive_avg_pool2d(t[0], 1, 1); });
  EXPECT_GRADCHECK(in, [](const std::vector<Tensor>& t) { return adaptive_avg_pool2d(t[0], 3, 2); });
}

TEST(LinearGradcheck, WithAndWithoutBias) {
  Generator gen(17);
  std::vector<Tensor> in{leaf64({5, 7}, gen), leaf64({3, 7}, gen), leaf64({3}, gen)};
  EXPECT_GRADCHECK(in, [](const std::vector<Tensor>& t) { return linear(t[0], t[1], t[2]); });
  EXPECT_GRADCHECK(in, [](const std::vector<Tensor>& t) { return linear(t[0], t[1], Tensor()); });
}

TEST(BceGradcheck, PlainAndPosWeight) {
  Generator gen(18);
  std::vector<Tensor> in{leaf64({4, 6}, gen, 3.0)};
  std::vector<double> tv(24);
  for (size_t i = 0; i < tv.size(); ++i) tv[i] = gen.uniform() < 0.3 ? 1.0 : 0.0;
  const Tensor target = Tensor::from_vector(tv, {4, 6}, DType::Float64);
  const Tensor pw = Tensor::from_vector({1.0, 3.0, 0.5, 10.0, 2.0, 1.5}, {6}, DType::Float64);
  EXPECT_GRADCHECK(in, [&](const std::vector<Tensor>& t) { return bce_with_logits(t[0], target); });
  EXPECT_GRADCHECK(in, [&](const std::vector<Tensor>& t) { return bce_with_logits(t[0], target, pw); });
}

// A residual block: two paths from x join in add, so the gradient of x is
// the sum of both; every parameter type in one graph.
TEST(CompositeGradcheck, ResidualBlock) {
  Generator gen(19);
  std::vector<Tensor> in{leaf64({2, 4, 5, 5}, gen), leaf64({4, 2, 3, 3}, gen, 0.5), leaf64({4}, gen),
                         leaf64({4}, gen), leaf64({4, 4, 1, 1}, gen, 0.5)};
  Tensor rm = Tensor::zeros({4}, DType::Float64), rv = Tensor::ones({4}, DType::Float64);
  EXPECT_GRADCHECK(in, [&](const std::vector<Tensor>& t) {
    Tensor h = conv2d(t[0], t[1], Tensor(), {1, 1, 1, 1, 2});
    h = relu(batch_norm2d(h, t[2], t[3], rm, rv, true));
    h = conv2d(h, t[4], Tensor(), {});
    return relu(add(h, t[0]));
  });
}

}  // namespace
}  // namespace ich
