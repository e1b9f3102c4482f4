// Mixed precision on the CPU (engine/half.h, engine/ops/amp.h): the 16-bit
// conversions bit for bit against PyTorch (tests/fixtures/half, written by
// tests/reference/gen_half_reference.py), tensors of those dtypes,
// conv2d/linear under autocast (rounded operands and results, close to
// float32), the loss scaler's rule and why float16 needs it, and the
// training curve of bf16 and fp16 against float32 on phantom data.
#include <cmath>
#include <filesystem>

#include "data/labels.h"
#include "dicom/window_slice.h"
#include "engine/ops/amp.h"
#include "engine/half.h"
#include "engine/ops.h"
#include "io/csv.h"
#include "io/npy.h"
#include "phantom/phantom.h"
#include "tests/phantom_fixture.h"
#include "tests/test_util.h"
#include "train/trainer.h"

namespace ich {
namespace {

namespace fs = std::filesystem;
const std::string kFix = std::string(ICH_SOURCE_DIR) + "/tests/fixtures/half";

bool is_bf16(float v) { return (float_bits(v) & 0xffffu) == 0; }
bool is_fp16(float v) { return std::isnan(v) || fp16_bits_to_float(float_to_fp16_bits(v)) == v; }

TEST(Half, ConversionsMatchPyTorchBitForBit) {
  const Tensor x = read_npy(kFix + "/input_f32.npy");
  const std::vector<double> bf = read_npy(kFix + "/bf16_bits.npy").to_vector();
  const std::vector<double> fp = read_npy(kFix + "/fp16_bits.npy").to_vector();
  ASSERT_EQ(x.numel(), 4096);
  const float* v = x.data<float>();
  // NaN in, NaN out; its bits are not one convention even inside PyTorch
  // (c10::BFloat16 gives 0x7fc0, its vectorised copy 0xffff): any NaN passes.
  auto same = [](uint16_t got, uint16_t want, bool bf) {
    const bool want_nan = bf ? (want & 0x7fff) > 0x7f80 : (want & 0x7fff) > 0x7c00;
    const bool got_nan = bf ? (got & 0x7fff) > 0x7f80 : (got & 0x7fff) > 0x7c00;
    return want_nan ? got_nan : got == want;
  };
  int bf_bad = 0, fp_bad = 0;
  for (int64_t i = 0; i < x.numel(); ++i) {
    const bool b_ok = same(float_to_bf16_bits(v[i]), uint16_t(bf[size_t(i)]), true);
    const bool f_ok = same(float_to_fp16_bits(v[i]), uint16_t(fp[size_t(i)]), false);
    if (bf_bad + fp_bad == 0 && !(b_ok && f_ok)) ADD_FAILURE() << "first difference at " << i << ": " << v[i];
    bf_bad += !b_ok;
    fp_bad += !f_ok;
  }
  EXPECT_EQ(bf_bad, 0);
  EXPECT_EQ(fp_bad, 0);
}

TEST(Half, DecodingEveryFloat16IsExact) {
  // An independent decoder (ldexp) for all 65,536 bit patterns, and the
  // round trip float16 -> float32 -> float16.
  for (uint32_t h = 0; h < 65536; ++h) {
    const uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
    const float got = fp16_bits_to_float(uint16_t(h));
    if (e == 31 && m != 0) {
      ASSERT_TRUE(std::isnan(got)) << h;
      continue;
    }
    float want = e == 0 ? std::ldexp(float(m), -24) : e == 31 ? INFINITY : std::ldexp(float(m | 0x400), int(e) - 25);
    if (h & 0x8000) want = -want;
    ASSERT_EQ(float_bits(got), float_bits(want)) << h;
    ASSERT_EQ(float_to_fp16_bits(got), h) << h;
  }
}

TEST(Half, TensorsConvertThroughTheSameRounding) {
  const Tensor x = read_npy(kFix + "/input_f32.npy");
  const std::vector<double> bf = read_npy(kFix + "/bf16_bits.npy").to_vector();
  const Tensor b = x.to(DType::BFloat16), h = x.to(DType::Float16);
  const float* v = x.data<float>();
  EXPECT_EQ(b.dtype(), DType::BFloat16);
  const uint16_t* bits = static_cast<const uint16_t*>(b.raw_data());
  for (int64_t i = 0; i < x.numel(); ++i) {
    if (!std::isnan(v[i])) {
      ASSERT_EQ(bits[i], uint16_t(bf[size_t(i)])) << i;
    }
  }
  const std::vector<double> back = h.to(DType::Float32).to_vector();
  for (int64_t i = 0; i < x.numel(); ++i) {
    const float want = fp16_bits_to_float(float_to_fp16_bits(v[i]));
    if (std::isnan(want)) ASSERT_TRUE(std::isnan(back[size_t(i)]));
    else ASSERT_EQ(float(back[size_t(i)]), want) << i;
  }
  // The rounding kernel agrees with the conversion.
  const Tensor r = rounded(x, DType::BFloat16);
  for (int64_t i = 0; i < x.numel(); ++i) {
    const float want = bf16_bits_to_float(uint16_t(bf[size_t(i)]));
    if (std::isnan(want)) ASSERT_TRUE(std::isnan(r.data<float>()[i]));
    else ASSERT_EQ(r.data<float>()[i], want) << i;
  }
  EXPECT_NE(float_bits(r.data<float>()[100]), float_bits(v[100]));  // the source is untouched, the copy rounded
}

double rel_diff(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = a.to_vector(), y = b.to_vector();
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) num = std::max(num, std::fabs(x[i] - y[i])), den = std::max(den, std::fabs(y[i]));
  return num / den;
}

TEST(Autocast, ConvAndLinearRoundOperandsAndResults) {
  Generator gen(3);
  Tensor x = Tensor::randn({2, 8, 9, 9}, gen).set_requires_grad(true);
  Tensor w = Tensor::randn({16, 2, 3, 3}, gen).set_requires_grad(true);  // 4 groups
  Tensor b = Tensor::randn({16}, gen).set_requires_grad(true);
  Conv2dParams p;
  p.pad_h = p.pad_w = 1;
  p.groups = 4;
  const Tensor y32 = conv2d(x, w, b, p);
  sum(mul(y32, y32)).backward();
  const Tensor gx32 = x.grad(), gw32 = w.grad(), gb32 = b.grad();
  for (DType lp : {DType::BFloat16, DType::Float16}) {
    SCOPED_TRACE(dtype_name(lp));
    x.zero_grad();
    w.zero_grad();
    b.zero_grad();
    Tensor y;
    {
      AutocastGuard g(lp);
      EXPECT_EQ(autocast_dtype(), lp);
      y = conv2d(x, w, b, p);
    }
    EXPECT_EQ(autocast_dtype(), DType::Float32);
    EXPECT_EQ(y.dtype(), lp);  // a 16-bit activation
    // The definition: float32 arithmetic on rounded operands, result rounded.
    Tensor want = conv2d(rounded(x, lp), rounded(w, lp), rounded(b, lp), p).detach();
    want = rounded(want, lp);
    EXPECT_EQ(y.to_vector(), want.to_vector());
    const double tol = lp == DType::BFloat16 ? 2e-2 : 3e-3;  // a few units of 2^-8 / 2^-11
    EXPECT_LT(rel_diff(y.to(DType::Float32), y32), tol);
    EXPECT_GT(rel_diff(y.to(DType::Float32), y32), 0);  // something was rounded
    const Tensor y_wide = cast(y, DType::Float32);     // its gradient comes back as lp
    sum(mul(y_wide, y_wide)).backward();  // backward outside the guard still runs in the forward's precision
    EXPECT_EQ(x.grad().dtype(), DType::Float32);  // x's own dtype, holding rounded values
    EXPECT_EQ(w.grad().dtype(), DType::Float32);
    for (double v : x.grad().to_vector()) ASSERT_TRUE(lp == DType::BFloat16 ? is_bf16(float(v)) : is_fp16(float(v)));
    for (double v : w.grad().to_vector()) ASSERT_TRUE(lp == DType::BFloat16 ? is_bf16(float(v)) : is_fp16(float(v)));
    EXPECT_LT(rel_diff(x.grad(), gx32), 3 * tol);
    EXPECT_LT(rel_diff(w.grad(), gw32), 3 * tol);
    EXPECT_LT(rel_diff(b.grad(), gb32), 3 * tol);
  }
  // linear
  Tensor a = Tensor::randn({4, 32}, gen).set_requires_grad(true);
  Tensor lw = Tensor::randn({6, 32}, gen).set_requires_grad(true);
  const Tensor l32 = linear(a, lw, Tensor());
  Tensor l16;
  {
    AutocastGuard g(DType::BFloat16);
    l16 = linear(a, lw, Tensor());
  }
  for (double v : l16.to_vector()) ASSERT_TRUE(is_bf16(float(v)));
  EXPECT_LT(rel_diff(l16, l32), 2e-2);
  sum(l16).backward();
  for (double v : lw.grad().to_vector()) ASSERT_TRUE(is_bf16(float(v)));
  // float64 (the gradient-check type) is never autocast.
  Tensor d = Tensor::randn({2, 3}, gen, DType::Float64);
  Tensor dw = Tensor::randn({2, 3}, gen, DType::Float64);
  AutocastGuard g(DType::BFloat16);
  EXPECT_EQ(linear(d, dw, Tensor()).to_vector(), [&] {
    AutocastGuard off(DType::Float32);
    return linear(d, dw, Tensor()).to_vector();
  }());
}

TEST(LossScaler, FollowsGradScalersRule) {
  LossScaler::Options o;
  o.init_scale = 1024;
  o.growth_interval = 3;
  LossScaler s(o);
  EXPECT_EQ(s.scale(), 1024);
  s.update(false);
  s.update(false);
  EXPECT_EQ(s.scale(), 1024);
  s.update(false);  // third clean step: grow
  EXPECT_EQ(s.scale(), 2048);
  EXPECT_EQ(s.growth_tracker(), 0);
  s.update(false);
  s.update(true);  // overflow: back off, and the count starts again
  EXPECT_EQ(s.scale(), 1024);
  EXPECT_EQ(s.growth_tracker(), 0);
  s.update(false);
  s.update(false);
  EXPECT_EQ(s.scale(), 1024);
  s.update(false);
  EXPECT_EQ(s.scale(), 2048);
  EXPECT_THROW(s.restore(-1, 0), Error);
  s.restore(8, 2);
  s.update(false);
  EXPECT_EQ(s.scale(), 16);
}

TEST(LossScaler, UnscalesExactlyAndFindsOverflow) {
  LossScaler s;  // 65536
  Generator gen(5);
  Tensor w = Tensor::randn({3, 4}, gen).set_requires_grad(true);
  Tensor v = Tensor::randn({4}, gen).set_requires_grad(true);
  Tensor unused = Tensor::randn({2}, gen).set_requires_grad(true);  // no gradient: ignored
  Tensor x = Tensor::randn({5, 4}, gen);
  auto loss_of = [&] { return sum(linear(x, w, Tensor())) ; };
  loss_of().backward();
  const std::vector<double> g1 = w.grad().to_vector();
  w.zero_grad();
  s.scale_loss(loss_of()).backward();
  for (size_t i = 0; i < g1.size(); ++i) EXPECT_DOUBLE_EQ(w.grad().to_vector()[i], g1[i] * 65536);
  EXPECT_TRUE(s.unscale({w, v, unused}));
  for (size_t i = 0; i < g1.size(); ++i) EXPECT_FLOAT_EQ(float(w.grad().to_vector()[i]), float(g1[i]));
  // An infinite or NaN gradient anywhere is found.
  for (double bad : {double(INFINITY), double(NAN)}) {
    w.grad().data<float>()[7] = float(bad);
    EXPECT_FALSE(s.unscale({v, w}));
  }
}

TEST(LossScaler, Float16LosesSmallGradientsWithoutIt) {
  // Gradients around 1e-8 are below float16's smallest subnormal (6e-8):
  // without scaling they flush to zero; scaled by 65536 they survive and
  // come back within float16's precision.
  Generator gen(9);
  Tensor w = Tensor::randn({6, 16}, gen).set_requires_grad(true);
  Tensor x = Tensor::randn({8, 16}, gen);
  auto loss_of = [&] { return scale(sum(linear(x, w, Tensor())), 3e-9); };
  loss_of().backward();
  const Tensor g32 = w.grad();
  w.zero_grad();
  {
    AutocastGuard g(DType::Float16);
    loss_of().backward();
  }
  int zeros = 0;
  for (double v : w.grad().to_vector()) zeros += v == 0;
  EXPECT_GT(zeros, 48);  // most of the 96 flushed
  w.zero_grad();
  LossScaler s;
  {
    AutocastGuard g(DType::Float16);
    s.scale_loss(loss_of()).backward();
  }
  ASSERT_TRUE(s.unscale({w}));
  EXPECT_LT(rel_diff(w.grad(), g32), 2e-3);
}

// The training curve: resnext_mini on phantom slices for 300 steps in
// float32, bf16 and fp16 (with the scaler) from the same initialisation and
// data order, the loss averaged over blocks of 25 steps.
//
// Two claims, each stated against what float32 itself does. Training with
// Adam on batches of 16 is chaotic: any rounding change grows step by step,
// and after ~50 steps a float32 run on another BLAS kernel or thread count
// is as far from this one as the bf16 run is (block gaps of ~0.004 on
// average, 0.011 at worst, measured with OPENBLAS_CORETYPE and
// OMP_NUM_THREADS changed), so later blocks cannot tell bf16 from float32.
// - The first block, before the rounding has grown: bf16 and fp16 within
//   0.003 of float32 (float32 on other kernels and thread counts: within
//   0.0004; bf16 and fp16 measured within 0.0012). A float32 run with 3x the
//   learning rate, the control, is 0.03 away: the bound tells a real change
//   from rounding.
// - The last six blocks, where the runs are independent draws: bf16 and fp16
//   learn as float32 does, their mean loss within 25% of float32's (the
//   float32 runs' own spread there: ~8%).
class AmpTraining : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = test::fresh_dir("ich_amp");
    PhantomOptions po;
  po.difficulty = "easy";  // the first phantom: bright, sharp lesions, quick to learn
    po.patients = 40;
    po.size = 64;
    po.seed = 4;
    test::make_phantom_set(dir_, po);
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }

  static std::vector<double> curve(const std::string& precision, double lr, int64_t* skipped = nullptr) {
    TrainOptions to;
    to.train_csv = dir_ + "/train.csv";
    to.valid_csv = dir_ + "/valid.csv";
    to.images = dir_ + "/img";
    to.out = dir_ + "/run_" + precision + std::to_string(lr);
    to.size = 64;
    to.epochs = 6;  // 50 steps each (the whole training split)
    to.max_steps_per_epoch = 50;
    to.batch = 16;
    to.lr = lr;
    to.device = "cpu";
    to.seed = 1;
    to.workers = 1;
    to.precision = precision;
    // The head's bias at 0, as when these bounds were measured: with it at
    // the prior (ich-train's default, docs/train.md) the first block starts
    // near the prior's loss and "it learns" has less room; this test is
    // about 16-bit arithmetic following float32, not about the head's init.
    to.head_bias = "zero";
    std::vector<double> losses;
    to.on_step = [&](int64_t, double l, bool applied) {
      losses.push_back(l);
      if (skipped && !applied) ++*skipped;
    };
    EXPECT_EQ(train(to), 0);
    return losses;
  }
  static std::vector<double> blocks(const std::vector<double>& l) {
    std::vector<double> out;
    for (size_t i = 0; i + 25 <= l.size(); i += 25) {
      double s = 0;
      for (size_t k = i; k < i + 25; ++k) s += l[k];
      out.push_back(s / 25);
    }
    return out;
  }
  static double late_mean(const std::vector<double>& b) {
    double s = 0;
    for (size_t i = b.size() - 6; i < b.size(); ++i) s += b[i] / 6;
    return s;
  }
  static std::string dir_;
};
std::string AmpTraining::dir_;

