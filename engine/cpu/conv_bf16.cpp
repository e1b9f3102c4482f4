// conv_bf16.cpp: the convolution kernels of conv_bf16.h: the packings, the
// bfloat16 kernels (AMX tiles, AVX512-BF16, the scalar reference), their
// float32 twins (AVX-512F, by quads for narrow groups, AVX2 + FMA, the
// scalar reference), and the shared epilogue.
//
// Work: the output is cut into "M tiles" of 16 pixels (a 1x1 convolution:
// 16 consecutive pixels of the whole batch; otherwise 16 consecutive pixels
// of one output row, read from a zero-bordered copy of the input) and, per
// block of groups, into 16-channel output tiles. An item is two M tiles and
// one block: the kernel sweeps the block's output tiles two at a time,
// summing over taps and k chunks into 2 x 2 accumulator tiles (AMX: tiles
// 0-3, A tiles 4-5, B tiles 6-7), then hands each 16 x 16 float32 tile to
// the epilogue. Items are split over threads; each output value is summed
// by one thread in a fixed order, so the result does not depend on the
// thread count.
#include "engine/cpu/conv_bf16.h"

#include <cpuid.h>
#include <omp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <utility>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>

#include "engine/error.h"
#include "engine/half.h"

#if defined(__x86_64__)
// GCC 12 warns that the AVX-512 intrinsics' own _mm512_undefined_* "may be
// used uninitialized" (GCC bug 105593), or "is used uninitialized" where
// they are inlined into the kernels: not our code.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#define ICH_X86 1
#endif

namespace ich::cpu::bf16 {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Amx: return "amx";
    case Isa::Avx512Bf16: return "avx512-bf16";
    default: return "reference";
  }
}

namespace {

#ifdef ICH_X86
bool cpuid_bit(unsigned leaf, unsigned sub, int reg, int bit) {
  unsigned r[4] = {0, 0, 0, 0};
  if (__get_cpuid_max(0, nullptr) < leaf) return false;
  __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
  return (r[reg] >> bit) & 1u;
}
enum { EAX = 0, EBX = 1, ECX = 2, EDX = 3 };
#endif

struct Detected {
  bool avx512 = false, avx512bf16 = false, amx = false, avx2 = false;
  std::string amx_note;
};

const Detected& detected() {
  static const Detected d = [] {
    Detected r;
#ifdef ICH_X86
    __builtin_cpu_init();
    const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512vl");  // and the OS saves zmm
    r.avx512 = avx512;
    r.avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");  // and the OS saves ymm
    r.avx512bf16 = avx512 && cpuid_bit(7, 1, EAX, 5);
    const bool amx_cpu = cpuid_bit(7, 0, EDX, 24) && cpuid_bit(7, 0, EDX, 22);
    if (amx_cpu) {
      // Linux hands out the 8 KB of tile state only on request (since 5.16).
      constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
      if (syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0) r.amx = avx512;
      else r.amx_note = "the CPU has AMX but the kernel refused its tile state (arch_prctl)";
    }
#endif
    // ICH_CPU_BF16=none: as a CPU without either (tests of the refusal)
    if (const char* env = std::getenv("ICH_CPU_BF16"); env && std::string(env) == "none") {
      r.avx512bf16 = r.amx = false;
      r.amx_note = "ICH_CPU_BF16=none";
    }
    return r;
  }();
  return d;
}

}  // namespace

bool has_isa(Isa isa) {
  switch (isa) {
    case Isa::Amx: return detected().amx;
    case Isa::Avx512Bf16: return detected().avx512bf16;
    default: return true;
  }
}

Isa best_isa() {
  static const Isa chosen = [] {
    Isa best = has_isa(Isa::Amx) ? Isa::Amx : has_isa(Isa::Avx512Bf16) ? Isa::Avx512Bf16 : Isa::Reference;
    if (const char* env = std::getenv("ICH_CPU_BF16"); env && *env) {
      const std::string e = env;
      const Isa want = e == "amx" ? Isa::Amx : e == "avx512-bf16" ? Isa::Avx512Bf16 : Isa::Reference;
      ICH_CHECK(e == "amx" || e == "avx512-bf16" || e == "reference" || e == "none", "ICH_CPU_BF16=", e,
                ": expected amx, avx512-bf16, reference or none");
      ICH_CHECK(has_isa(want), "ICH_CPU_BF16=", e, ": this CPU cannot run it");
      best = want;
    }
    return best;
  }();
  return chosen;
}

bool has_avx512f() { return detected().avx512; }

bool has_avx2_fma() { return detected().avx2; }

bool has_f32_kernel(F32Kernel k) {
  switch (k) {
    case F32Kernel::Avx512: return has_avx512f();
    case F32Kernel::Avx2: return has_avx2_fma();
    default: return true;
  }
}

const char* f32_kernel_name(F32Kernel k) {
  switch (k) {
    case F32Kernel::Avx512: return "f32-avx512";
    case F32Kernel::Avx2: return "f32-avx2";
    default: return "f32-reference";
  }
}

F32Kernel best_f32_kernel() {
  return has_avx512f() ? F32Kernel::Avx512 : has_avx2_fma() ? F32Kernel::Avx2 : F32Kernel::Reference;
}

std::string missing_hardware_reason() {
  if (has_isa(Isa::Amx) || has_isa(Isa::Avx512Bf16)) return "";
  const std::string note = detected().amx_note;
  if (note == "ICH_CPU_BF16=none") return "ICH_CPU_BF16=none: the bf16 kernels are switched off";
  return "this CPU has neither AVX512-BF16 nor AMX-BF16" + (note.empty() ? std::string() : " (" + note + ")");
}

int64_t conv_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad) { return (in + 2 * pad - k) / stride + 1; }

namespace {
// A packing's shape: blocks of as many groups as fit `fill` of what a group
// has `per` of (its channels or its outputs), one group where a group has
// that many already; the block's output tiles.
PackedConv packing(int64_t O, int64_t C, int64_t G, int64_t kh, int64_t kw, int64_t stride, int64_t pad,
                   int64_t per, int64_t fill) {
  ICH_CHECK(G >= 1 && C % G == 0 && O % G == 0, "conv: groups ", G, " must divide ", C, " and ", O);
  PackedConv p;
  p.C = C, p.O = O, p.G = G, p.kh = kh, p.kw = kw, p.stride = stride, p.pad = pad;
  int64_t gpb = 1;
  if (per < fill)
    for (int64_t g = G; g >= 1; --g)
      if (G % g == 0 && g * per <= fill) {
        gpb = g;
        break;
      }
  p.Kb = gpb * (C / G), p.Nb = gpb * (O / G), p.blocks = G / gpb;
  p.ntiles = (p.Nb + 15) / 16;
  return p;
}
}  // namespace

PackedConv pack_conv(const float* w, const float* bias, int64_t O, int64_t C, int64_t G, int64_t kh, int64_t kw,
                     int64_t stride, int64_t pad) {
  // groups per block: one k chunk of up to 32 channels when groups are
  // narrower, else one group per block
  PackedConv p = packing(O, C, G, kh, kw, stride, pad, C / std::max<int64_t>(G, 1), 32);
  const int64_t Cg = C / G, Og = O / G;
  p.Kc = std::min<int64_t>(p.Kb, 32);
  ICH_CHECK(p.Kc % 2 == 0 && p.Kb % p.Kc == 0, "bf16 conv: ", p.Kb, " input channels per block of groups (", C,
            " channels, ", G, " groups): the tiles need an even number up to 32, or a multiple of 32");
  p.kchunks = p.Kb / p.Kc;
  const int64_t taps = kh * kw, pairs = p.Kc / 2;
  p.w.assign(size_t(p.blocks * taps * p.kchunks * p.ntiles * pairs * 32), 0);
  for (int64_t b = 0; b < p.blocks; ++b)
    for (int64_t t = 0; t < taps; ++t)
      for (int64_t kc = 0; kc < p.kchunks; ++kc)
        for (int64_t nt = 0; nt < p.ntiles; ++nt) {
          uint16_t* tile = p.w.data() + (((b * p.ntiles + nt) * taps + t) * p.kchunks + kc) * pairs * 32;
          for (int64_t pp = 0; pp < pairs; ++pp)
            for (int64_t n = 0; n < 16; ++n)
              for (int64_t e = 0; e < 2; ++e) {
                const int64_t on = nt * 16 + n, ck = kc * p.Kc + 2 * pp + e;  // within the block
                if (on >= p.Nb || on / Og != ck / Cg) continue;  // past the block, or another group: zero
                const int64_t o = b * p.Nb + on, c = ck % Cg;
                tile[(pp * 16 + n) * 2 + e] = float_to_bf16_bits(w[(o * Cg + c) * taps + t]);
              }
        }
  p.bias.assign(bias, bias + O);
  return p;
}

