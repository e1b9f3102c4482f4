// 16-bit activations (engine/ops/amp.h): batch norm, ReLU, add, the fused
// batch norm + add + ReLU and both pools on bfloat16/float16 tensors, and
// what that does to a training step's memory.
//
// The truth for each op is the same op in float64 on the same inputs (the
// 16-bit values widened exactly), run by our float64 kernels: the oracle the
// gradient checks hold. A 16-bit op computes in float32 (sums in float64)
// and rounds once, where it stores its result, so each result must lie
// within half a unit in the last place of its format (2^-9 relative for
// bfloat16, 2^-12 for float16, a fixed 2^-25 among float16's subnormals) of
// the float64 value, plus what float32 arithmetic itself can add: bounded
// here by 2^-18 of the magnitudes involved, 2^7 float32 units, ~60x below the
// half unit of float16 and ~500x below bfloat16's.
#include <cmath>

#include "engine/allocator.h"
#include "engine/ops/amp.h"
#include "engine/half.h"
#include "engine/ops.h"
#include "layers/resnext.h"
#include "tests/op_cases.h"
#include "tests/test_util.h"

namespace ich {
namespace {

const DType kLow[] = {DType::BFloat16, DType::Float16};

// One unit in the last place of a 16-bit format at magnitude |v|.
double ulp16(double v, DType lp) {
  const double a = std::fabs(v);
  if (lp == DType::BFloat16) return a == 0 ? std::ldexp(1.0, -133) : std::ldexp(1.0, std::ilogb(a) - 7);
  const int e = a == 0 ? -14 : std::max(std::ilogb(a), -14);  // below 2^-14: float16's subnormals, 2^-24 apart
  return std::ldexp(1.0, e - 10);
}

// got (dtype lp) is want (float64) rounded once: |got - want| <= half a unit
// of lp at want, plus 2^-18 * scale (float32's arithmetic; scale: the
// magnitude of the terms the value was computed from).
void expect_rounded_once(const Tensor& got, const Tensor& want, DType lp, const char* what, double scale = 0) {
  ASSERT_EQ(got.dtype(), lp) << what;
  ASSERT_EQ(got.shape(), want.shape()) << what;
  const std::vector<double> g = got.to_vector(), w = want.to_vector();
  int bad = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    const double bound = 0.5 * ulp16(w[i], lp) + std::ldexp(std::max(std::fabs(w[i]), scale), -18);
    if (!(std::fabs(g[i] - w[i]) <= bound) && bad++ < 3)
      ADD_FAILURE() << what << " (" << dtype_name(lp) << ") element " << i << ": " << g[i] << ", float64 " << w[i]
                    << ", allowed " << bound;
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << g.size() << " elements not rounded once";
}

// A random tensor of 16-bit values (mean m, standard deviation s), and the
// same values as a float64 leaf.
struct Pair {
  Tensor low, wide;
};
Pair random_pair(const Shape& shape, DType lp, Generator& gen, double m = 0, double s = 1) {
  Tensor low = Tensor::randn(shape, gen);
  std::vector<double> v = low.to_vector();
  for (double& e : v) e = m + s * e;
  low = Tensor::from_vector(v, shape).to(lp).set_requires_grad(true);
  Tensor wide = low.to(DType::Float64).set_requires_grad(true);
  return {low, wide};
}
Pair random_params(int64_t C, Generator& gen, double m) {  // float32 and float64, the same values
  Tensor p = Tensor::randn({C}, gen);
  std::vector<double> v = p.to_vector();
  for (double& e : v) e += m;
  p = Tensor::from_vector(v, {C}).set_requires_grad(true);
  return {p, p.to(DType::Float64).set_requires_grad(true)};
}

// Largest |value| of a tensor (the scale of the terms a result came from).
double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : t.to_vector()) m = std::max(m, std::fabs(v));
  return m;
}

