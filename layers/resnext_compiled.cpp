// resnext_compiled.cpp: the compiled ResNeXt of resnext_compiled.h, one
// body for both element types (uint16_t: bfloat16 bits; float).
#include "layers/resnext_compiled.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <type_traits>
#include <cstdlib>

#include "engine/autograd.h"
#include "engine/half.h"
#include "engine/profile.h"

namespace ich {

using cpu::bf16::conv_out_size;
using cpu::bf16::PackedConv;

namespace {

using StateMap = std::map<std::string, Tensor>;

std::vector<double> values(const StateMap& s, const std::string& name) {
  auto it = s.find(name);
  ICH_CHECK(it != s.end(), "compiled inference: the model has no ", name);
  return it->second.to_vector();
}

// conv `conv` (no bias) followed by batch norm `bn`, folded: w gamma/sd per
// output channel, bias beta - mean gamma/sd (float64, then float32). The
// weights come back flattened (O, C/G * kh * kw), for pack_conv or the stem.
void fold(const StateMap& s, const std::string& conv, const std::string& bn, std::vector<float>& w,
          std::vector<float>& bias, Shape& shape) {
  auto it = s.find(conv + ".weight");
  ICH_CHECK(it != s.end(), "compiled inference: the model has no ", conv, ".weight");
  shape = it->second.shape();
  const std::vector<double> wv = it->second.to_vector(), gamma = values(s, bn + ".weight"),
                            beta = values(s, bn + ".bias"), mean = values(s, bn + ".running_mean"),
                            var = values(s, bn + ".running_var");
  const int64_t O = shape[0], per = int64_t(wv.size()) / O;
  w.resize(wv.size());
  bias.resize(size_t(O));
  for (int64_t o = 0; o < O; ++o) {
    const double scale = gamma[size_t(o)] / std::sqrt(var[size_t(o)] + 1e-5);
    for (int64_t i = 0; i < per; ++i) w[size_t(o * per + i)] = float(wv[size_t(o * per + i)] * scale);
    bias[size_t(o)] = float(beta[size_t(o)] - mean[size_t(o)] * scale);
  }
}

// f32: the float32 kernel the weights are packed for; none: bfloat16
using F32For = std::optional<cpu::bf16::F32Kernel>;
PackedConv pack(const F32For& f32, const float* w, const float* bias, int64_t O, int64_t C, int64_t G, int64_t kh,
                int64_t kw, int64_t stride, int64_t pad) {
  return f32 ? cpu::bf16::pack_conv_f32(w, bias, O, C, G, kh, kw, stride, pad, *f32)
             : cpu::bf16::pack_conv(w, bias, O, C, G, kh, kw, stride, pad);
}

PackedConv packed(const StateMap& s, const std::string& conv, const std::string& bn, int64_t groups, int64_t stride,
                  int64_t pad, const F32For& f32) {
  std::vector<float> w, b;
  Shape sh;
  fold(s, conv, bn, w, b, sh);
  return pack(f32, w.data(), b.data(), sh[0], sh[1] * groups, groups, sh[2], sh[3], stride, pad);
}

// An element's value and back: bfloat16 bits (the max of bfloat16 values is
// one of them, so max pooling's float compare and the way back are exact)
// or float.
float value(uint16_t h) { return bf16_bits_to_float(h); }
float value(float v) { return v; }
template <typename T>
T element(float v) {
  if constexpr (std::is_same_v<T, float>) return v;
  else return uint16_t(float_bits(v) >> 16);  // (only for values that are bfloat16)
}

// max pool 3x3, stride 2, padding 1 (outside counts as -inf, and NaN wins,
// as in PyTorch)
template <typename T>
void max_pool(const T* x, int64_t N, int64_t H, int64_t W, int64_t C, T* y) {
  const int64_t Ho = conv_out_size(H, 3, 2, 1), Wo = conv_out_size(W, 3, 2, 1);
#pragma omp parallel
  {
    std::vector<float> m(static_cast<size_t>(C));
#pragma omp for collapse(2) schedule(static)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t oh = 0; oh < Ho; ++oh)
        for (int64_t ow = 0; ow < Wo; ++ow) {
          std::fill(m.begin(), m.end(), -std::numeric_limits<float>::infinity());
          for (int64_t i = 0; i < 3; ++i)
            for (int64_t j = 0; j < 3; ++j) {
              const int64_t ih = oh * 2 - 1 + i, iw = ow * 2 - 1 + j;
              if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
              const T* v = x + ((n * H + ih) * W + iw) * C;
              for (int64_t c = 0; c < C; ++c) {
                const float f = value(v[c]);
                m[size_t(c)] = (f > m[size_t(c)] || f != f) ? f : m[size_t(c)];
              }
            }
          T* out = y + ((n * Ho + oh) * Wo + ow) * C;
          for (int64_t c = 0; c < C; ++c) out[c] = element<T>(m[size_t(c)]);
        }
  }
}

// The zero border (1 pixel) and the slack of an activation made in place for
// a 3x3 convolution (cpu::bf16::padded_size): its interior is overwritten by
// the convolution before, the rest must be zero whatever the buffer held.
template <typename T>
void zero_border(T* x, int64_t N, int64_t H, int64_t W, int64_t C) {
  const int64_t Hp = H + 2, Wp = W + 2;
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    T* img = x + n * Hp * Wp * C;
    std::fill(img, img + Wp * C, T(0));
    std::fill(img + (Hp - 1) * Wp * C, img + Hp * Wp * C, T(0));
    for (int64_t h = 1; h <= H; ++h) {
      std::fill(img + h * Wp * C, img + (h * Wp + 1) * C, T(0));
      std::fill(img + (h * Wp + Wp - 1) * C, img + (h + 1) * Wp * C, T(0));
    }
  }
  const int64_t body = N * Hp * Wp * C;
  std::fill(x + body, x + cpu::bf16::padded_size(N, H, W, C, 1), T(0));
}

// The profiler's names (ich-bench-train --profile): each kind of
// convolution per stage, so that the table says where in the network the
// time goes. (Static: a profile entry keeps the pointer.)
const char* const kConvNames[2][4][4] = {
    {{"conv2d_bf16_1x1 layer1", "conv2d_bf16_3x3_grouped layer1", "conv2d_bf16_1x1_downsample layer1",
      "conv2d_bf16_1x1_add_relu layer1"},
     {"conv2d_bf16_1x1 layer2", "conv2d_bf16_3x3_grouped layer2", "conv2d_bf16_1x1_downsample layer2",
      "conv2d_bf16_1x1_add_relu layer2"},
     {"conv2d_bf16_1x1 layer3", "conv2d_bf16_3x3_grouped layer3", "conv2d_bf16_1x1_downsample layer3",
      "conv2d_bf16_1x1_add_relu layer3"},
     {"conv2d_bf16_1x1 layer4", "conv2d_bf16_3x3_grouped layer4", "conv2d_bf16_1x1_downsample layer4",
      "conv2d_bf16_1x1_add_relu layer4"}},
    {{"conv2d_f32_1x1 layer1", "conv2d_f32_3x3_grouped layer1", "conv2d_f32_1x1_downsample layer1",
      "conv2d_f32_1x1_add_relu layer1"},
     {"conv2d_f32_1x1 layer2", "conv2d_f32_3x3_grouped layer2", "conv2d_f32_1x1_downsample layer2",
      "conv2d_f32_1x1_add_relu layer2"},
     {"conv2d_f32_1x1 layer3", "conv2d_f32_3x3_grouped layer3", "conv2d_f32_1x1_downsample layer3",
      "conv2d_f32_1x1_add_relu layer3"},
     {"conv2d_f32_1x1 layer4", "conv2d_f32_3x3_grouped layer4", "conv2d_f32_1x1_downsample layer4",
      "conv2d_f32_1x1_add_relu layer4"}}};

// `v` with room for n values, and where they start: 32 bytes past a
// 64-byte boundary. For the grouped 3x3 convolutions' input: they read a
// group's 32-128 bytes of each pixel, pixels 1-4 KB apart (so all in the
// same few L1 sets, likely why), and measured 8-15% faster where that input
// starts off a cache line than on one (Zen 5, batch 32, 200 px: layer3's
// 23 float32 ones 200-206 -> 184-190 ms a batch, bfloat16 ones 110 -> 94;
// 16 bytes off like 32). malloc's 16-byte alignment made it chance.
template <typename T>
T* half_line(std::vector<T>& v, size_t n) {
  v.resize(n + 64 / sizeof(T));
  const uintptr_t a = reinterpret_cast<uintptr_t>(v.data());
  return reinterpret_cast<T*>(((a + 31) & ~uintptr_t(63)) + 32);
}

}  // namespace