PackedConv pack_conv_f32(const float* w, const float* bias, int64_t O, int64_t C, int64_t G, int64_t kh, int64_t kw,
                         int64_t stride, int64_t pad, F32Kernel kernel) {
  const int64_t Cg = C / std::max<int64_t>(G, 1), Og = O / std::max<int64_t>(G, 1);
  if (kernel != F32Kernel::Avx2 && G > 1 && Cg % 4 == 0 && Og % 4 == 0 && O % 16 == 0 &&
      (16 % Og == 0 || Og == 32)) {
    // groups of 32 outputs or fewer by quads (see the header): a tile's quad
    // q holds outputs 4q..4q+3, lane 4l + j output 4q + l's channel j of
    // each 4. Measured in the model (batch 32, 200 px, Zen 5): layer1's 3x3
    // (groups of 8) 85 -> 54 ms, layer2's (16) 49 -> 40, layer3's (32) 200
    // -> 180; layer4's (64) 26 -> 41, so wider groups stay in blocks.
    PackedConv p = packing(O, C, G, kh, kw, stride, pad, O, 16);
    p.f32 = true, p.quads = true;
    p.Kb = Cg, p.Nb = 16, p.blocks = O / 16, p.ntiles = 1, p.Kc = Cg, p.kchunks = 1;
    const int64_t taps = kh * kw, steps = Cg / 4;
    p.wf.assign(size_t(O * taps * Cg), 0.0f);
    for (int64_t b = 0; b < p.blocks; ++b)
      for (int64_t t = 0; t < taps; ++t)
        for (int64_t s = 0; s < steps; ++s)
          for (int64_t lane = 0; lane < 64; ++lane) {
            const int64_t q = lane / 16, l = lane % 16 / 4, j = lane % 4, o = b * 16 + 4 * q + l;
            p.wf[size_t(((b * taps + t) * steps + s) * 64 + lane)] = w[(o * Cg + 4 * s + j) * taps + t];
          }
    p.bias.assign(bias, bias + O);
    return p;
  }
  // groups per block: as many as fill one 16-output tile where a group has
  // fewer outputs (an output sums only its block's channels: 2x the useful
  // products for ResNeXt's layer1, whose groups have 8, none elsewhere)
  PackedConv p = packing(O, C, G, kh, kw, stride, pad, Og, 16);
  p.f32 = true;
  p.Kc = p.Kb, p.kchunks = 1;
  const int64_t taps = kh * kw;
  p.wf.assign(size_t(p.blocks * p.ntiles * taps * p.Kb * 16), 0.0f);
  for (int64_t b = 0; b < p.blocks; ++b)
    for (int64_t nt = 0; nt < p.ntiles; ++nt)
      for (int64_t t = 0; t < taps; ++t)
        for (int64_t k = 0; k < p.Kb; ++k)
          for (int64_t n = 0; n < 16; ++n) {
            const int64_t on = nt * 16 + n;
            if (on >= p.Nb || on / Og != k / Cg) continue;
            p.wf[size_t((((b * p.ntiles + nt) * taps + t) * p.Kb + k) * 16 + n)] =
                w[((b * p.Nb + on) * Cg + k % Cg) * taps + t];
          }
  p.bias.assign(bias, bias + O);
  return p;
}

namespace {

// Where one M tile reads and writes.
struct MTile {
  const void* a;  // row 0 of the A tile (tap 0, block 0, channel 0): bfloat16 or float32 as the kernel's

  int64_t out;        // output pixel of row 0 (pitch > 0: of column 0 of row 0's output row)
  int64_t valid;      // rows computed (pitch 0: each an output pixel)
  // pitch > 0: the rows are consecutive positions of a grid of this many
  // columns (a stride-1 convolution's output laid on its padded input's
  // rows); row 0 is at column col0, and columns past Wo are dropped
  int64_t pitch = 0, col0 = 0;
};
const uint16_t* bf16_a(const MTile& m) { return static_cast<const uint16_t*>(m.a); }
const float* f32_a(const MTile& m) { return static_cast<const float*>(m.a); }

// The epilogue's rounding to bfloat16 is VCVTNEPS2BF16's (Intel SDM): round
// to nearest even, a denormal input to a zero of its sign, a NaN quieted
// with its sign and payload kept. The vector epilogue runs that instruction
// (one instead of seven; every CPU with AMX or AVX512-BF16 has it), this is
// the same for the reference. It differs from float_to_bf16_bits only for
// denormals and NaN payloads.
uint16_t round_bf16_like_vcvtneps(float v) {
  const uint32_t u = float_bits(v);
  if ((u & 0x7f800000u) == 0) return uint16_t((u >> 16) & 0x8000u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40u);
  return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

struct Epilogue {
  const PackedConv& p;
  uint16_t* y;
  float* y_f32;
  const uint16_t* residual;
  const float* residual_f32;  // (the float32 reference: y_f32 and this instead of y and residual)
  bool relu;
  bool vector;  // AVX-512 (the same operations, 16 outputs at a time)
  // y (and the residual) inside a zero border of y_pad pixels: output pixel
  // (n, oh, ow) at ((n (Ho + 2 y_pad) + oh + y_pad) (Wo + 2 y_pad) + ow + y_pad)
  int64_t Ho = 0, Wo = 0, y_pad = 0;
  // tile (16 x 16 float32, row stride 16) of rows m (of which `valid`) and
  // outputs nt*16.. of block b
  void operator()(const float* tile, const MTile& m, int64_t b, int64_t nt) const;
  // Where rows go: the index in y of each row's output pixel, stepped
  // without a division per row (the epilogue runs once for every 16
  // outputs); live() is false for a grid position past Wo, whose row is
  // computed and dropped (MTile::pitch).
  struct Rows {
    const Epilogue& e;
    bool simple;  // consecutive pixels and no border: q steps by one
    int64_t q = 0, n = 0, oh = 0, ow = 0, pitch = 0;
    Rows(const Epilogue& ep, const MTile& m) : e(ep), simple(ep.y_pad == 0 && m.pitch == 0) {
      if (simple) {
        q = m.out;
        return;
      }
      n = m.out / (e.Ho * e.Wo);
      const int64_t rem = m.out % (e.Ho * e.Wo);
      oh = rem / e.Wo;
      ow = m.pitch ? m.col0 : rem % e.Wo;
      pitch = m.pitch ? m.pitch : e.Wo;
      place();
    }
    void place() { q = (n * (e.Ho + 2 * e.y_pad) + oh + e.y_pad) * (e.Wo + 2 * e.y_pad) + ow + e.y_pad; }
    bool live() const { return simple || ow < e.Wo; }
    void next() {
      ++q;
      if (simple || ++ow < pitch) return;
      ow = 0;  // the next output row, or the next image's first
      if (++oh == e.Ho) oh = 0, ++n;
      place();
    }
  };
  void scalar(const float* tile, const MTile& m, int64_t o0, int64_t n_valid) const {
    Rows rows(*this, m);
    for (int64_t r = 0; r < m.valid; ++r, rows.next()) {
      if (!rows.live()) continue;
      const int64_t q = rows.q * p.O + o0;
      for (int64_t n = 0; n < n_valid; ++n) {
        float v = tile[r * 16 + n] + p.bias[size_t(o0 + n)];
        if (residual) v += bf16_bits_to_float(residual[q + n]);
        if (residual_f32) v += residual_f32[q + n];
        if (relu) v = std::max(v, 0.0f);
        if (y_f32) y_f32[q + n] = v;
        else y[q + n] = round_bf16_like_vcvtneps(v);
      }
    }
  }
};

#ifdef ICH_X86
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) void epilogue_avx512(const Epilogue& e, const float* tile,
                                                                  const MTile& m, int64_t o0, int64_t n_valid) {
  const __mmask16 k = __mmask16((1u << n_valid) - 1u);
  const __m512 bias = _mm512_maskz_loadu_ps(k, e.p.bias.data() + o0), zero = _mm512_setzero_ps();
  Epilogue::Rows rows(e, m);
  for (int64_t r = 0; r < m.valid; ++r, rows.next()) {
    if (!rows.live()) continue;
    const int64_t q = rows.q * e.p.O + o0;
    __m512 v = _mm512_add_ps(_mm512_loadu_ps(tile + r * 16), bias);
    if (e.residual) {
      const __m512i h = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, e.residual + q));
      v = _mm512_add_ps(v, _mm512_castsi512_ps(_mm512_slli_epi32(h, 16)));
    }
    if (e.relu) v = _mm512_max_ps(zero, v);  // NaN stays NaN, as std::max(v, 0)
    if (e.y_f32) {
      _mm512_mask_storeu_ps(e.y_f32 + q, k, v);
      continue;
    }
    _mm256_mask_storeu_epi16(e.y + q, k, (__m256i)_mm512_cvtneps_pbh(v));
  }
}
#endif

