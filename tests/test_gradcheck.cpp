// Gradient checks of every op: analytic backward vs central finite
// differences, in float64 (see test_util.h for the method and tolerance).
// The cases are the op table's (tests/op_cases.cpp, kGradcheck); below it
// what is not one op on one set of inputs.
#include <cmath>
#include <set>

#include "tests/op_cases.h"
#include "tests/test_util.h"

namespace ich {
namespace {

using test::leaf64;
using test::OpCase;

class OpGradcheck : public ::testing::TestWithParam<OpCase> {};

TEST_P(OpGradcheck, MatchesFiniteDifferences) {
  const OpCase& c = GetParam();
  EXPECT_GRADCHECK(test::generate_inputs(c, DType::Float64), c.op);
}

INSTANTIATE_TEST_SUITE_P(Ops, OpGradcheck, ::testing::ValuesIn(test::op_cases_with(test::kGradcheck)),
                         test::op_case_test_name);

// The table itself: unique names, and every row the GPU suite runs (which
// no machine here has) is well formed: its inputs generate, the op runs on
// the CPU in float32 with finite results, and each differentiated input
// gets a gradient of its shape.
TEST(OpTable, NamesAreUniqueAndTheGpuRowsRunOnTheCpu) {
  std::set<std::string> names;
  for (const OpCase& c : test::op_cases()) {
    EXPECT_TRUE(names.insert(c.name).second) << "two rows named " << c.name;
    EXPECT_NE(c.checks, 0u) << c.name << " is checked by no suite";
  }
  for (const OpCase& c : test::op_cases_with(test::kCuda)) {
    SCOPED_TRACE(c.name);
    const std::vector<Tensor> in = test::generate_inputs(c, DType::Float32);
    const Tensor y = c.op(in);
    for (double v : y.to_vector()) ASSERT_TRUE(std::isfinite(v));
    if (!y.requires_grad()) continue;
    sum(y).backward();
    for (size_t k = 0; k < in.size(); ++k)
      if (c.inputs[k].grad) {
        ASSERT_TRUE(in[k].grad().defined()) << "input " << c.inputs[k].name;
        EXPECT_EQ(in[k].grad().shape(), in[k].shape());
      }
  }
}

// The fused batch norm + residual add + ReLU (training) makes the three
// separate ops' numbers bit for bit: output, every gradient, the running
// variance.
TEST(BatchNormFusion, TrainingEqualsTheSeparateOpsBitForBit) {
  Generator gen(11);
  std::vector<Tensor> in{leaf64({2, 4, 3, 3}, gen, 2.0), leaf64({4}, gen), leaf64({4}, gen), leaf64({2, 4, 3, 3}, gen)};
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
