// The bfloat16 inference kernels (engine/cpu/conv_bf16.h) and the ResNeXt
// that runs on them (layers/resnext_compiled.h).
//
// Kernels, on the shapes ResNeXt's convolutions take (pointwise, strided
// pointwise, 3x3 grouped with 1, 8 and 64 channels per group, stride 2, the
// stem's 147 taps padded to 160, a last tile of fewer than 16 pixels):
//   - every kernel this CPU has (AMX, AVX512-BF16; the others skip with the
//     reason) against the reference that adds the products in that
//     instruction's documented order (Intel SDM): AVX512-BF16 bit for bit in
//     float32 before the final rounding, AMX within float32's bound (below);
//   - against float64 on the same bfloat16 operands, every kernel (the
//     reference too) is within float32 accumulation's bound, K u sum|w x|
//     with u = 2^-24, and the bfloat16 output within half an ulp more;
//   - on small integers (every sum exact) all kernels give the same bits.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <ostream>
#include <cstring>
#include <random>
#include <set>
#include <vector>

#include "engine/cpu/conv_bf16.h"
#include "engine/autograd.h"
#include "engine/half.h"
#include "engine/ops/amp.h"
#include "layers/resnext_compiled.h"

namespace ich {
namespace {

using namespace cpu::bf16;

struct Case {
  const char* name;
  int64_t N, H, W, C, O, G, k, stride, pad;
};
const Case kCases[] = {
    {"pointwise", 2, 5, 7, 64, 48, 1, 1, 1, 0},          {"pointwise_strided", 2, 9, 9, 64, 32, 1, 1, 2, 0},
    {"grouped_8_per_group", 2, 11, 13, 64, 64, 8, 3, 1, 1}, {"grouped_64_per_group_s2", 1, 9, 10, 128, 128, 2, 3, 2, 1},
    {"one_per_group", 2, 6, 6, 8, 8, 8, 3, 1, 1},        {"stem_160", 1, 4, 21, 160, 64, 1, 1, 1, 0},
    {"wide_outputs", 1, 3, 17, 32, 80, 1, 3, 1, 1},
    // rows the AVX-512 kernels cut 8 + 5, take in one chunk of 7, and lay on
    // the padded input's rows (25 = 3 x 8 + 1)
    {"rows_of_13", 2, 13, 13, 64, 64, 2, 3, 1, 1},       {"rows_of_7", 2, 7, 7, 64, 64, 2, 3, 1, 1},
    {"rows_of_25", 1, 25, 25, 32, 32, 2, 3, 1, 1},
    // float32 by quads (groups of 4, 8 and 16 outputs: 4, 2 and 1 groups a
    // tile), strided, and rows of 50 laid on the padded rows
    {"groups_of_4", 2, 7, 9, 64, 64, 16, 3, 1, 1},       {"groups_of_16_s2", 2, 11, 11, 64, 64, 4, 3, 2, 1},
    {"groups_of_8_rows_of_50", 1, 4, 50, 32, 32, 4, 3, 1, 1},
    {"groups_of_2", 1, 5, 6, 32, 16, 8, 3, 1, 1},  // (not quads: 2 outputs a group, 4 channels)
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }  // gtest's name for a case

struct Data {
  std::vector<float> w, bias;
  std::vector<uint16_t> x, res;
};

Data make(const Case& c, uint32_t seed, bool integers) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> nd(0, 1);
  std::uniform_int_distribution<int> id(-4, 4);
  Data d;
  const int64_t wn = c.O * (c.C / c.G) * c.k * c.k;
  for (int64_t i = 0; i < wn; ++i) d.w.push_back(integers ? float(id(gen)) : nd(gen) * 0.2f);
  for (int64_t i = 0; i < c.O; ++i) d.bias.push_back(integers ? float(id(gen)) : nd(gen));
  for (int64_t i = 0; i < c.N * c.H * c.W * c.C; ++i) d.x.push_back(float_to_bf16_bits(integers ? float(id(gen)) : nd(gen)));
  const int64_t Ho = conv_out_size(c.H, c.k, c.stride, c.pad), Wo = conv_out_size(c.W, c.k, c.stride, c.pad);
  for (int64_t i = 0; i < c.N * Ho * Wo * c.O; ++i)
    d.res.push_back(float_to_bf16_bits(integers ? float(id(gen)) : nd(gen)));
  return d;
}

// float64 truth on the bfloat16 operands: sum and sum of |terms|
void truth(const Case& c, const Data& d, std::vector<double>& y, std::vector<double>& mag) {
  const int64_t Ho = conv_out_size(c.H, c.k, c.stride, c.pad), Wo = conv_out_size(c.W, c.k, c.stride, c.pad);
  const int64_t Cg = c.C / c.G, Og = c.O / c.G;
  y.assign(size_t(c.N * Ho * Wo * c.O), 0);
  mag.assign(y.size(), 0);
  for (int64_t n = 0; n < c.N; ++n)
    for (int64_t oh = 0; oh < Ho; ++oh)
      for (int64_t ow = 0; ow < Wo; ++ow)
        for (int64_t o = 0; o < c.O; ++o) {
          double s = 0, m = 0;
          const int64_t g = o / Og;
          for (int64_t ci = 0; ci < Cg; ++ci)
            for (int64_t i = 0; i < c.k; ++i)
              for (int64_t j = 0; j < c.k; ++j) {
                const int64_t ih = oh * c.stride - c.pad + i, iw = ow * c.stride - c.pad + j;
                if (ih < 0 || ih >= c.H || iw < 0 || iw >= c.W) continue;
                const double wv = bf16_bits_to_float(float_to_bf16_bits(d.w[size_t(((o * Cg + ci) * c.k + i) * c.k + j)]));
                const double xv = bf16_bits_to_float(d.x[size_t(((n * c.H + ih) * c.W + iw) * c.C + g * Cg + ci)]);
                s += wv * xv;
                m += std::fabs(wv * xv);
              }
          const size_t q = size_t(((n * Ho + oh) * Wo + ow) * c.O + o);
          s += double(d.bias[size_t(o)]) + double(bf16_bits_to_float(d.res[q]));
          y[q] = std::max(s, 0.0);
          mag[q] = m + std::fabs(d.bias[size_t(o)]) + std::fabs(bf16_bits_to_float(d.res[q]));
        }
}

std::vector<Isa> hardware() {
  std::vector<Isa> v;
  for (Isa i : {Isa::Amx, Isa::Avx512Bf16})
    if (has_isa(i)) v.push_back(i);
  return v;
}

// every kernel this CPU has, and the reference
std::vector<Isa> every_kernel() {
  std::vector<Isa> v = hardware();
  v.push_back(Isa::Reference);
  return v;
}

// A case's data, its packed weights and the float64 truth
struct Prepared {
  Data d;
  PackedConv p;
  std::vector<double> y64, mag;
};
Prepared prepare(const Case& c, uint32_t seed, bool integers) {
  Prepared r;
  r.d = make(c, seed, integers);
  r.p = pack_conv(r.d.w.data(), r.d.bias.data(), c.O, c.C, c.G, c.k, c.k, c.stride, c.pad);
  truth(c, r.d, r.y64, r.mag);
  return r;
}

class Bf16Conv : public ::testing::TestWithParam<Case> {};

// AVX512-BF16 is bit for bit what the SDM's pseudo-code of VDPBF16PS says
// (odd element's product first, each addition rounded, denormals flushed).
// AMX is not: measured on a Sapphire Rapids, about one float32 sum in ten
// differs in its last bits from TDPBF16PS's pseudo-code (even first,
// sequential), and from every other order and grouping tried (pairs summed
// exactly, groups of 2-16 pairs, round toward zero): its internal
// accumulation is not documented to the bit. So AMX is held to the
// emulation within float32 accumulation's bound, and to exact equality only
// where every sum is exact (the test after next).
TEST_P(Bf16Conv, HardwareKernelsEqualTheirInstructionsEmulated) {
  const Case& c = GetParam();
  if (hardware().empty()) GTEST_SKIP() << "no AMX or AVX512-BF16 here: " << missing_hardware_reason();
  const Prepared pr = prepare(c, 1, false);
  const Data& d = pr.d;
  const PackedConv& p = pr.p;
  const std::vector<double>& y64 = pr.y64;
  const std::vector<double>& mag = pr.mag;
  const double K = double(c.C / c.G * c.k * c.k + 2), u = std::ldexp(1.0, -24);
  for (Isa isa : {Isa::Amx, Isa::Avx512Bf16}) {
    if (!has_isa(isa)) {
      std::printf("  %s: not on this CPU, skipped\n", isa_name(isa));
      continue;
    }
    std::vector<float> hw(y64.size()), em(y64.size());
    conv_forward(p, d.x.data(), c.N, c.H, c.W, nullptr, d.res.data(), true, isa, hw.data());
    conv_forward_emulating(p, d.x.data(), c.N, c.H, c.W, nullptr, d.res.data(), true, isa, em.data());
    int64_t differ = 0;
    double worst = 0;
    for (size_t i = 0; i < hw.size(); ++i) {
      differ += std::memcmp(&hw[i], &em[i], 4) != 0;
      worst = std::max(worst, std::fabs(double(hw[i]) - em[i]) / (K * u * mag[i] + 1e-30));
    }
    std::printf("  %s %s: %lld of %zu float32 sums differ from the emulated instruction, largest by %.3f of the "
                "bound\n", c.name, isa_name(isa), (long long)differ, hw.size(), worst);
    if (isa == Isa::Avx512Bf16) {
      EXPECT_EQ(differ, 0) << isa_name(isa) << ": " << differ << " of " << hw.size() << " values differ";
      std::vector<uint16_t> hb(y64.size()), eb(y64.size());  // and so the bfloat16 outputs
      conv_forward(p, d.x.data(), c.N, c.H, c.W, hb.data(), d.res.data(), true, isa);
      conv_forward_emulating(p, d.x.data(), c.N, c.H, c.W, eb.data(), d.res.data(), true, isa);
      EXPECT_EQ(hb, eb) << isa_name(isa) << ": bfloat16 outputs differ from the emulation's";
    } else {
      EXPECT_LE(worst, 1.0) << isa_name(isa) << ": beyond float32 accumulation's bound of the emulation";
    }
  }
}

TEST_P(Bf16Conv, EveryKernelIsWithinFloat32AccumulationOfFloat64) {
  const Case& c = GetParam();
  const Prepared pr = prepare(c, 2, false);
  const Data& d = pr.d;
  const PackedConv& p = pr.p;
  const std::vector<double>& y64 = pr.y64;
  const std::vector<double>& mag = pr.mag;
  const double K = double(c.C / c.G * c.k * c.k + 2), u = std::ldexp(1.0, -24);
  for (Isa isa : every_kernel()) {
    std::vector<float> f(y64.size());
    std::vector<uint16_t> b(y64.size());
    conv_forward(p, d.x.data(), c.N, c.H, c.W, nullptr, d.res.data(), true, isa, f.data());
    conv_forward(p, d.x.data(), c.N, c.H, c.W, b.data(), d.res.data(), true, isa);
    double worst = 0, worst_b = 0;
    for (size_t i = 0; i < f.size(); ++i) {
      const double bound = K * u * mag[i] + 1e-30;
      worst = std::max(worst, std::fabs(f[i] - y64[i]) / bound);
      // the output rounding: half an ulp of bfloat16 (2^-9 relative) on top
      const double bound_b = bound + std::ldexp(std::fabs(y64[i]), -8);
      worst_b = std::max(worst_b, std::fabs(bf16_bits_to_float(b[i]) - y64[i]) / bound_b);
    }
    EXPECT_LE(worst, 1.0) << isa_name(isa) << ": float32 sums beyond K u sum|terms|";
    EXPECT_LE(worst_b, 1.0) << isa_name(isa) << ": bfloat16 outputs beyond the bound";
    std::printf("  %s %s: error / bound %.3f (float32 sums), %.3f (bfloat16 outputs)\n", c.name, isa_name(isa), worst,
                worst_b);
  }
}

TEST_P(Bf16Conv, ExactSumsGiveTheSameBitsOnEveryKernel) {
  const Case& c = GetParam();
  const Prepared pr = prepare(c, 3, true);
  const Data& d = pr.d;
  const PackedConv& p = pr.p;
  const std::vector<double>& y64 = pr.y64;
  for (Isa isa : every_kernel()) {
    std::vector<float> f(y64.size());
    conv_forward(p, d.x.data(), c.N, c.H, c.W, nullptr, d.res.data(), true, isa, f.data());
    for (size_t i = 0; i < f.size(); ++i) ASSERT_EQ(double(f[i]), y64[i]) << isa_name(isa) << " at " << i;
  }
}

// The epilogue's rounding is VCVTNEPS2BF16's on every kernel: the vector
// epilogue runs the instruction, the reference its scalar rule (round to
// nearest even, denormals to a signed zero, NaN quieted keeping sign and
// payload). Sums of zero plus biases that are denormal, NaN with payloads,
// infinite, or halfway between two bfloat16 values must come out alike.
TEST(Bf16Epilogue, RoundingIsTheInstructionsOnEveryKernel) {
  const uint32_t bits[16] = {0x00000001u, 0x80700000u, 0x007fffffu, 0x7fa00001u, 0xffc12345u, 0x7f800000u,
                             0xff800000u, 0x3f808000u, 0x3f818000u, 0x3f80c000u, 0x7f7fffffu, 0x00800000u,
                             0x80800000u, 0x3f7fffffu, 0xbf808001u, 0x00000000u};
  std::vector<float> bias(16), w(16 * 2, 0.0f);
  for (int i = 0; i < 16; ++i) std::memcpy(&bias[size_t(i)], &bits[i], 4);
  const PackedConv p = pack_conv(w.data(), bias.data(), 16, 2, 1, 1, 1, 1, 0);
  const std::vector<uint16_t> x(16 * 2, 0);
  std::vector<uint16_t> ref(16 * 16);
  conv_forward(p, x.data(), 1, 16, 1, ref.data(), nullptr, false, Isa::Reference);
  for (int i = 0; i < 16; ++i) {  // the rule itself, value by value
    const uint32_t u = bits[i];
    const uint16_t want = (u & 0x7f800000u) == 0 ? uint16_t((u >> 16) & 0x8000u)
                          : (u & 0x7fffffffu) > 0x7f800000u ? uint16_t((u >> 16) | 0x40u)
                                                              : uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    EXPECT_EQ(ref[size_t(i)], want) << "bias bits " << std::hex << u;
  }
  for (Isa isa : hardware()) {
    std::vector<uint16_t> y(16 * 16);
    conv_forward(p, x.data(), 1, 16, 1, y.data(), nullptr, false, isa);
    EXPECT_EQ(y, ref) << isa_name(isa);
  }
}

// A 1x1 convolution writing inside a zero border (y_pad = 1) and the 3x3
// reading that buffer as it is (x_pad = 1) give the bits of the dense
// path, and leave the border zero: the compiled model chains them so.
TEST(Bf16ConvChain, PaddedOutputAndInputEqualTheDensePath) {
  const int64_t N = 2, H = 7, W = 19, C = 64, G = 8;
  std::mt19937 g(4);
  std::normal_distribution<float> nd(0, 1);
  std::vector<float> w1(C * C), b1(C), w2(C * (C / G) * 9), b2(C);
  for (float& v : w1) v = nd(g) * 0.1f;
  for (float& v : w2) v = nd(g) * 0.1f;
  for (float& v : b1) v = nd(g);
  for (float& v : b2) v = nd(g);
  std::vector<uint16_t> x(N * H * W * C);
  for (uint16_t& v : x) v = float_to_bf16_bits(nd(g));
  const PackedConv p1 = pack_conv(w1.data(), b1.data(), C, C, 1, 1, 1, 1, 0);
  const PackedConv p2 = pack_conv(w2.data(), b2.data(), C, C, G, 3, 3, 2, 1);
  for (Isa isa : every_kernel()) {
    std::vector<uint16_t> dense(N * H * W * C), out_dense(N * 4 * 10 * C), out_padded(out_dense.size());
    conv_forward(p1, x.data(), N, H, W, dense.data(), nullptr, true, isa);
    conv_forward(p2, dense.data(), N, H, W, out_dense.data(), nullptr, true, isa);
    std::vector<uint16_t> padded(size_t(padded_size(N, H, W, C, 1)), 0);
    conv_forward(p1, x.data(), N, H, W, padded.data(), nullptr, true, isa, nullptr, 0, 1);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t hp = 0; hp < H + 2; ++hp)
        for (int64_t wp = 0; wp < W + 2; ++wp)
          for (int64_t c = 0; c < C; ++c) {
            const uint16_t v = padded[size_t(((n * (H + 2) + hp) * (W + 2) + wp) * C + c)];
            const bool border = hp == 0 || hp == H + 1 || wp == 0 || wp == W + 1;
            const uint16_t want = border ? 0 : dense[size_t(((n * H + hp - 1) * W + wp - 1) * C + c)];
            ASSERT_EQ(v, want) << isa_name(isa) << " at " << n << "," << hp << "," << wp << "," << c;
          }
    conv_forward(p2, padded.data(), N, H, W, out_padded.data(), nullptr, true, isa, nullptr, 1, 0);
    EXPECT_EQ(out_padded, out_dense) << isa_name(isa);
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, Bf16Conv, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(Bf16Isa, ThePickedKernelIsOneThisCpuHas) {
  const Isa best = best_isa();
  EXPECT_TRUE(has_isa(best));
  std::printf("  this CPU: amx %d, avx512-bf16 %d; picked %s%s\n", has_isa(Isa::Amx), has_isa(Isa::Avx512Bf16),
              isa_name(best), missing_hardware_reason().empty() ? "" : (" (" + missing_hardware_reason() + ")").c_str());
  if (best == Isa::Reference) {
    EXPECT_FALSE(missing_hardware_reason().empty());
  }
}


// --- the compiled ResNeXt ---

namespace {

// resnext_mini with batch norms whose statistics and affine parameters are
// not the identity (so folding them matters), in eval mode.
std::unique_ptr<ResNeXt> trained_like(uint64_t seed, int64_t in_channels = 3) {
  Generator gen(seed);
  ResNeXtConfig cfg = resnext_preset("resnext_mini", 6);
  cfg.in_channels = in_channels;
  auto m = std::make_unique<ResNeXt>(cfg, gen);
  std::mt19937 g{uint32_t(seed)};
  std::uniform_real_distribution<double> u(0.5, 1.5), s(-0.2, 0.2);
  for (auto& [name, t] : m->state_dict()) {
    auto ends = [&](const char* e) { return name.size() > std::strlen(e) && name.rfind(e) == name.size() - std::strlen(e); };
    std::vector<double> v = t.to_vector();
    if (ends("running_var") || (ends(".weight") && t.dim() == 1)) {
      for (double& x : v) x = u(g);
    } else if (ends("running_mean") || (ends(".bias") && t.dim() == 1 && name.rfind("fc.", 0) != 0)) {
      for (double& x : v) x = s(g);
    } else {
      continue;
    }
    t.copy_(Tensor::from_vector(v, t.shape(), t.dtype()));
  }
  m->train(false);
  return m;
}

// A trained-like model, an input batch, and the same model's features and
// logits in float64 (the truth the compiled models are held to).
struct AgainstFloat64 {
  std::unique_ptr<ResNeXt> m;
  Tensor x, f64, z64;
};
AgainstFloat64 against_float64(uint64_t seed, int64_t channels) {
  AgainstFloat64 r;
  r.m = trained_like(seed, channels);
  Generator gen(seed + 4);
  r.x = Tensor::randn({3, channels, 64, 48}, gen);
  NoGradGuard no_grad;
  auto m64 = trained_like(seed, channels);
  m64->to(DType::Float64);
  r.f64 = m64->features(r.x.to(DType::Float64));
  r.z64 = m64->head(r.f64);
  return r;
}

double rel_l2(const Tensor& a, const Tensor& truth) {
  const std::vector<double> x = a.to_vector(), y = truth.to_vector();
  double d = 0, n = 0;
  for (size_t i = 0; i < x.size(); ++i) d += (x[i] - y[i]) * (x[i] - y[i]), n += y[i] * y[i];
  return std::sqrt(d / n);
}

}  // namespace

// The compiled model against float64 (the truth) and against the autocast
// emulation of bf16 (engine/ops/amp.h): the same order of error, on
// features and logits, for every kernel this CPU has and the reference.
// Measured here: see the printed lines; the bound 2^-5 relative (L2) is
// about 8 roundings of 2^-8 compounded, well above the ~2^-8 seen.
TEST(Bf16ResNeXt, WithinBf16RoundingOfFloat64LikeTheAutocastEmulation) {
  for (const auto& [channels, seed] : {std::pair<int64_t, uint64_t>{3, 5}, {3, 17}, {3, 29}, {9, 5}, {9, 41}}) {
    auto&& [m, x, f64, z64] = against_float64(seed, channels);
    NoGradGuard no_grad;
    Tensor emulated;
    {
      AutocastGuard bf16(DType::BFloat16);
      emulated = m->features(x).to(DType::Float32);
    }
    const double e_emul = rel_l2(emulated, f64);
    for (Isa isa : every_kernel()) {
      ResNeXtCompiled fast(*m, isa);
      const Tensor f = fast.features(x), z = m->head(f);
      const double e_f = rel_l2(f, f64), e_z = rel_l2(z, z64);
      std::printf("  %lld channels, seed %llu, %s: features %.2e, logits %.2e relative to float64 (autocast "
                  "emulation: %.2e)\n", (long long)channels, (unsigned long long)seed, isa_name(isa), e_f, e_z, e_emul);
      EXPECT_LE(e_f, std::ldexp(1.0, -5)) << isa_name(isa);
      EXPECT_LE(e_z, std::ldexp(1.0, -5)) << isa_name(isa);
      EXPECT_LE(e_f, 3 * e_emul + 1e-3) << isa_name(isa) << ": much worse than the emulation";
    }
  }
}

// Through the model: use_compiled_inference() routes features() in eval
// mode without gradients, and nothing else (train mode, gradients recorded).
TEST(Bf16ResNeXt, RoutesOnlyEvalInferenceWithoutGradients) {
  if (hardware().empty()) GTEST_SKIP() << "no AMX or AVX512-BF16 here: " << missing_hardware_reason();
  auto m = trained_like(6);
  Generator gen(1);
  const Tensor x = Tensor::randn({2, 3, 64, 64}, gen);
  Tensor f32, fast, with_grad;
  {
    NoGradGuard no_grad;
    f32 = m->features(x);
  }
  apply_inference_precision(*m, "bf16", Device::cpu());
  {
    NoGradGuard no_grad;
    fast = m->features(x);
  }
  with_grad = m->features(x);  // gradients recorded (Grad-CAM): float32
  EXPECT_EQ(with_grad.to_vector(), f32.to_vector());
  EXPECT_NE(fast.to_vector(), f32.to_vector());
  EXPECT_LE(rel_l2(fast, f32), std::ldexp(1.0, -5));
  setenv("ICH_CPU_F32", "engine", 1);  // fp32 left to the layer-by-layer engine
  apply_inference_precision(*m, "fp32", Device::cpu());
  unsetenv("ICH_CPU_F32");
  EXPECT_EQ(m->compiled_inference(), nullptr);
  NoGradGuard no_grad;
  EXPECT_EQ(m->features(x).to_vector(), f32.to_vector());
}

}  // namespace

// --- the float32 twin (conv_forward_f32, ResNeXtCompiled in float32) ---

namespace {

struct DataF32 {
  std::vector<float> w, bias, x, res;
};

// float32 operands and the float64 truth on them (sum, sum of |terms|), ReLU
// after bias and residual
DataF32 make_f32(const Case& c, uint32_t seed, std::vector<double>& y, std::vector<double>& mag) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> nd(0, 1);
  DataF32 d;
  const int64_t Ho = conv_out_size(c.H, c.k, c.stride, c.pad), Wo = conv_out_size(c.W, c.k, c.stride, c.pad);
  const int64_t Cg = c.C / c.G, Og = c.O / c.G;
  for (int64_t i = 0; i < c.O * Cg * c.k * c.k; ++i) d.w.push_back(nd(gen) * 0.2f);
  for (int64_t i = 0; i < c.O; ++i) d.bias.push_back(nd(gen));
  for (int64_t i = 0; i < c.N * c.H * c.W * c.C; ++i) d.x.push_back(nd(gen));
  for (int64_t i = 0; i < c.N * Ho * Wo * c.O; ++i) d.res.push_back(nd(gen));
  y.assign(d.res.size(), 0);
  mag.assign(d.res.size(), 0);
  for (int64_t n = 0; n < c.N; ++n)
    for (int64_t oh = 0; oh < Ho; ++oh)
      for (int64_t ow = 0; ow < Wo; ++ow)
        for (int64_t o = 0; o < c.O; ++o) {
          const size_t q = size_t(((n * Ho + oh) * Wo + ow) * c.O + o);
          double s = double(d.bias[size_t(o)]) + d.res[q], m = std::fabs(s);
          for (int64_t ci = 0; ci < Cg; ++ci)
            for (int64_t i = 0; i < c.k; ++i)
              for (int64_t j = 0; j < c.k; ++j) {
                const int64_t ih = oh * c.stride - c.pad + i, iw = ow * c.stride - c.pad + j;
                if (ih < 0 || ih >= c.H || iw < 0 || iw >= c.W) continue;
                const double t = double(d.w[size_t(((o * Cg + ci) * c.k + i) * c.k + j)]) *
                                 d.x[size_t(((n * c.H + ih) * c.W + iw) * c.C + (o / Og) * Cg + ci)];
                s += t, m += std::fabs(t);
              }
          y[q] = std::max(s, 0.0), mag[q] = m;
        }
  return d;
}

std::vector<F32Kernel> f32_kernels() {
  std::vector<F32Kernel> v{F32Kernel::Reference};
  for (F32Kernel k : {F32Kernel::Avx512, F32Kernel::Avx2})
    if (has_f32_kernel(k)) v.push_back(k);
  return v;
}
const char* f32_name(F32Kernel k) { return f32_kernel_name(k); }
PackedConv pack_f32(const Case& c, const DataF32& d, F32Kernel k) {
  return pack_conv_f32(d.w.data(), d.bias.data(), c.O, c.C, c.G, c.k, c.k, c.stride, c.pad, k);
}

class F32Conv : public ::testing::TestWithParam<Case> {};

// Each sum a chain of FMAs (taps, then channels; by quads: four chains
// added at the end), each vector kernel's lanes exactly as the scalar
// reference on the same packing: the same bits, residual and ReLU included.
TEST_P(F32Conv, VectorKernelsEqualTheReferenceBitForBit) {
  const Case& c = GetParam();
  std::vector<double> y64, mag;
  const DataF32 d = make_f32(c, 3, y64, mag);
  int ran = 0;
  for (F32Kernel k : f32_kernels()) {
    if (k == F32Kernel::Reference) continue;
    const PackedConv p = pack_f32(c, d, k);
    std::vector<float> ref(y64.size()), fast(y64.size());
    conv_forward_f32(p, d.x.data(), c.N, c.H, c.W, ref.data(), d.res.data(), true, F32Kernel::Reference);
    conv_forward_f32(p, d.x.data(), c.N, c.H, c.W, fast.data(), d.res.data(), true, k);
    for (size_t i = 0; i < ref.size(); ++i)
      ASSERT_EQ(float_bits(fast[i]), float_bits(ref[i]))
          << f32_name(k) << " output " << i << ": " << fast[i] << " vs " << ref[i];
    ++ran;
  }
  if (ran == 0) GTEST_SKIP() << "neither AVX-512F nor AVX2 + FMA here: the float32 kernel is the reference alone";
}

// Against float64 on the same operands: within float32 accumulation's bound
// (K + 2) u sum|terms| (K products, the bias and the residual; u = 2^-24).
TEST_P(F32Conv, EveryKernelIsWithinFloat32AccumulationOfFloat64) {
  const Case& c = GetParam();
  std::vector<double> y64, mag;
  const DataF32 d = make_f32(c, 5, y64, mag);
  const double K = double(c.C / c.G * c.k * c.k + 2), u = std::ldexp(1.0, -24);
  for (F32Kernel k : f32_kernels()) {
    const PackedConv p = pack_f32(c, d, k);
    std::vector<float> y(y64.size());
    conv_forward_f32(p, d.x.data(), c.N, c.H, c.W, y.data(), d.res.data(), true, k);
    double worst = 0;
    for (size_t i = 0; i < y.size(); ++i) {
      const double bound = K * u * mag[i];
      ASSERT_LE(std::fabs(y[i] - y64[i]), bound) << f32_name(k) << " output " << i;
      if (bound > 0) worst = std::max(worst, std::fabs(y[i] - y64[i]) / bound);
    }
    std::printf("  %s %s: at most %.3f of the bound\n", c.name, f32_name(k), worst);
  }
}

// Which packing each grouped shape gets: by quads where a group has 32
// outputs or fewer (and the tiles are whole), else blocks of 16 outputs;
// never quads for the AVX2 kernel. A quads packing given to the AVX2
// kernel is refused.
TEST(F32Packing, GroupsOf16OrFewerAreQuads) {
  for (const Case& c : kCases)
    for (F32Kernel k : {F32Kernel::Reference, F32Kernel::Avx512, F32Kernel::Avx2}) {
      const int64_t Og = c.O / c.G, Cg = c.C / c.G;
      const bool quads =
          k != F32Kernel::Avx2 && c.G > 1 && Og % 4 == 0 && (16 % Og == 0 || Og == 32) && Cg % 4 == 0 && c.O % 16 == 0;
      std::vector<float> w(size_t(c.O * Cg * c.k * c.k), 0.5f), bias(size_t(c.O), 0.0f);
      const PackedConv p = pack_conv_f32(w.data(), bias.data(), c.O, c.C, c.G, c.k, c.k, c.stride, c.pad, k);
      EXPECT_EQ(p.quads, quads) << c.name << " " << f32_name(k);
      EXPECT_EQ(p.wf.size(),
                quads ? size_t(c.O * Cg * c.k * c.k) : size_t(p.blocks * p.ntiles * 16 * p.Kb * c.k * c.k))
          << c.name;
      if (quads && has_avx2_fma()) {
        std::vector<float> x(size_t(c.N * c.H * c.W * c.C)), y(size_t(c.N * c.H * c.W * c.O));
        EXPECT_THROW(conv_forward_f32(p, x.data(), c.N, c.H, c.W, y.data(), nullptr, true, F32Kernel::Avx2), Error);
      }
    }
  int quads = 0;
  for (const Case& c : kCases) quads += c.G > 1 && c.O / c.G <= 32 && c.C / c.G % 4 == 0;
  EXPECT_GE(quads, 7);  // the shapes above exercise the quads kernel (1, 2 and 4 groups a tile, 2 tiles a group)
}

INSTANTIATE_TEST_SUITE_P(Shapes, F32Conv, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return std::string(info.param.name); });