void Epilogue::operator()(const float* tile, const MTile& m, int64_t b, int64_t nt) const {
  const int64_t n_valid = std::min<int64_t>(16, p.Nb - nt * 16);
  const int64_t o0 = b * p.Nb + nt * 16;
#ifdef ICH_X86
  if (vector) {
    epilogue_avx512(*this, tile, m, o0, n_valid);
    return;
  }
#endif
  scalar(tile, m, o0, n_valid);
}

const uint16_t* b_tile(const PackedConv& p, int64_t b, int64_t t, int64_t kc, int64_t nt) {
  return p.w.data() + (((b * p.ntiles + nt) * p.taps() + t) * p.kchunks + kc) * (p.Kc / 2) * 32;
}

// --- the reference: what the instructions compute, one value at a time ---
// Denormal inputs count as zero, each product is exact, each addition is
// rounded to nearest even and a denormal sum flushed to zero.
float daz(uint16_t h) {
  return (h & 0x7f80) == 0 ? 0.0f : bf16_bits_to_float(h);
}
float ftz(float v) { return std::fpclassify(v) == FP_SUBNORMAL ? std::copysign(0.0f, v) : v; }

// An item: M tiles m[0..nm) (a block of up to kMBlock), block of groups b,
// output tiles [nt0, nt1). Each kernel sweeps the output tiles in the outer
// loop and the M tiles inside, so that the B tiles of one output tile (or
// pair), a few KB per k chunk, are read from cache by every M tile of the
// block instead of from memory once per M tile.
constexpr int64_t kMBlock = 8;

// order of a pair's two products: AMX's TDPBF16PS adds the even element's
// first, AVX512-BF16's VDPBF16PS the odd one's (Intel SDM pseudo-code).
void reference_item(const PackedConv& p, const MTile* m, int64_t nm, int64_t lda, const int64_t* tap_off, int64_t b,
                    int64_t nt0, int64_t nt1, const Epilogue& ep, bool odd_first) {
  float tile[256];
  for (int64_t nt = nt0; nt < nt1; ++nt)
    for (int64_t mi = 0; mi < nm; ++mi) {
      for (int64_t r = 0; r < 16; ++r)
        for (int64_t n = 0; n < 16; ++n) {
          float acc = 0;
          for (int64_t t = 0; t < p.taps(); ++t)
            for (int64_t kc = 0; kc < p.kchunks; ++kc) {
              const uint16_t* a = bf16_a(m[mi]) + r * lda + tap_off[t] + b * p.Kb + kc * p.Kc;
              const uint16_t* bt = b_tile(p, b, t, kc, nt);
              for (int64_t pp = 0; pp < p.Kc / 2; ++pp)
                for (int e0 = 0; e0 < 2; ++e0) {
                  const int e = odd_first ? 1 - e0 : e0;
                  acc = ftz(std::fma(daz(a[2 * pp + e]), daz(bt[(pp * 16 + n) * 2 + e]), acc));
                }
            }
          tile[r * 16 + n] = acc;
        }
      ep(tile, m[mi], b, nt);
    }
}

#ifdef ICH_X86
// --- float32: the same items, one FMA per product ---
// An output tile's packed weights: [tap][k][16 outputs].
const float* f32_b(const PackedConv& p, int64_t b, int64_t nt) {
  return p.wf.data() + (b * p.ntiles + nt) * p.taps() * p.Kb * 16;
}
#endif

// A quads tile's first input channel: that of its first output's group.
int64_t quads_channel0(const PackedConv& p, int64_t b) { return b * 16 / (p.O / p.G) * p.Kb; }

// The reference: each sum a chain of fused multiply-adds over taps, then
// channels, as the AVX-512 kernel's lanes do it (so the two agree bit for bit).
// Quads: four chains, channel j of every 4 (taps, then channels), added as
// (j0 + j2) + (j1 + j3).
void reference_f32_item(const PackedConv& p, const MTile* m, int64_t nm, int64_t lda, const int64_t* tap_off,
                        int64_t b, int64_t nt0, int64_t nt1, const Epilogue& ep) {
  float tile[256];
  if (p.quads) {
    const int64_t Og = p.O / p.G, steps = p.Kb / 4;
    for (int64_t mi = 0; mi < nm; ++mi) {
      for (int64_t r = 0; r < 16; ++r)
        for (int64_t n = 0; n < 16; ++n) {
          const int64_t q = n / 4, l = n % 4, c0 = quads_channel0(p, b) + (n / Og) * p.Kb;
          float s[4] = {0, 0, 0, 0};
          for (int64_t t = 0; t < p.taps(); ++t) {
            const float* a = f32_a(m[mi]) + r * lda + tap_off[t] + c0;
            const float* wt = p.wf.data() + (b * p.taps() + t) * steps * 64 + q * 16 + l * 4;
            for (int64_t st = 0; st < steps; ++st)
              for (int64_t j = 0; j < 4; ++j) s[j] = std::fma(a[4 * st + j], wt[st * 64 + j], s[j]);
          }
          tile[r * 16 + n] = (s[0] + s[2]) + (s[1] + s[3]);
        }
      ep(tile, m[mi], b, 0);
    }
    return;
  }
  for (int64_t nt = nt0; nt < nt1; ++nt)
    for (int64_t mi = 0; mi < nm; ++mi) {
      const float* bt = p.wf.data() + (b * p.ntiles + nt) * p.taps() * p.Kb * 16;
      for (int64_t r = 0; r < 16; ++r)
        for (int64_t n = 0; n < 16; ++n) {
          float acc = 0;
          for (int64_t t = 0; t < p.taps(); ++t) {
            const float* a = f32_a(m[mi]) + r * lda + tap_off[t] + b * p.Kb;
            for (int64_t k = 0; k < p.Kb; ++k) acc = std::fma(a[k], bt[(t * p.Kb + k) * 16 + n], acc);
          }
          tile[r * 16 + n] = acc;
        }
      ep(tile, m[mi], b, nt);
    }
}

#ifdef ICH_X86
// f(std::integral_constant<int, i>{}) for i = 0 .. N-1: each index a
// constant, so that an array of sums indexed by it stays in registers (a
// loop over rows, even one GCC unrolls, kept them on the stack: 16-32 zmm
// stores and loads per call of a kernel). One per target: a function is
// inlined only into one whose target has all of its instructions.
template <class F, int... I>
[[gnu::always_inline]] __attribute__((target("avx512f"))) inline void each_f32(F& f, std::integer_sequence<int, I...>) {
  (f(std::integral_constant<int, I>{}), ...);
}
template <class F, int... I>
[[gnu::always_inline]] __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) inline void each_bf16(
    F& f, std::integer_sequence<int, I...>) {
  (f(std::integral_constant<int, I>{}), ...);
}