ResNeXtCompiled::ResNeXtCompiled(const ResNeXt& model, cpu::bf16::Isa isa) : isa_(isa) {
  ICH_CHECK(cpu::bf16::has_isa(isa), "bf16 inference: this CPU cannot run the ", cpu::bf16::isa_name(isa), " kernels");
  compile(model);
}

ResNeXtCompiled::ResNeXtCompiled(const ResNeXt& model, cpu::bf16::F32Kernel kernel) : f32_(true), f32_kernel_(kernel) {
  ICH_CHECK(cpu::bf16::has_f32_kernel(kernel), "compiled float32 inference: this CPU cannot run the ",
            cpu::bf16::f32_kernel_name(kernel), " kernel");
  compile(model);
}

std::string ResNeXtCompiled::kernel_name() const {
  if (f32_) return cpu::bf16::f32_kernel_name(f32_kernel_);
  return cpu::bf16::isa_name(isa_);
}

ResNeXtCompiled::Front ResNeXtCompiled::front(int64_t H, int64_t W) const {
  Front f;
  while (f.blocks < blocks_.size() && blocks_[f.blocks].stage == 0) ++f.blocks;
  if (f.blocks < blocks_.size()) ++f.blocks;  // layer2's first block (it reads layer1's output)
  f.h = conv_out_size(conv_out_size(H, 7, 2, 3), 3, 2, 1), f.w = conv_out_size(conv_out_size(W, 7, 2, 3), 3, 2, 1);
  f.c = stem_out_;
  f.largest = f.h * f.w * f.c;
  f.last_down = f.blocks;
  for (size_t i = 0; i < f.blocks; ++i)
    if (blocks_[i].has_down) f.last_down = i;
  for (size_t i = 0; i < f.blocks; ++i) {
    const Block& b = blocks_[i];
    f.largest = std::max(f.largest, (f.h + 2) * (f.w + 2) * b.conv1.O);  // conv1's output, in its zero border
    f.h = conv_out_size(f.h, 3, b.conv2.stride, 1), f.w = conv_out_size(f.w, 3, b.conv2.stride, 1);
    f.c = b.conv3.O;
    f.largest = std::max(f.largest, f.h * f.w * f.c);
    if (b.has_down && i != f.last_down) f.mid = std::max(f.mid, f.h * f.w * f.c);
  }
  return f;
}