// The compiled float32 model against float64 (the truth), beside the
// layer-by-layer engine's float32 (batch norm separate, other sum orders):
// the same order of error on features and logits.
TEST(F32ResNeXt, WithinFloat32OfFloat64LikeTheEngine) {
  for (const auto& [channels, seed] : {std::pair<int64_t, uint64_t>{3, 5}, {3, 17}, {9, 41}}) {
    auto&& [m, x, f64, z64] = against_float64(seed, channels);
    NoGradGuard no_grad;
    const Tensor fe = m->features(x);  // the engine
    const double e_engine = rel_l2(fe, f64), e_engine_z = rel_l2(m->head(fe), z64);
    for (F32Kernel k : f32_kernels()) {
      ResNeXtCompiled fast(*m, k);
      const Tensor f = fast.features(x), z = m->head(f);
      const double e_f = rel_l2(f, f64), e_z = rel_l2(z, z64);
      std::printf("  %lld channels, seed %llu, %s: features %.2e, logits %.2e relative to float64 (engine: %.2e, "
                  "%.2e)\n", (long long)channels, (unsigned long long)seed, f32_name(k), e_f, e_z, e_engine,
                  e_engine_z);
      EXPECT_LE(e_f, 3 * e_engine + 1e-6) << f32_name(k);
      EXPECT_LE(e_z, 3 * e_engine_z + 1e-6) << f32_name(k);
    }
  }
}