// Where an item's float32 sums go, applied from the registers by the
// AVX-512 kernels: the epilogue's bias, residual and ReLU (as Epilogue does
// them, so the reference's results are the same bits), then float32 or
// bfloat16 (VCVTNEPS2BF16). Pointers are at the item's first output.
struct RowsOut {
  float* y;                 // float32 results (float32 kernels; bfloat16 ones in tests), or
  uint16_t* y16;            // bfloat16 results
  const float* residual;    // float32 residual, or
  const uint16_t* res16;    // bfloat16 residual
  const float* bias;  // of output tile 0
  bool relu;
  int64_t O;
  const int64_t* q;   // each row's output pixel in y (Epilogue::Rows), -1: computed and dropped
  __mmask16 mask[2];  // each output tile's outputs (the block's last tile may have fewer)
};

// One row's sums of output tile j (v, bias added) to their output pixel q:
// the residual, ReLU, the store (the same as Epilogue's, so the reference's
// results are the same bits). Called with a constant row and tile, and
// branch-free, so that the kernels' arrays of sums stay in registers (a loop
// over them, or a branch per row, made GCC keep them on the stack: 16-32
// zmm stores and loads per call): what does not apply has a mask of zero.
// Its address is still one in cache (a masked load of no element still
// costs its cache line on the CPUs measured: the output's, a miss per row,
// took 5-10% off the model; an unmapped page's, a microcode assist).
struct RowsMasks {
  __mmask16 res, relu;
  explicit RowsMasks(const RowsOut& o) : res(o.residual || o.res16 ? 0xffff : 0), relu(o.relu ? 0xffff : 0) {}
};
[[gnu::always_inline]] __attribute__((target("avx512f"))) inline void put_f32(const RowsOut& o, const RowsMasks& k,
                                                                                __m512 v, int64_t q, int j) {
  const __mmask16 live = q >= 0 ? o.mask[j] : 0;
  const int64_t at = std::max<int64_t>(q, 0) * o.O + 16 * j;
  const float* res = o.residual ? o.residual + at : o.bias + 16 * j;
  v = _mm512_mask_add_ps(v, k.res, v, _mm512_maskz_loadu_ps(live & k.res, res));
  v = _mm512_mask_max_ps(v, k.relu, _mm512_setzero_ps(), v);  // NaN stays NaN, as std::max(v, 0)
  _mm512_mask_storeu_ps(o.y + at, live, v);
}
// (bfloat16 results, or float32 ones in tests: the same branch every row)
[[gnu::always_inline]] __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) inline void put_bf16(
    const RowsOut& o, const RowsMasks& k, __m512 v, int64_t q, int j) {
  const __mmask16 live = q >= 0 ? o.mask[j] : 0;
  const int64_t at = std::max<int64_t>(q, 0) * o.O + 16 * j;
  const uint16_t* res = o.res16 ? o.res16 + at : reinterpret_cast<const uint16_t*>(o.bias + 16 * j);
  const __m512i h = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(live & k.res, res));
  v = _mm512_mask_add_ps(v, k.res, v, _mm512_castsi512_ps(_mm512_slli_epi32(h, 16)));
  v = _mm512_mask_max_ps(v, k.relu, _mm512_setzero_ps(), v);
  if (o.y) _mm512_mask_storeu_ps(o.y + at, live, v);
  else _mm256_mask_storeu_epi16(o.y16 + at, live, (__m256i)_mm512_cvtneps_pbh(v));
}

// R rows (R <= 8) x NT output tiles (R NT zmm sums): per channel, NT loads
// of 16 weights and R broadcasts feed R NT FMAs.
template <int R, int NT>
__attribute__((target("avx512f"))) void f32_rows(const float* a, int64_t lda, const int64_t* tap_off, int64_t taps,
                                                 int64_t K, const float* bt, int64_t b_next, const RowsOut& o,
                                                 int64_t row0) {
  __m512 acc[R][NT];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < NT; ++j) acc[r][j] = _mm512_setzero_ps();
  for (int64_t t = 0; t < taps; ++t) {
    const float* at = a + tap_off[t];
    const float* bp = bt + t * K * 16;
    for (int64_t k = 0; k < K; ++k, bp += 16) {
      __m512 bv[NT];
      for (int j = 0; j < NT; ++j) bv[j] = _mm512_loadu_ps(bp + j * b_next);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const __m512 av = _mm512_set1_ps(at[r * lda + k]);
        for (int j = 0; j < NT; ++j) acc[r][j] = _mm512_fmadd_ps(av, bv[j], acc[r][j]);
      }
    }
  }
  __m512 bias[NT];
  for (int j = 0; j < NT; ++j) bias[j] = _mm512_maskz_loadu_ps(o.mask[j], o.bias + 16 * j);
  const RowsMasks k(o);
  auto row = [&](auto rc) __attribute__((target("avx512f"), always_inline)) {
    constexpr int r = rc;
    put_f32(o, k, _mm512_add_ps(acc[r][0], bias[0]), o.q[row0 + r], 0);
    if constexpr (NT > 1) put_f32(o, k, _mm512_add_ps(acc[r][1], bias[1]), o.q[row0 + r], 1);
  };
  each_f32(row, std::make_integer_sequence<int, R>());
}

// The same for bfloat16 pairs: per pair of channels, NT loads of 16 x 2
// weights and R broadcasts of the pixel's pair feed R NT VDPBF16PS.
template <int R, int NT>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) void bf16_rows(
    const uint16_t* a, int64_t lda, const int64_t* tap_off, int64_t taps, int64_t K, const uint16_t* bt,
    int64_t b_next, const RowsOut& o, int64_t row0) {
  __m512 acc[R][NT];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < NT; ++j) acc[r][j] = _mm512_setzero_ps();
  for (int64_t t = 0; t < taps; ++t) {
    const uint16_t* at = a + tap_off[t];
    const uint16_t* bp = bt + t * K * 16;  // the tap's k chunks, consecutive
    for (int64_t k = 0; k < K; k += 2, bp += 32) {
      __m512bh bv[NT];
      for (int j = 0; j < NT; ++j) bv[j] = (__m512bh)_mm512_loadu_si512(bp + j * b_next);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        int32_t pair;
        std::memcpy(&pair, at + r * lda + k, 4);
        const __m512bh av = (__m512bh)_mm512_set1_epi32(pair);
        for (int j = 0; j < NT; ++j) acc[r][j] = _mm512_dpbf16_ps(acc[r][j], av, bv[j]);
      }
    }
  }
  __m512 bias[NT];
  for (int j = 0; j < NT; ++j) bias[j] = _mm512_maskz_loadu_ps(o.mask[j], o.bias + 16 * j);
  const RowsMasks k(o);
  auto row = [&](auto rc) __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"), always_inline)) {
    constexpr int r = rc;
    put_bf16(o, k, _mm512_add_ps(acc[r][0], bias[0]), o.q[row0 + r], 0);
    if constexpr (NT > 1) put_bf16(o, k, _mm512_add_ps(acc[r][1], bias[1]), o.q[row0 + r], 1);
  };
  each_bf16(row, std::make_integer_sequence<int, R>());
}

template <typename T>
using RowsFn = void (*)(const T*, int64_t, const int64_t*, int64_t, int64_t, const T*, int64_t, const RowsOut&,
                        int64_t);
template <typename T, int NT, int... R>
constexpr std::array<RowsFn<T>, sizeof...(R)> rows_table(std::integer_sequence<int, R...>) {
  if constexpr (std::is_same_v<T, float>) return {&f32_rows<R + 1, NT>...};
  else return {&bf16_rows<R + 1, NT>...};
}