// Batch norm's float32 results (running statistics, parameter gradients)
// are one float32 rounding of float64 sums over the same values in the same
// order as the float32 op's: bit for bit those of the float32 op on the
// widened inputs.
TEST(Activations16, BatchNormForwardAndBackwardAreRoundedOnce) {
  for (DType lp : kLow) {
    for (bool training : {true, false}) {
      SCOPED_TRACE(std::string(dtype_name(lp)) + (training ? " training" : " eval"));
      Generator gen(11);
      const int64_t C = 6;
      Pair x = random_pair({3, C, 5, 7}, lp, gen, 3.0, 2.0);  // off centre: the statistics matter
      Pair gamma = random_params(C, gen, 1.0), beta = random_params(C, gen, 0.0);
      const Tensor rm0 = Tensor::from_vector({0.5, -1, 2, 0, 1, 3}, {C}), rv0 = Tensor::from_vector({1, 2, 0.5, 4, 1, 3}, {C});
      Tensor rm = rm0.clone(), rv = rv0.clone(), rm32 = rm0.clone(), rv32 = rv0.clone();
      Tensor rm64 = rm0.to(DType::Float64), rv64 = rv0.to(DType::Float64);
      Tensor x32 = x.low.detach().to(DType::Float32).set_requires_grad(true);
      Tensor g32 = gamma.low.detach().clone().set_requires_grad(true), b32 = beta.low.detach().clone().set_requires_grad(true);
      const Tensor y = batch_norm2d(x.low, gamma.low, beta.low, rm, rv, training);
      const Tensor y64 = batch_norm2d(x.wide, gamma.wide, beta.wide, rm64, rv64, training);
      const Tensor y32 = batch_norm2d(x32, g32, b32, rm32, rv32, training);
      expect_rounded_once(y, y64, lp, "y");
      EXPECT_EQ(rm.dtype(), DType::Float32);
      EXPECT_EQ(rm.to_vector(), rm32.to_vector());
      EXPECT_EQ(rv.to_vector(), rv32.to_vector());

      Pair gy = random_pair(y.shape(), lp, gen);
      y.backward(gy.low.detach());
      y64.backward(gy.wide.detach());
      y32.backward(gy.low.detach().to(DType::Float32));
      ASSERT_EQ(x.low.grad().dtype(), lp);
      // dx = gamma*invstd/M (M dy - sum dy - xhat sum dy xhat): terms of the size of gamma*invstd*max|dy|*few
      expect_rounded_once(x.low.grad(), x.wide.grad(), lp, "dx", 4 * max_abs(x.wide.grad()));
      ASSERT_EQ(gamma.low.grad().dtype(), DType::Float32);
      EXPECT_EQ(gamma.low.grad().to_vector(), g32.grad().to_vector());
      EXPECT_EQ(beta.low.grad().to_vector(), b32.grad().to_vector());
      EXPECT_LT(test::max_rel_error(gamma.low.grad().to_vector(), gamma.wide.grad().to_vector()), 1e-5);
    }
  }
}