int64_t ResNeXtCompiled::front_images(const Front& f, int64_t N) const {
  return std::clamp<int64_t>(front_bytes_ / (f.largest * (f32_ ? 4 : 2)), 1, std::max<int64_t>(N, 1));
}

int64_t ResNeXtCompiled::front_images(int64_t N, int64_t H, int64_t W) const { return front_images(front(H, W), N); }

void ResNeXtCompiled::compile(const ResNeXt& model) {
  const F32For f32 = f32_ ? F32For(f32_kernel_) : std::nullopt;
  StateMap s;
  for (const auto& [n, t] : model.state_dict()) s.emplace(n, t.to(Device::cpu()));
  const ResNeXtConfig& cfg = model.config();
  in_channels_ = cfg.in_channels;
  {  // the stem: 7x7/2 as one product over (c, i, j) (bfloat16: k padded to a multiple of 32)
    std::vector<float> w, b;
    Shape sh;
    fold(s, "conv1", "bn1", w, b, sh);
    stem_out_ = sh[0];
    const int64_t k = sh[1] * sh[2] * sh[3];
    stem_k_ = f32_ ? k : (k + 31) / 32 * 32;
    std::vector<float> wp(size_t(stem_out_ * stem_k_), 0.0f);
    for (int64_t o = 0; o < stem_out_; ++o) std::copy_n(w.data() + o * k, k, wp.data() + o * stem_k_);
    stem_ = pack(f32, wp.data(), b.data(), stem_out_, stem_k_, 1, 1, 1, 1, 0);
  }
  for (int st = 0; st < 4; ++st)
    for (int64_t k = 0; k < cfg.blocks[size_t(st)]; ++k) {
      const std::string p = "layer" + std::to_string(st + 1) + "." + std::to_string(k) + ".";
      const int64_t stride = (st > 0 && k == 0) ? 2 : 1;
      Block b;
      b.conv1 = packed(s, p + "conv1", p + "bn1", 1, 1, 0, f32);
      b.conv2 = packed(s, p + "conv2", p + "bn2", cfg.groups, stride, 1, f32);
      b.conv3 = packed(s, p + "conv3", p + "bn3", 1, 1, 0, f32);
      b.has_down = s.count(p + "downsample.0.weight") > 0;
      b.stage = st;
      if (b.has_down) b.down = packed(s, p + "downsample.0", p + "downsample.1", 1, stride, 0, f32);
      blocks_.push_back(std::move(b));
    }
}