// The residual of rows q[0..n) at `ahead` (the outputs the same rows get
// one pass over the M block later): prefetched into L1 while this pass
// computes, so that the epilogue's loads find them. A batch's residual is
// fresh from memory (layer1's: 82 MB), and the epilogue's demand misses
// stalled the kernel: measured on Zen 5 (float32, batch 32, 200 px, each
// layer's blocks in a row), layer1's last 1x1 with its residual 20% slower
// than without it (88.6 against 73.5 ms for 3 calls); with this, 68-70 ms,
// layer2's 99 -> 82-84 ms, layer3's 23 calls 569 -> 546 (the model 2%).
// One pass ahead measured best: one chunk of rows ahead (about 1,000
// cycles) was too near, eight the lines left L1 before their use. One
// line a row per 64 bytes of residual (`bytes`).
template <typename T>
void prefetch_residual(const T* ahead, const int64_t* q, int64_t n, int64_t O, int64_t bytes) {
#ifdef ICH_X86
  for (int64_t r = 0; r < n; ++r) {
    if (q[r] < 0) continue;
    const char* line = reinterpret_cast<const char*>(ahead + q[r] * O);
    for (int64_t at = 0; at < bytes; at += 64) _mm_prefetch(line + at, _MM_HINT_T0);
  }
#else
  (void)ahead, (void)q, (void)n, (void)O, (void)bytes;
#endif
}

// The AVX-512 kernels' item (float32: AVX-512F; bfloat16: AVX512-BF16):
// output tiles two at a time, each M tile's rows 8 at a time and the last
// ones only as many as the tile has (a 3x3 convolution's rows of 13
// pixels: 8 + 5, not 16), the epilogue on the registers. Measured on a Zen 5
// core (136 GMAC/s of float32 FMA, 251 of VDPBF16PS): a 1x1 convolution of
// 1024 x 1024 channels over 32 x 13 x 13 pixels at 126-135 GMAC/s in float32.
template <typename T>
void avx512_rows_item(const PackedConv& p, const MTile* m, int64_t nm, int64_t lda, const int64_t* tap_off,
                      int64_t b, int64_t nt0, int64_t nt1, const Epilogue& ep) {
  static constexpr auto one = rows_table<T, 1>(std::make_integer_sequence<int, 8>());
  static constexpr auto two = rows_table<T, 2>(std::make_integer_sequence<int, 8>());
  const int64_t b_next = p.taps() * p.Kb * 16;
  // each M tile's rows' output pixels, found once for all its output tiles
  int64_t q[kMBlock][16];
  for (int64_t mi = 0; mi < nm; ++mi) {
    Epilogue::Rows rows(ep, m[mi]);
    for (int64_t r = 0; r < m[mi].valid; ++r, rows.next()) q[mi][r] = rows.live() ? rows.q : -1;
  }
  for (int64_t nt = nt0; nt < nt1; nt += 2) {
    const bool pair = nt + 1 < nt1;
    const T* bt;
    if constexpr (std::is_same_v<T, float>) bt = f32_b(p, b, nt);
    else bt = b_tile(p, b, 0, 0, nt);
    const int64_t o0 = b * p.Nb + nt * 16;  // (a row's outputs start at q O + o0)
    RowsOut o{ep.y_f32 ? ep.y_f32 + o0 : nullptr,
              ep.y ? ep.y + o0 : nullptr,
              ep.residual_f32 ? ep.residual_f32 + o0 : nullptr,
              ep.residual ? ep.residual + o0 : nullptr,
              p.bias.data() + o0,
              ep.relu,
              p.O,
              nullptr,
              {}};
    for (int j = 0; j < 2; ++j) {
      const int64_t n_valid = std::clamp<int64_t>(p.Nb - (nt + j) * 16, 0, 16);
      o.mask[j] = __mmask16((1u << n_valid) - 1u);
    }
    // the next pair's residual, for the same rows
    const T* res;
    if constexpr (std::is_same_v<T, float>) res = o.residual;
    else res = o.res16;
    const T* ahead = res && nt + 2 < nt1 ? res + 32 : nullptr;
    const int64_t ahead_bytes = std::min<int64_t>(32, p.Nb - (nt + 2) * 16) * int64_t(sizeof(T));
    for (int64_t mi = 0; mi < nm; ++mi) {
      o.q = q[mi];
      const T* a = static_cast<const T*>(m[mi].a) + b * p.Kb;
      for (int64_t r0 = 0; r0 < m[mi].valid; r0 += 8) {
        const size_t n = size_t(std::min<int64_t>(8, m[mi].valid - r0));
        if (ahead) prefetch_residual(ahead, q[mi] + r0, int64_t(n), p.O, ahead_bytes);
        (pair ? two : one)[n - 1](a + r0 * lda, lda, tap_off, p.taps(), p.Kb, bt, b_next, o, r0);
      }
    }
  }
}

// Grouped convolutions by quads (pack_conv_f32): per 4 channels of a group,
// one 128-bit broadcast of a pixel's 4 values feeds its group's quads (4
// FMAs where a group has 16 outputs or more, 2 for groups of 8), instead of
// one 32-bit broadcast per FMA; each lane sums one channel of every 4, and
// the 4 lanes of an output are added at the end: (j0 + j2) + (j1 + j3).
// R rows (R <= 6: 4 R sums) of one 16-output tile whose groups are GPT.
template <int R, int GPT>
__attribute__((target("avx512f"))) void f32_quad_rows(const float* a, int64_t lda, const int64_t* tap_off,
                                                      int64_t taps, int64_t Cg, const float* wt, const RowsOut& o,
                                                      int64_t row0) {
  constexpr int QPG = 4 / GPT;  // quads per group
  __m512 acc[R][4];
  for (int r = 0; r < R; ++r)
    for (int q = 0; q < 4; ++q) acc[r][q] = _mm512_setzero_ps();
  const int64_t steps = Cg / 4;
  for (int64_t t = 0; t < taps; ++t) {
    const float* at = a + tap_off[t];
    const float* wp = wt + t * steps * 64;
    for (int64_t st = 0; st < steps; ++st, wp += 64) {
      __m512 w[4];
      for (int q = 0; q < 4; ++q) w[q] = _mm512_loadu_ps(wp + 16 * q);
#pragma GCC unroll 6
      for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
        for (int g = 0; g < GPT; ++g) {
          const __m512 x = _mm512_broadcast_f32x4(_mm_loadu_ps(at + r * lda + g * Cg + 4 * st));
#pragma GCC unroll 4
          for (int i = 0; i < QPG; ++i) acc[r][g * QPG + i] = _mm512_fmadd_ps(x, w[g * QPG + i], acc[r][g * QPG + i]);
        }
    }
  }
  // lane 4l + q of the sum is output 4q + l: back to lane = output
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  const __m512 bias = _mm512_loadu_ps(o.bias);
  const RowsMasks k(o);
  auto row = [&](auto rc) __attribute__((target("avx512f"), always_inline)) {
    constexpr int r = rc;
    const __m512 s01 = _mm512_add_ps(_mm512_shuffle_ps(acc[r][0], acc[r][1], _MM_SHUFFLE(1, 0, 1, 0)),
                                     _mm512_shuffle_ps(acc[r][0], acc[r][1], _MM_SHUFFLE(3, 2, 3, 2)));
    const __m512 s23 = _mm512_add_ps(_mm512_shuffle_ps(acc[r][2], acc[r][3], _MM_SHUFFLE(1, 0, 1, 0)),
                                     _mm512_shuffle_ps(acc[r][2], acc[r][3], _MM_SHUFFLE(3, 2, 3, 2)));
    const __m512 sum = _mm512_add_ps(_mm512_shuffle_ps(s01, s23, _MM_SHUFFLE(2, 0, 2, 0)),
                                     _mm512_shuffle_ps(s01, s23, _MM_SHUFFLE(3, 1, 3, 1)));
    put_f32(o, k, _mm512_add_ps(_mm512_maskz_permutexvar_ps(0xffff, order, sum), bias), o.q[row0 + r], 0);
  };
  each_f32(row, std::make_integer_sequence<int, R>());
}

using QuadRows = void (*)(const float*, int64_t, const int64_t*, int64_t, int64_t, const float*, const RowsOut&,
                          int64_t);
template <int GPT, int... R>
constexpr std::array<QuadRows, sizeof...(R)> quad_rows_table(std::integer_sequence<int, R...>) {
  return {&f32_quad_rows<R + 1, GPT>...};
}