TEST_F(AmpTraining, Bf16AndFp16FollowTheFloat32CurveOver300Steps) {
  const std::vector<double> f32 = blocks(curve("fp32", 1e-3));
  int64_t skipped = 0;
  const std::vector<double> bf16 = blocks(curve("bf16", 1e-3)), fp16 = blocks(curve("fp16", 1e-3, &skipped));
  const std::vector<double> control = blocks(curve("fp32", 3e-3));
  ASSERT_EQ(f32.size(), 12u);
  ASSERT_EQ(bf16.size(), 12u);
  ASSERT_EQ(fp16.size(), 12u);
  std::printf("block  fp32    bf16    fp16    fp32(3x lr)\n");
  for (size_t i = 0; i < f32.size(); ++i)
    std::printf("%5zu  %.4f  %.4f  %.4f  %.4f\n", i, f32[i], bf16[i], fp16[i], control[i]);
  std::printf("fp16 steps skipped by the loss scaler: %lld\n", (long long)skipped);
  EXPECT_LT(late_mean(f32), f32.front() * 0.8);  // it learns (the last six blocks: one block alone is a noisy draw)
  std::printf("first block, |difference| to fp32: bf16 %.4f, fp16 %.4f, 3x lr %.4f\n", std::fabs(bf16[0] - f32[0]),
              std::fabs(fp16[0] - f32[0]), std::fabs(control[0] - f32[0]));
  std::printf("last six blocks, mean loss: fp32 %.4f, bf16 %.4f, fp16 %.4f\n", late_mean(f32), late_mean(bf16),
              late_mean(fp16));
  EXPECT_LE(std::fabs(bf16[0] - f32[0]), 0.003);
  EXPECT_LE(std::fabs(fp16[0] - f32[0]), 0.003);
  EXPECT_GT(std::fabs(control[0] - f32[0]), 0.003);
  for (const std::vector<double>* c : {&bf16, &fp16})
    EXPECT_NEAR(late_mean(*c), late_mean(f32), 0.25 * late_mean(f32));
  EXPECT_LT(skipped, 5);
}

}  // namespace
}  // namespace ich