// ReLU, add and both pools: the op table's kHalf rows (tests/op_cases.cpp),
// each result by its row's rule: exact, or the float64 value rounded once.
class OpHalf : public ::testing::TestWithParam<test::OpCase> {};
TEST_P(OpHalf, ForwardAndBackwardAreRoundedOnce) {
  const test::OpCase& c = GetParam();
  for (DType lp : kLow) {
    SCOPED_TRACE(dtype_name(lp));
    // the case's values in 16 bits, and the same values widened exactly
    std::vector<Tensor> low, wide;
    for (const Tensor& t : test::generate_inputs(c, DType::Float32)) {
      low.push_back(t.detach().to(lp).set_requires_grad(t.requires_grad()));
      wide.push_back(low.back().detach().to(DType::Float64).set_requires_grad(t.requires_grad()));
    }
    const Tensor y = c.op(low), y64 = c.op(wide);
    Generator gen(c.seed + 1);
    Pair gy = random_pair(y.shape(), lp, gen);
    y.backward(gy.low.detach());
    y64.backward(gy.wide.detach());
    for (const test::HalfRule& r : c.half) {
      size_t k = 0;
      while (k < c.inputs.size() && r.result != "g_" + c.inputs[k].name) ++k;
      const bool is_y = r.result == "y";
      ASSERT_TRUE(is_y || k < c.inputs.size()) << c.name << ": no result " << r.result;
      const Tensor got = is_y ? y : low[k].grad(), want = is_y ? y64 : wide[k].grad();
      ASSERT_EQ(got.dtype(), lp) << r.result;
      if (r.exact) {
        EXPECT_EQ(got.to_vector(), want.to_vector()) << r.result << " is not exact";
        continue;
      }
      const double scale = r.of == test::HalfRule::kOfGy ? max_abs(gy.wide)
                           : r.of >= 0                 ? max_abs(wide[size_t(r.of)])
                                                       : 0;
      expect_rounded_once(got, want, lp, r.result.c_str(), r.factor * scale);
    }
  }
}
INSTANTIATE_TEST_SUITE_P(Ops, OpHalf, ::testing::ValuesIn(test::op_cases_with(test::kHalf)), test::op_case_test_name);

// Two branches joined (a residual): the gradients of both add up, in 16
// bits exactly as in float64 (2 gy is exact in any binary format).
TEST(Activations16, JoinedBranchesSumTheirGradientsExactly) {
  for (DType lp : kLow) {
    SCOPED_TRACE(dtype_name(lp));
    Generator gen(12);
    Pair a = random_pair({2, 3, 4, 5}, lp, gen), b = random_pair({2, 3, 4, 5}, lp, gen, 0, 0.01);
    const Tensor y = add(a.low, b.low), y64 = add(a.wide, b.wide);
    Pair gy = random_pair(y.shape(), lp, gen);
    add(y, y).backward(gy.low);
    add(y64, y64).backward(gy.wide.detach());
    EXPECT_EQ(a.low.grad().to_vector(), a.wide.grad().to_vector());
    EXPECT_EQ(b.low.grad().to_vector(), b.wide.grad().to_vector());
  }
}

// The fused op (one batch-norm kernel, one add + clamp pass) makes the
// separate ops' numbers bit for bit in 16 bits too: the batch-norm output
// is rounded before the residual is added, as batch_norm2d's is.
TEST(Activations16, FusedBatchNormAddReluIsTheSeparateOpsBitForBit) {
  for (DType lp : kLow) {
    for (bool with_residual : {true, false}) {
      SCOPED_TRACE(std::string(dtype_name(lp)) + (with_residual ? " with residual" : " without"));
      Generator gen(13);
      const int64_t C = 5;
      Pair x = random_pair({2, C, 6, 4}, lp, gen, -0.5, 1.5);
      Pair r = random_pair({2, C, 6, 4}, lp, gen);
      Pair gamma = random_params(C, gen, 1.0), beta = random_params(C, gen, 0.0);
      Tensor rm_a = Tensor::zeros({C}), rv_a = Tensor::ones({C}), rm_b = rm_a.clone(), rv_b = rv_a.clone();
      // the same leaves for both paths, two copies of each
      Tensor x2 = x.low.detach().clone().set_requires_grad(true), r2 = r.low.detach().clone().set_requires_grad(true);
      Tensor g2 = gamma.low.detach().clone().set_requires_grad(true), b2 = beta.low.detach().clone().set_requires_grad(true);
      const Tensor res = with_residual ? r.low : Tensor(), res2 = with_residual ? r2 : Tensor();
      const Tensor fused = batch_norm_relu(x.low, gamma.low, beta.low, rm_a, rv_a, true, 0.1, 1e-5, res);
      Tensor bn = batch_norm2d(x2, g2, b2, rm_b, rv_b, true, 0.1, 1e-5);
      const Tensor separate = relu(with_residual ? add(bn, res2) : bn);
      ASSERT_EQ(fused.dtype(), lp);
      EXPECT_EQ(fused.to_vector(), separate.to_vector());
      EXPECT_EQ(rm_a.to_vector(), rm_b.to_vector());
      EXPECT_EQ(rv_a.to_vector(), rv_b.to_vector());
      const Tensor gy = Tensor::randn(fused.shape(), gen).to(lp);
      fused.backward(gy);
      separate.backward(gy);
      EXPECT_EQ(x.low.grad().to_vector(), x2.grad().to_vector());
      EXPECT_EQ(gamma.low.grad().to_vector(), g2.grad().to_vector());
      EXPECT_EQ(beta.low.grad().to_vector(), b2.grad().to_vector());
      if (with_residual) {
        EXPECT_EQ(r.low.grad().to_vector(), r2.grad().to_vector());
      }
      // evaluation, no gradients: the inference path of the fused op
      const Tensor xe = x.low.detach(), re = with_residual ? r.low.detach() : Tensor();
      const Tensor fe = batch_norm_relu(xe, gamma.low.detach(), beta.low.detach(), rm_a, rv_a, false, 0.1, 1e-5, re);
      const Tensor be = batch_norm2d(xe, gamma.low.detach(), beta.low.detach(), rm_a, rv_a, false);
      EXPECT_EQ(fe.to_vector(), relu(with_residual ? add(be, re) : be).to_vector());
    }
  }
}