// A quads item: one 16-output tile (block b), each M tile's rows in chunks
// of at most 6, as even as they go (13 = 5 + 4 + 4).
void f32_quads_item(const PackedConv& p, const MTile* m, int64_t nm, int64_t lda, const int64_t* tap_off, int64_t b,
                    const Epilogue& ep) {
  static constexpr auto g1 = quad_rows_table<1>(std::make_integer_sequence<int, 6>());
  static constexpr auto g2 = quad_rows_table<2>(std::make_integer_sequence<int, 6>());
  static constexpr auto g4 = quad_rows_table<4>(std::make_integer_sequence<int, 6>());
  const int64_t Og = p.O / p.G;
  const auto& fns = Og >= 16 ? g1 : Og == 8 ? g2 : g4;
  const float* wt = p.wf.data() + b * p.taps() * p.Kb * 16;
  const int64_t o0 = b * 16, c0 = quads_channel0(p, b);
  RowsOut o{ep.y_f32 + o0, nullptr, ep.residual_f32 ? ep.residual_f32 + o0 : nullptr, nullptr, p.bias.data() + o0,
            ep.relu, p.O, nullptr, {0xffff, 0}};
  for (int64_t mi = 0; mi < nm; ++mi) {
    int64_t q[16];
    Epilogue::Rows rows(ep, m[mi]);
    for (int64_t r = 0; r < m[mi].valid; ++r, rows.next()) q[r] = rows.live() ? rows.q : -1;
    o.q = q;
    const float* a = f32_a(m[mi]) + c0;
    const int64_t v = m[mi].valid, chunks = (v + 5) / 6;
    for (int64_t c = 0, r0 = 0; c < chunks; ++c) {
      const int64_t n = v / chunks + (c < v % chunks ? 1 : 0);
      fns[size_t(n - 1)](a + r0 * lda, lda, tap_off, p.taps(), p.Kb, wt, o, r0);
      r0 += n;
    }
  }
}

// --- float32 on AVX2 + FMA (x86-64 CPUs without AVX-512: Haswell to
// Alder Lake's cores, Zen 1-3) ---
// One row's 16 sums (v0, v1: bias added) of an output tile: the residual,
// ReLU, the store, as Epilogue's; m0, m1 the tile's valid outputs (the
// block's last tile may have fewer than 16: masked moves, slow on AMD but
// only there; ResNeXt's tiles are whole). Constant row indices and no call,
// as put_f32's: the sums stay in registers.
[[gnu::always_inline]] __attribute__((target("avx2,fma"))) inline void put_avx2(const RowsOut& o, __m256 v0,
                                                                                 __m256 v1, int64_t q, bool whole,
                                                                                 __m256i m0, __m256i m1) {
  if (q < 0) return;
  const int64_t at = q * o.O;
  const __m256 zero = _mm256_setzero_ps();
  if (o.residual) {
    v0 = _mm256_add_ps(v0, whole ? _mm256_loadu_ps(o.residual + at) : _mm256_maskload_ps(o.residual + at, m0));
    v1 = _mm256_add_ps(v1, whole ? _mm256_loadu_ps(o.residual + at + 8)
                                 : _mm256_maskload_ps(o.residual + at + 8, m1));
  }
  if (o.relu) v0 = _mm256_max_ps(zero, v0), v1 = _mm256_max_ps(zero, v1);  // NaN stays NaN
  if (whole) {
    _mm256_storeu_ps(o.y + at, v0);
    _mm256_storeu_ps(o.y + at + 8, v1);
    return;
  }
  _mm256_maskstore_ps(o.y + at, m0, v0);
  _mm256_maskstore_ps(o.y + at + 8, m1, v1);
}
template <class F, int... I>
[[gnu::always_inline]] __attribute__((target("avx2,fma"))) inline void each_avx2(F& f, std::integer_sequence<int, I...>) {
  (f(std::integral_constant<int, I>{}), ...);
}

// R rows (R <= 6) x one 16-output tile in 2 R ymm sums (of 16 registers):
// per channel, two loads of 8 weights and R broadcasts feed 2 R FMAs. Each
// lane's sum the same chain as the reference's (taps, then channels).
template <int R>
__attribute__((target("avx2,fma"))) void f32_rows_avx2(const float* a, int64_t lda, const int64_t* tap_off,
                                                       int64_t taps, int64_t K, const float* bt, const RowsOut& o,
                                                       int n_valid, int64_t row0) {
  __m256 acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  for (int64_t t = 0; t < taps; ++t) {
    const float* at = a + tap_off[t];
    const float* bp = bt + t * K * 16;
    for (int64_t k = 0; k < K; ++k, bp += 16) {
      const __m256 b0 = _mm256_loadu_ps(bp), b1 = _mm256_loadu_ps(bp + 8);
#pragma GCC unroll 6
      for (int r = 0; r < R; ++r) {
        const __m256 av = _mm256_broadcast_ss(at + r * lda + k);
        acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
        acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
      }
    }
  }
  const bool whole = n_valid == 16;
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), n = _mm256_set1_epi32(n_valid);
  const __m256i m0 = _mm256_cmpgt_epi32(n, lane),
                m1 = _mm256_cmpgt_epi32(n, _mm256_add_epi32(lane, _mm256_set1_epi32(8)));
  const __m256 bias0 = _mm256_maskload_ps(o.bias, m0), bias1 = _mm256_maskload_ps(o.bias + 8, m1);
  auto row = [&](auto rc) __attribute__((target("avx2,fma"), always_inline)) {
    constexpr int r = rc;
    put_avx2(o, _mm256_add_ps(acc[r][0], bias0), _mm256_add_ps(acc[r][1], bias1), o.q[row0 + r], whole, m0, m1);
  };
  each_avx2(row, std::make_integer_sequence<int, R>());
}

using Avx2Rows = void (*)(const float*, int64_t, const int64_t*, int64_t, int64_t, const float*, const RowsOut&, int,
                          int64_t);
template <int... R>
constexpr std::array<Avx2Rows, sizeof...(R)> avx2_rows_table(std::integer_sequence<int, R...>) {
  return {&f32_rows_avx2<R + 1>...};
}

// An AVX2 item: output tiles one at a time, each M tile's rows in chunks of
// at most 6, as even as they go (16 = 6 + 5 + 5, 13 = 5 + 4 + 4).
void avx2_rows_item(const PackedConv& p, const MTile* m, int64_t nm, int64_t lda, const int64_t* tap_off, int64_t b,
                    int64_t nt0, int64_t nt1, const Epilogue& ep) {
  static constexpr auto fns = avx2_rows_table(std::make_integer_sequence<int, 6>());
  int64_t q[kMBlock][16];
  for (int64_t mi = 0; mi < nm; ++mi) {
    Epilogue::Rows rows(ep, m[mi]);
    for (int64_t r = 0; r < m[mi].valid; ++r, rows.next()) q[mi][r] = rows.live() ? rows.q : -1;
  }
  for (int64_t nt = nt0; nt < nt1; ++nt) {
    const int64_t o0 = b * p.Nb + nt * 16;
    const int n_valid = int(std::min<int64_t>(16, p.Nb - nt * 16));
    RowsOut o{ep.y_f32 + o0, nullptr, ep.residual_f32 ? ep.residual_f32 + o0 : nullptr, nullptr, p.bias.data() + o0,
              ep.relu, p.O, nullptr, {}};
    for (int64_t mi = 0; mi < nm; ++mi) {
      o.q = q[mi];
      const float* a = f32_a(m[mi]) + b * p.Kb;
      const int64_t v = m[mi].valid, chunks = (v + 5) / 6;
      for (int64_t c = 0, r0 = 0; c < chunks; ++c) {
        const int64_t n = v / chunks + (c < v % chunks ? 1 : 0);
        if (o.residual && nt + 1 < nt1) prefetch_residual(o.residual + 16, q[mi] + r0, n, p.O, 64);
        fns[size_t(n - 1)](a + r0 * lda, lda, tap_off, p.taps(), p.Kb, f32_b(p, b, nt), o, n_valid, r0);
        r0 += n;
      }
    }
  }
}

// --- AMX: 2 M tiles x 2 output tiles per pass ---
struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0, reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