// The front (stem, layer1, layer2's first block) runs a few images at a
// time (set_front_bytes): the features are the same bits whatever the
// images per chunk (one, two, four with a last chunk of one, the whole
// batch), in float32 and bfloat16, with every kernel this CPU has.
TEST(CompiledResNeXt, FeaturesDoNotDependOnTheImagesPerChunk) {
  auto m = trained_like(12);
  Generator gen(3);
  const int64_t N = 5, H = 64, W = 48;
  const Tensor x = Tensor::randn({N, 3, H, W}, gen);
  NoGradGuard no_grad;
  auto check = [&](ResNeXtCompiled& fast, const std::string& name) {
    fast.set_front_bytes(int64_t(1) << 40);
    ASSERT_EQ(fast.front_images(N, H, W), N) << name;
    const std::vector<double> whole = fast.features(x).to_vector();
    std::set<int64_t> seen;
    for (int64_t budget = 1; fast.front_images(N, H, W) < N || budget == 1; budget *= 2) {
      fast.set_front_bytes(budget);
      const int64_t images = fast.front_images(N, H, W);
      if (!seen.insert(images).second) continue;
      EXPECT_EQ(fast.features(x).to_vector(), whole) << name << ", " << images << " images at a time";
    }
    EXPECT_TRUE(seen.count(1) && seen.count(2) && seen.count(N)) << name << ": chunks of 1, 2 and " << N << " not all run";
  };
  for (F32Kernel k : f32_kernels()) {
    ResNeXtCompiled fast(*m, k);
    check(fast, f32_name(k));
  }
  for (Isa isa : every_kernel()) {
    ResNeXtCompiled fast(*m, isa);
    check(fast, isa_name(isa));
  }
}