Tensor ResNeXtCompiled::features(const Tensor& x) const { return f32_ ? run<float>(x) : run<uint16_t>(x); }

template <typename T>
Tensor ResNeXtCompiled::run(const Tensor& x_in) const {
  constexpr bool kF32 = std::is_same_v<T, float>;
  ICH_CHECK(x_in.dim() == 4 && x_in.size(1) == in_channels_ && x_in.device().is_cpu() &&
                x_in.dtype() == DType::Float32,
            "compiled inference: input must be float32 (N,", in_channels_, ",H,W) on the CPU, got ", x_in.str());
  const Tensor x = x_in.contiguous();
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t Ho = conv_out_size(H, 7, 2, 3), Wo = conv_out_size(W, 7, 2, 3);
  ICH_CHECK(Ho >= 2 && Wo >= 2, "compiled inference: input ", H, "x", W, " is too small");
  // one convolution with this model's kernels
  auto conv = [&](const PackedConv& p, const T* in, int64_t n, int64_t h, int64_t w, T* y, const T* residual,
                  bool relu, int64_t x_pad = 0, int64_t y_pad = 0) {
    if constexpr (kF32) cpu::bf16::conv_forward_f32(p, in, n, h, w, y, residual, relu, f32_kernel_, x_pad, y_pad);
    else cpu::bf16::conv_forward(p, in, n, h, w, y, residual, relu, isa_, nullptr, x_pad, y_pad);
  };
  const Device cpu = Device::cpu();
  std::optional<profile::Scope> scope;
  // buffers kept per thread between calls: a batch's activations are tens
  // of MB, and fresh ones cost page faults on every forward
  thread_local std::vector<T> xb, cols, stem, pool, mid, cur, t1, t2, down;
  // (thread_local: inside the OpenMP loops below only raw pointers to them,
  // a worker thread's own instances are other, empty vectors)
  // the input (rounded to bfloat16 once) inside a zero border of 3 pixels,
  // so that each (row, channel, tap row) of the im2col is 7 consecutive
  // values copied without a bounds check
  const int64_t Hp = H + 6, Wp = W + 6;
  xb.assign(size_t(N * C * Hp * Wp), T(0));
  T* xbp = xb.data();
  const float* xp = x.data<float>();
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t h = 0; h < H; ++h) {
        const float* src = xp + ((n * C + c) * H + h) * W;
        T* dst = xbp + ((n * C + c) * Hp + h + 3) * Wp + 3;
        for (int64_t w = 0; w < W; ++w) {
          if constexpr (kF32) dst[w] = src[w];
          else dst[w] = float_to_bf16_bits(src[w]);
        }
      }
  // one bottleneck block on n images of h x w: x is its input and residual;
  // the output goes over x where the block keeps the shape, into `out`
  // where it has a downsample; returns where it went
  auto block = [&](const Block& b, T* x, T* out, int64_t n, int64_t h, int64_t w) {
    const int64_t h2 = conv_out_size(h, 3, b.conv2.stride, 1), w2 = conv_out_size(w, 3, b.conv2.stride, 1);
    // conv1 writes inside the zero border conv2 reads (no copy between them)
    T* t1p = half_line(t1, size_t(cpu::bf16::padded_size(n, h, w, b.conv1.O, 1)));
    const char* const* names = kConvNames[kF32 ? 1 : 0][b.stage];
    scope.emplace(names[0], cpu);
    zero_border(t1p, n, h, w, b.conv1.O);
    conv(b.conv1, x, n, h, w, t1p, nullptr, true, 0, 1);
    t2.resize(size_t(n * h2 * w2 * b.conv2.O));
    scope.emplace(names[1], cpu);
    conv(b.conv2, t1p, n, h, w, t2.data(), nullptr, true, 1, 0);
    T* y = x;
    if (b.has_down) {
      scope.emplace(names[2], cpu);
      conv(b.down, x, n, h, w, out, nullptr, false);
      y = out;
    }
    // the last 1x1 writes over its residual (each output after reading its
    // own residual, in the same thread): no third buffer of the block's
    // size, and no write allocation of fresh lines (the residual's are in
    // cache, just read)
    scope.emplace(names[3], cpu);
    conv(b.conv3, t2.data(), n, h2, w2, y, y, true);
    return y;
  };
  // The front (the stem, max pooling, layer1 and layer2's first block)
  // runs a few images at a time (front_images), into the batch's buffer for
  // the front's output: its activations are the largest (layer1's 82 MB
  // each in float32 for 32 images of 200 px, layer2's first 1x1's 177 MB,
  // beyond the L3 cache) and its convolutions the shortest sums, so that a
  // whole batch's went to memory and back between each two convolutions.
  // Measured on Zen 5 (float32, 32 images of 200 px; two images at a time):
  // layer1 195 -> 146 ms a batch (its grouped 3x3 convolutions from 80 to
  // 137 GMAC/s), layer2's grouped 3x3s 44 -> 35 ms; the model 16.3 -> 16.9
  // images/s; bfloat16 within the noise. Later layers run on the whole
  // batch (their weights, 2-9 MB a convolution, would be read again for
  // every chunk). Within a chunk, the last block with a downsample writes
  // into the batch's buffer, one before it (layer1's first) into `mid`,
  // blocks without one over their input.
  const Front fr = front(H, W);
  const int64_t h1 = conv_out_size(Ho, 3, 2, 1), w1 = conv_out_size(Wo, 3, 2, 1);
  const int64_t chunk = front_images(fr, N), k = C * 49;
  cols.resize(size_t(chunk * Ho * Wo * stem_k_));
  stem.resize(size_t(chunk * Ho * Wo * stem_out_));
  pool.resize(size_t(chunk * h1 * w1 * stem_out_));
  mid.resize(size_t(chunk * fr.mid));
  cur.resize(size_t(N * fr.h * fr.w * fr.c));
  for (int64_t n0 = 0; n0 < N; n0 += chunk) {
    const int64_t nc = std::min(chunk, N - n0);
    // stem: im2col rows (n, oh, ow) x (c, i, j)
    scope.emplace(kF32 ? "conv2d_f32_stem" : "conv2d_bf16_stem", cpu);
    T* colp = cols.data();
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < nc; ++n)
      for (int64_t oh = 0; oh < Ho; ++oh)
        for (int64_t ow = 0; ow < Wo; ++ow) {
          T* row = colp + ((n * Ho + oh) * Wo + ow) * stem_k_;
          for (int64_t c = 0; c < C; ++c)
            for (int64_t i = 0; i < 7; ++i)
              std::memcpy(row + (c * 7 + i) * 7, xbp + (((n0 + n) * C + c) * Hp + oh * 2 + i) * Wp + ow * 2,
                          7 * sizeof(T));
          std::fill(row + k, row + stem_k_, T(0));
        }
    conv(stem_, cols.data(), nc, Ho * Wo, 1, stem.data(), nullptr, true);
    scope.emplace(kF32 ? "max_pool2d_f32" : "max_pool2d_bf16", cpu);
    max_pool(stem.data(), nc, Ho, Wo, stem_out_, pool.data());
    T* dst = cur.data() + n0 * fr.h * fr.w * fr.c;
    T* at = pool.data();
    int64_t h = h1, w = w1;
    for (size_t i = 0; i < fr.blocks; ++i) {
      const Block& b = blocks_[i];
      T* out = i == fr.last_down ? dst : mid.data();
      // (one without a downsample writes over its input: not the pooled stem's, which has other channels;
      // one with a downsample before the last reads the pooled stem, not `mid`, which it writes)
      ICH_CHECK(b.has_down ? (i == fr.last_down || at == pool.data()) : at != pool.data(),
                "compiled inference: the front's blocks do not fit its buffers (a first block without a "
                "downsample, or two downsamples before layer2's)");
      at = block(b, at, out, nc, h, w);
      h = conv_out_size(h, 3, b.conv2.stride, 1), w = conv_out_size(w, 3, b.conv2.stride, 1);
    }
    if (at != dst) std::copy_n(at, nc * fr.h * fr.w * fr.c, dst);
  }
  int64_t h = fr.h, w = fr.w, c = fr.c;
  for (size_t i = fr.blocks; i < blocks_.size(); ++i) {
    const Block& b = blocks_[i];
    const int64_t h2 = conv_out_size(h, 3, b.conv2.stride, 1), w2 = conv_out_size(w, 3, b.conv2.stride, 1);
    if (b.has_down) down.resize(size_t(N * h2 * w2 * b.down.O));
    if (block(b, cur.data(), down.data(), N, h, w) != cur.data()) std::swap(cur, down);
    h = h2, w = w2, c = b.conv3.O;
  }
  scope.emplace(kF32 ? "layout_nhwc_f32_to_nchw_f32" : "layout_nhwc_bf16_to_nchw_f32", cpu);
  Tensor f = Tensor::empty({N, c, h, w}, DType::Float32);
  float* fp = f.data<float>();
  const T* last = cur.data();
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t q = 0; q < h * w; ++q) fp[(n * c + ch) * h * w + q] = value(last[(n * h * w + q) * c + ch]);
  return f;
}