__attribute__((target("amx-tile,amx-bf16"))) void amx_configure(const PackedConv& p) {
  TileConfig cfg;
  for (int t = 0; t < 4; ++t) cfg.rows[t] = 16, cfg.colsb[t] = 64;           // C: 16 x 16 float32
  for (int t = 4; t < 6; ++t) cfg.rows[t] = 16, cfg.colsb[t] = uint16_t(2 * p.Kc);  // A: 16 x Kc bf16
  for (int t = 6; t < 8; ++t) cfg.rows[t] = uint8_t(p.Kc / 2), cfg.colsb[t] = 64;   // B: Kc/2 pairs x 16
  // GCC 12's _tile_loadconfig tells the compiler it reads 8 bytes, so the
  // stores to the rest of cfg were dropped (ldtilecfg then faulted on a
  // zero configuration): make them happen first.
  asm volatile("" : : "r"(&cfg) : "memory");
  _tile_loadconfig(&cfg);
}
__attribute__((target("amx-tile,amx-bf16"))) void amx_release() { _tile_release(); }

// A pass: two M tiles x two output tiles, over every tap and k chunk.
// Measured on this workplace's Sapphire Rapids (one core): the instruction
// alone reaches 1,560 GMAC/s; this loop with its tiles in L1 934, streamed
// from L2 400-440 (337 with A rows 2 KB apart, as NHWC gives them); this
// kernel in a 1x1 convolution of 16384 x 1024 x 1024, 258 (A from memory
// for each new block, the epilogue). Tried and not kept, none faster:
// blocking k so that B stays in L1 (accumulators parked in memory between
// blocks), A copied into contiguous tiles, software prefetch of the next
// tiles or of the next block's rows, pixel strides padded off powers of two
// (docs/cpu_inference.md).
__attribute__((target("amx-tile,amx-bf16"))) void amx_item(const PackedConv& p, const MTile* m, int64_t nm,
                                                             int64_t lda, const int64_t* tap_off, int64_t b,
                                                             int64_t nt0, int64_t nt1, const Epilogue& ep) {
  alignas(64) float tile[4][256];
  const int64_t stride = lda * 2;  // bytes between an A tile's rows
  // an output tile's B tiles, taps and k chunks in order, are consecutive
  // 1 KB tiles (packed so: the kernel streams them; tiles a power of two
  // apart would share cache sets)
  const int64_t b_step = (p.Kc / 2) * 32, b_half = p.taps() * p.kchunks * b_step;
  for (int64_t nt = nt0; nt < nt1; nt += 2) {
    const bool two_n = nt + 1 < nt1;
    const uint16_t* b_base = b_tile(p, b, 0, 0, nt);
    for (int64_t mi = 0; mi < nm; mi += 2) {
      const bool two_m = mi + 1 < nm;
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
      const uint16_t* bp = b_base;
      for (int64_t t = 0; t < p.taps(); ++t) {
        const uint16_t* a0 = bf16_a(m[mi]) + tap_off[t] + b * p.Kb;
        const uint16_t* a1 = two_m ? bf16_a(m[mi + 1]) + tap_off[t] + b * p.Kb : a0;
        for (int64_t kc = 0; kc < p.kchunks; ++kc, bp += b_step, a0 += p.Kc, a1 += p.Kc) {
          _tile_loadd(6, bp, 64);
          if (two_n) _tile_loadd(7, bp + b_half, 64);
          _tile_loadd(4, a0, stride);
          _tile_dpbf16ps(0, 4, 6);
          if (two_n) _tile_dpbf16ps(1, 4, 7);
          if (two_m) {
            _tile_loadd(5, a1, stride);
            _tile_dpbf16ps(2, 5, 6);
            if (two_n) _tile_dpbf16ps(3, 5, 7);
          }
        }
      }
      _tile_stored(0, tile[0], 64);
      _tile_stored(1, tile[1], 64);
      _tile_stored(2, tile[2], 64);
      _tile_stored(3, tile[3], 64);
      ep(tile[0], m[mi], b, nt);
      if (two_n) ep(tile[1], m[mi], b, nt + 1);
      if (two_m) {
        ep(tile[2], m[mi + 1], b, nt);
        if (two_n) ep(tile[3], m[mi + 1], b, nt + 1);
      }
    }
  }
}
#endif

}  // namespace