// --precision fp32 compiles the model in float32 where the CPU has AVX-512F
// or AVX2 + FMA (ICH_CPU_F32=engine leaves it to the engine), for eval
// inference without gradients only: Grad-CAM's gradients still come from
// the engine.
TEST(F32ResNeXt, Fp32PrecisionCompilesWhereTheCpuHasAvx512OrAvx2) {
  auto m = trained_like(8);
  Generator gen(2);
  const Tensor x = Tensor::randn({2, 3, 64, 64}, gen);
  Tensor engine, fast;
  {
    NoGradGuard no_grad;
    engine = m->features(x);
  }
  apply_inference_precision(*m, "fp32", Device::cpu());
  if (best_f32_kernel() == F32Kernel::Reference) {
    EXPECT_EQ(m->compiled_inference(), nullptr);
    GTEST_SKIP() << "neither AVX-512F nor AVX2 + FMA here: --precision fp32 runs the engine (checked)";
  }
  ASSERT_NE(m->compiled_inference(), nullptr);
  EXPECT_TRUE(m->compiled_inference()->is_f32());
  EXPECT_EQ(m->compiled_inference()->kernel_name(), has_avx512f() ? "f32-avx512" : "f32-avx2");
  {
    NoGradGuard no_grad;
    fast = m->features(x);
  }
  EXPECT_NE(fast.to_vector(), engine.to_vector());  // folded batch norm: other roundings
  EXPECT_LE(rel_l2(fast, engine), 1e-5);
  EXPECT_EQ(m->features(x).to_vector(), engine.to_vector());  // gradients recorded: the engine
  setenv("ICH_CPU_F32", "reference", 1);
  apply_inference_precision(*m, "fp32", Device::cpu());
  unsetenv("ICH_CPU_F32");
  EXPECT_EQ(m->compiled_inference()->kernel_name(), "f32-reference");
  {
    NoGradGuard no_grad;
    if (has_avx512f()) EXPECT_EQ(m->features(x).to_vector(), fast.to_vector());  // the same packing, the same bits
    else EXPECT_LE(rel_l2(m->features(x), fast), 1e-5);  // (quads: channels added in another order than AVX2)
  }
  if (has_avx2_fma()) {  // the AVX2 kernel asked for by name, on any CPU that has it
    setenv("ICH_CPU_F32", "avx2", 1);
    apply_inference_precision(*m, "fp32", Device::cpu());
    unsetenv("ICH_CPU_F32");
    EXPECT_EQ(m->compiled_inference()->kernel_name(), "f32-avx2");
    NoGradGuard no_grad;
    EXPECT_LE(rel_l2(m->features(x), engine), 1e-5);
  }
}

}  // namespace
}  // namespace ich