void apply_inference_precision(ResNeXt& model, const std::string& precision, Device device) {
  ICH_CHECK(precision == "fp32" || precision == "bf16", "--precision ", precision, ": expected fp32 or bf16");
  if (precision == "fp32") {
    const char* env = std::getenv("ICH_CPU_F32");
    const std::string e = env ? env : "";
    ICH_CHECK(e.empty() || e == "engine" || e == "avx512" || e == "avx2" || e == "reference", "ICH_CPU_F32=", e,
              ": expected engine, avx512, avx2 or reference");
    using cpu::bf16::F32Kernel;
    const F32Kernel kernel = e == "reference" ? F32Kernel::Reference
                             : e == "avx512"  ? F32Kernel::Avx512
                             : e == "avx2"    ? F32Kernel::Avx2
                                              : cpu::bf16::best_f32_kernel();
    // the layer-by-layer engine on a GPU, when asked, and on a CPU with
    // neither AVX-512F nor AVX2 + FMA
    if (!device.is_cpu() || e == "engine" || (e.empty() && kernel == F32Kernel::Reference)) {
      model.use_compiled_inference(nullptr);
      return;
    }
    model.use_compiled_inference(std::make_shared<const ResNeXtCompiled>(model, kernel));
    return;
  }
  ICH_CHECK(device.is_cpu(), "--precision bf16: the bfloat16 inference path is the CPU's (AMX, AVX512-BF16); on ",
            device.str(), " run with --precision fp32");
  const std::string why = cpu::bf16::missing_hardware_reason();
  ICH_CHECK(why.empty(), "--precision bf16: ", why, "; run with --precision fp32");
  model.use_compiled_inference(std::make_shared<const ResNeXtCompiled>(model));
}

}  // namespace ich