namespace {
// T: uint16_t (bfloat16) or float. bfloat16: isa is the kernel that runs;
// emulated, for the reference, the instruction whose order of additions it
// follows. float: f32_avx512 picks the AVX-512 kernel over the reference,
// and y_f32 is the output (y null), the residual float too.
template <typename T>
void run_conv(const PackedConv& p, const T* x, int64_t N, int64_t H, int64_t W, uint16_t* y, const T* residual,
              bool relu, Isa isa, Isa emulated, float* y_f32, int64_t x_pad, int64_t y_pad,
              F32Kernel f32k = F32Kernel::Reference) {
  constexpr bool kF32 = std::is_same_v<T, float>;
  ICH_CHECK(p.f32 == kF32, "conv: weights packed for ", p.f32 ? "float32" : "bfloat16", " given ",
            kF32 ? "float32" : "bfloat16", " activations");
  ICH_CHECK(kF32 || has_isa(isa), "bf16 conv: this CPU cannot run the ", isa_name(isa), " kernel");
  ICH_CHECK(has_f32_kernel(f32k), "conv: this CPU cannot run the float32 kernel ", f32_kernel_name(f32k));
  ICH_CHECK(!(p.quads && f32k == F32Kernel::Avx2), "conv: weights packed by quads given to the AVX2 kernel");
  ICH_CHECK(x_pad == 0 || (x_pad == p.pad && !(p.kh == 1 && p.kw == 1 && p.pad == 0)), "bf16 conv: an input with a ",
            x_pad, "-pixel border for a convolution padded by ", p.pad);
  const int64_t Ho = conv_out_size(H, p.kh, p.stride, p.pad), Wo = conv_out_size(W, p.kw, p.stride, p.pad);
  ICH_CHECK(Ho >= 1 && Wo >= 1, "bf16 conv: input ", H, "x", W, " is smaller than the kernel");
  const int64_t C = p.C;
  std::vector<MTile> tiles;
  std::vector<int64_t> tap_off(size_t(p.taps()), 0);
  // the zero-bordered (or subsampled) copy, with zero slack for the last
  // tile's rows; kept per thread between calls (no page faults, no zeroing
  // of what is overwritten anyway)
  thread_local std::vector<T> src;
  int64_t lda = C;
  const bool pointwise = p.kh == 1 && p.kw == 1 && p.pad == 0;
  if (pointwise) {
    const T* base = x;
    const int64_t M = N * Ho * Wo;
    // a strided input's pixels are gathered into a copy (with zero slack);
    // otherwise x is read in place, and only a last tile of fewer than 16
    // rows is staged (its rows past M must not be read past x's end)
    if (p.stride != 1) {
      src.resize(size_t((M + 16) * C));
      std::fill(src.begin() + M * C, src.end(), T(0));
      T* sp = src.data();  // (src is thread_local: the OpenMP workers' own are other vectors)
#pragma omp parallel for collapse(2) schedule(static)
      for (int64_t n = 0; n < N; ++n)
        for (int64_t oh = 0; oh < Ho; ++oh)
          for (int64_t ow = 0; ow < Wo; ++ow)
            std::copy_n(x + ((n * H + oh * p.stride) * W + ow * p.stride) * C, C,
                        sp + ((n * Ho + oh) * Wo + ow) * C);
      base = sp;
    }
    for (int64_t m0 = 0; m0 < M; m0 += 16) tiles.push_back({base + m0 * C, m0, std::min<int64_t>(16, M - m0)});
    if (p.stride == 1 && M % 16 != 0) {
      src.assign(size_t(16 * C), 0);
      std::copy_n(static_cast<const T*>(tiles.back().a), tiles.back().valid * C, src.begin());
      tiles.back().a = src.data();
    }
  } else {
    const int64_t Hp = H + 2 * p.pad, Wp = W + 2 * p.pad, body = N * Hp * Wp * C;
    // x given with its zero border (and slack, padded_size()) is read as it is
    const T* sp = x;
    if (x_pad == 0) {
      src.resize(size_t(body + (16 * p.stride + 1) * C));
      std::fill(src.begin() + body, src.end(), T(0));
      T* dst = src.data();
      sp = dst;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t hp = 0; hp < Hp; ++hp) {
        T* row = dst + (n * Hp + hp) * Wp * C;
        const int64_t h = hp - p.pad;
        if (h < 0 || h >= H) {
          std::fill(row, row + Wp * C, T(0));
          continue;
        }
        std::fill(row, row + p.pad * C, T(0));
        std::copy_n(x + (n * H + h) * W * C, W * C, row + p.pad * C);
        std::fill(row + (p.pad + W) * C, row + Wp * C, T(0));
      }
    }
    for (int64_t i = 0; i < p.kh; ++i)
      for (int64_t j = 0; j < p.kw; ++j) tap_off[size_t(i * p.kw + j)] = (i * Wp + j) * C;
    lda = p.stride * C;
    // Stride 1, where it makes fewer tiles: a tile is 16 consecutive
    // positions of the output laid on the padded input's rows (pitch Wp);
    // the Wp - Wo positions at each row's end are computed and dropped.
    // Measured (batch 32, 200 px): layer4's grouped 3x3 (rows of 7, which
    // filled 7 of a tile's 16 rows) 28 -> 21.5 ms, layer1's (rows of 50)
    // 50 -> 46; layer3's rows of 13 make as many tiles either way, and row
    // by row was 5% faster there. The last tile reads at most 17 pixels past
    // its image (the slack above).
    // The AVX-512 kernels compute a tile's rows 8 at a time and then only
    // those it has: row by row wastes nothing where a row's last chunk is
    // long enough (5-7 rows: 15 sums or more) or the row is one chunk
    // (layer3's 13 = 8 + 5, layer4's 7); layer2's 25 = 3 x 8 + 1 and layer1's
    // 50 = 6 x 8 + 2 run laid on the padded rows (7% and 4% computed and
    // dropped).
    const int64_t span = (Ho - 1) * Wp + Wo;
    const bool rows8 = kF32 ? f32k == F32Kernel::Avx512 : isa == Isa::Avx512Bf16;
    const bool span_tiles = rows8 ? Wo > 8 && Wo % 8 != 0 && Wo % 8 < 5 : (span + 15) / 16 < Ho * ((Wo + 15) / 16);
    if (p.stride == 1 && span_tiles) {
      for (int64_t n = 0; n < N; ++n)
        for (int64_t p0 = 0; p0 < span; p0 += 16)
          tiles.push_back({sp + (n * Hp * Wp + p0) * C, (n * Ho + p0 / Wp) * Wo, std::min<int64_t>(16, span - p0), Wp,
                           p0 % Wp});
    } else {
      for (int64_t n = 0; n < N; ++n)
        for (int64_t oh = 0; oh < Ho; ++oh)
          for (int64_t ow0 = 0; ow0 < Wo; ow0 += 16)
            tiles.push_back({sp + ((n * Hp + oh * p.stride) * Wp + ow0 * p.stride) * C, (n * Ho + oh) * Wo + ow0,
                             std::min<int64_t>(16, Wo - ow0)});
    }
  }
  // (the AVX-512 float32 kernel applies the epilogue on its registers; the
  // float32 reference calls the scalar one)
  Epilogue ep{p, y, y_f32, nullptr, nullptr, relu, !kF32 && isa != Isa::Reference};
  if constexpr (kF32) ep.residual_f32 = residual;
  else ep.residual = residual;
  ep.Ho = Ho, ep.Wo = Wo, ep.y_pad = y_pad;
  // items: (range of output tiles, block of M tiles, block of groups), the
  // range slowest: the B tiles of a range (at most ~1 MB) stay in the L2 of
  // the core that sweeps all the M blocks over them. M blocks outermost
  // cycled a 2-8 MB weight matrix through L2 for every 128 pixels, and the
  // kernel read B from L3 (measured: 230 GMAC/s a core on a 1024 x 1024 1x1
  // convolution; the loop alone, from L2, 436). Ranges are halved further
  // while the threads would have too few items (a single image's layer4).
  const int64_t mblocks = (int64_t(tiles.size()) + kMBlock - 1) / kMBlock;
  const int64_t npairs = (p.ntiles + 1) / 2;
  const int64_t pair_bytes = 2 * p.taps() * p.Kb * 16 * int64_t(sizeof(T));
  int64_t per = std::clamp<int64_t>((int64_t(1) << 20) / pair_bytes, 1, npairs);
  while (per > 1 && mblocks * p.blocks * ((npairs + per - 1) / per) < 4 * omp_get_max_threads()) per /= 2;
  const int64_t nsplit = (npairs + per - 1) / per;
  const int64_t items = mblocks * p.blocks * nsplit;
#pragma omp parallel
  {
#ifdef ICH_X86
    if (!kF32 && isa == Isa::Amx) amx_configure(p);
#endif
#pragma omp for schedule(static)
    for (int64_t it = 0; it < items; ++it) {
      const int64_t ns = it / (mblocks * p.blocks), mb = (it / p.blocks) % mblocks, b = it % p.blocks;
      const MTile* m = &tiles[size_t(mb * kMBlock)];
      const int64_t nm = std::min<int64_t>(kMBlock, int64_t(tiles.size()) - mb * kMBlock);
      const int64_t nt0 = 2 * ns * per, nt1 = std::min(p.ntiles, 2 * (ns + 1) * per);
      if constexpr (kF32) {
#ifdef ICH_X86
        if (f32k == F32Kernel::Avx512 && p.quads) {
          f32_quads_item(p, m, nm, lda, tap_off.data(), b, ep);
          continue;
        }
        if (f32k == F32Kernel::Avx2) {
          avx2_rows_item(p, m, nm, lda, tap_off.data(), b, nt0, nt1, ep);
          continue;
        }
        if (f32k == F32Kernel::Avx512) {
          avx512_rows_item<float>(p, m, nm, lda, tap_off.data(), b, nt0, nt1, ep);
          continue;
        }
#endif
        reference_f32_item(p, m, nm, lda, tap_off.data(), b, nt0, nt1, ep);
        continue;
      }
#ifdef ICH_X86
      if (isa == Isa::Amx) {
        amx_item(p, m, nm, lda, tap_off.data(), b, nt0, nt1, ep);
        continue;
      }
      if (isa == Isa::Avx512Bf16) {
        avx512_rows_item<uint16_t>(p, m, nm, lda, tap_off.data(), b, nt0, nt1, ep);
        continue;
      }
#endif
      reference_item(p, m, nm, lda, tap_off.data(), b, nt0, nt1, ep, emulated == Isa::Avx512Bf16);
    }
#ifdef ICH_X86
    if (!kF32 && isa == Isa::Amx) amx_release();
#endif
  }
}
}  // namespace

void conv_forward(const PackedConv& p, const uint16_t* x, int64_t N, int64_t H, int64_t W, uint16_t* y,
                  const uint16_t* residual, bool relu, Isa isa, float* y_f32, int64_t x_pad, int64_t y_pad) {
  run_conv(p, x, N, H, W, y, residual, relu, isa, Isa::Amx, y_f32, x_pad, y_pad);
}

void conv_forward_f32(const PackedConv& p, const float* x, int64_t N, int64_t H, int64_t W, float* y,
                      const float* residual, bool relu, F32Kernel kernel, int64_t x_pad, int64_t y_pad) {
  run_conv(p, x, N, H, W, nullptr, residual, relu, Isa::Reference, Isa::Reference, y, x_pad, y_pad, kernel);
}

int64_t padded_size(int64_t N, int64_t H, int64_t W, int64_t C, int64_t pad) {
  return N * (H + 2 * pad) * (W + 2 * pad) * C + 33 * C;  // + the last tile's slack (16 rows at stride 2, +1)
}

void conv_forward_emulating(const PackedConv& p, const uint16_t* x, int64_t N, int64_t H, int64_t W, uint16_t* y,
                            const uint16_t* residual, bool relu, Isa emulated, float* y_f32) {
  run_conv(p, x, N, H, W, y, residual, relu, Isa::Reference, emulated, y_f32, 0, 0);
}

}  // namespace ich::cpu::bf16