// One training step of resnext101_32x8d under bf16 autocast: every
// activation after the first convolution is bfloat16, the logits and the
// parameters' gradients float32, and the memory the step allocates beyond
// what it held before (parameters, their gradients) at most 0.6x the float32
// step's. Bytes, not time: the same on every machine and thread count.
TEST(Activations16, AutocastKeepsActivations16BitAndShrinksTheStep) {
  Generator gen(14);
  ResNeXt model(resnext_preset("resnext101_32x8d", 6), gen);
  model.train();
  const Tensor x = Tensor::randn({4, 3, 96, 96}, gen);
  Allocator& a = allocator_for(Device::cpu());
  int64_t step_bytes[2] = {0, 0}, kept_bytes[2] = {0, 0};
  for (int i = 0; i < 2; ++i) {
    const DType precision = i == 0 ? DType::Float32 : DType::BFloat16;
    SCOPED_TRACE(dtype_name(precision));
    for (int rep = 0; rep < 2; ++rep) {  // the first allocates the gradients; the second is measured
      const int64_t before = a.stats().bytes_in_use;
      a.reset_peak();
      {
        AutocastGuard g(precision);
        const Tensor features = model.features(x);
        EXPECT_EQ(features.dtype(), precision);
        const Tensor logits = model.head(features);
        kept_bytes[i] = a.stats().bytes_in_use - before;  // what backward will read
        EXPECT_EQ(logits.dtype(), DType::Float32);
        sum(logits).backward();
      }
      step_bytes[i] = a.stats().peak_bytes - before;
      for (auto& [name, p] : model.named_parameters()) ASSERT_EQ(p.grad().dtype(), DType::Float32) << name;
    }
  }
  const double kept = double(kept_bytes[1]) / double(kept_bytes[0]), step = double(step_bytes[1]) / double(step_bytes[0]);
  std::printf("one step of resnext101_32x8d, batch 4 at 96x96, beyond the model's parameters and gradients:\n"
              "  kept for backward fp32 %.1f MB, bf16 %.1f MB (%.2fx); peak fp32 %.1f MB, bf16 %.1f MB (%.2fx)\n",
              double(kept_bytes[0]) / 1e6, double(kept_bytes[1]) / 1e6, kept, double(step_bytes[0]) / 1e6,
              double(step_bytes[1]) / 1e6, step);
  // Half, but for the max pool's int64 argmax and the input's 16-bit copy
  // (the first convolution's saved operand), both a few percent.
  EXPECT_LE(kept, 0.55);
  EXPECT_LE(step, 0.6);  // the target, with float32 scratch of one op at a time on top
}

}  // namespace
}  // namespace ich
