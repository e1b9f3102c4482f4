// conv2d_direct.cpp: the direct grouped 3x3 kernels (see conv2d_direct.h for
// what each computes and in which order it sums).
//
// Forward: one (image, group) pair at a time. Its input planes are copied
// once with a zero border (and slack after the last row, so that a run of
// kPix outputs never branches at the edge); the group's weights are laid out
// tap-major, wt[(c*9 + i*3 + j)*Og + o], so that for each output row kPix
// outputs x kOut output channels are held in registers, and each input value
// is broadcast once per (channel, tap) into kOut channels' multiply-adds
// (vectorised along the output channels, which the deep layers' 7-13 pixel
// rows could not fill).
//
// Backward data (stride 1) is that same kernel run on dy, with the weights
// transposed per group and flipped: wt[(o*9 + t)*Cg + c] = w[o,c,8-t].
//
// Backward filter: one group at a time, over every image in order (so no
// two threads ever add into the same weight, and the result does not depend
// on the thread count). Per image, dy's group is transposed to (pixel, Og)
// so that kOut output channels load as one vector; for each input channel
// and block of rows the 9 taps x kOut channels are summed in registers, each
// input value broadcast into its tap's kOut multiply-adds.
//
// Compiled for AVX-512, AVX with FMA and baseline x86-64, picked at load time
// (target_clones).
#include "engine/cpu/conv2d_direct.h"

#include <omp.h>

#include <algorithm>
#include <vector>

namespace ich::cpu {

namespace {

constexpr int64_t kPix = 8, kOutMax = 16;
// The filter gradient's register sums cover about this many pixels (whole
// rows) before they are added to the image's sum.
constexpr int64_t kFilterBlock = 64;

// By CPU feature, not model ("arch=haswell" clones are picked by model, and
// an AMD EPYC got the baseline one); x86-64 only, one build elsewhere.
// Not under ThreadSanitizer: the clones' resolver runs while the dynamic
// loader relocates, before TSan's runtime is up, and its instrumented code
// crashes there (scripts/sanitize_thread.sh).
#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__)
#define ICH_CPU_CLONES __attribute__((target_clones("avx512f", "fma", "default")))
#else
#define ICH_CPU_CLONES
#endif

// Padded planes of one (image, group), zero border, with slack for the last
// vector's reads past the row.
int64_t pad_size(const ConvGeom& g) { return g.Cg * (g.H + 2) * (g.W + 2) + kPix * g.p.stride_w + 4; }

// Copies the group's Cg planes (H*W each) inside the zero border of pad.
template <class T> void fill_padded(const T* x_c, const ConvGeom& g, T* pad) {
  const int64_t Hp = g.H + 2, Wp = g.W + 2;
  for (int64_t c = 0; c < g.Cg; ++c)
    for (int64_t h = 0; h < g.H; ++h)
      std::copy(x_c + (c * g.H + h) * g.W, x_c + (c * g.H + h + 1) * g.W, pad + (c * Hp + h + 1) * Wp + 1);
}

template <class T, int64_t s, int64_t kOut>
__attribute__((always_inline)) inline void forward_body(const T* pad, const T* wt, T* y_g, const ConvGeom& g) {
  const int64_t Hp = g.H + 2, Wp = g.W + 2;
  (void)Hp;
  for (int64_t ob = 0; ob < g.Og; ob += kOut)
    for (int64_t oh = 0; oh < g.Ho; ++oh)
      for (int64_t ow0 = 0; ow0 < g.Wo; ow0 += kPix) {
        T acc[kPix][kOut] = {};
        for (int64_t c = 0; c < g.Cg; ++c)
          for (int64_t i = 0; i < 3; ++i) {
            const T* row = pad + (c * Hp + oh * s + i) * Wp + ow0 * s;
            for (int64_t j = 0; j < 3; ++j) {
              const T* wv = wt + (c * 9 + i * 3 + j) * g.Og + ob;
#pragma GCC unroll 8
              for (int64_t q = 0; q < kPix; ++q) {
                const T xv = row[q * s + j];
#pragma omp simd
                for (int64_t o = 0; o < kOut; ++o) acc[q][o] += xv * wv[o];
              }
            }
          }
        const int64_t n = std::min(kPix, g.Wo - ow0);
        for (int64_t q = 0; q < n; ++q)
          for (int64_t o = 0; o < kOut; ++o) y_g[(ob + o) * g.P + oh * g.Wo + ow0 + q] = acc[q][o];
      }
}

template <class T>
__attribute__((always_inline)) inline void forward_any(const T* pad, const T* wt, T* y_g, const ConvGeom& g) {
  const bool wide = g.Og % kOutMax == 0;
  if (g.p.stride_h == 1)
    wide ? forward_body<T, 1, kOutMax>(pad, wt, y_g, g) : forward_body<T, 1, 8>(pad, wt, y_g, g);
  else
    wide ? forward_body<T, 2, kOutMax>(pad, wt, y_g, g) : forward_body<T, 2, 8>(pad, wt, y_g, g);
}

// One (image, group): pad its padded planes, wt its weights tap-major.
ICH_CPU_CLONES void forward_one(const float* pad, const float* wt, float* y_g, const ConvGeom& g) {
  forward_any(pad, wt, y_g, g);
}
ICH_CPU_CLONES void forward_one(const double* pad, const double* wt, double* y_g, const ConvGeom& g) {
  forward_any(pad, wt, y_g, g);
}

// img (Cg*9, Og) tap-major += this image's filter gradient for one group:
// pad its padded input planes, dyT its output gradient as (P, Og).
template <class T, int64_t s, int64_t kOut>
__attribute__((always_inline)) inline void filter_body(const T* pad, const T* dyT, T* img, const ConvGeom& g) {
  const int64_t Hp = g.H + 2, Wp = g.W + 2;
  const int64_t rows = std::max<int64_t>(1, kFilterBlock / g.Wo);
  for (int64_t c = 0; c < g.Cg; ++c)
    for (int64_t ob = 0; ob < g.Og; ob += kOut) {
      T* out = img + c * 9 * g.Og + ob;
      for (int64_t oh0 = 0; oh0 < g.Ho; oh0 += rows) {
        T acc[9][kOut] = {};
        const int64_t oh1 = std::min(g.Ho, oh0 + rows);
        for (int64_t oh = oh0; oh < oh1; ++oh)
          for (int64_t ow = 0; ow < g.Wo; ++ow) {
            const T* dv = dyT + (oh * g.Wo + ow) * g.Og + ob;
            const T* xr = pad + (c * Hp + oh * s) * Wp + ow * s;
            for (int64_t i = 0; i < 3; ++i)
              for (int64_t j = 0; j < 3; ++j) {
                const T xv = xr[i * Wp + j];
#pragma omp simd
                for (int64_t o = 0; o < kOut; ++o) acc[i * 3 + j][o] += xv * dv[o];
              }
          }
        for (int64_t t = 0; t < 9; ++t)
#pragma omp simd
          for (int64_t o = 0; o < kOut; ++o) out[t * g.Og + o] += acc[t][o];
      }
    }
}

template <class T>
__attribute__((always_inline)) inline void filter_any(const T* pad, const T* dyT, T* img, const ConvGeom& g) {
  const bool wide = g.Og % kOutMax == 0;
  if (g.p.stride_h == 1)
    wide ? filter_body<T, 1, kOutMax>(pad, dyT, img, g) : filter_body<T, 1, 8>(pad, dyT, img, g);
  else
    wide ? filter_body<T, 2, kOutMax>(pad, dyT, img, g) : filter_body<T, 2, 8>(pad, dyT, img, g);
}

ICH_CPU_CLONES void filter_one(const float* pad, const float* dyT, float* img, const ConvGeom& g) {
  filter_any(pad, dyT, img, g);
}
ICH_CPU_CLONES void filter_one(const double* pad, const double* dyT, double* img, const ConvGeom& g) {
  filter_any(pad, dyT, img, g);
}

// Every group's weights tap-major: wt[g][(c*9 + t)*Og + o] = w[g*Og + o][c][t].
template <class T> std::vector<T> taps_major(const T* w, const ConvGeom& g) {
  std::vector<T> wt(size_t(g.O * g.K));
  for (int64_t gr = 0; gr < g.G; ++gr)
    for (int64_t o = 0; o < g.Og; ++o)
      for (int64_t k = 0; k < g.K; ++k) wt[size_t((gr * g.K + k) * g.Og + o)] = w[(gr * g.Og + o) * g.K + k];
  return wt;
}

// The same for the backward data's kernel, roles swapped and taps flipped:
// wt[g][(o*9 + t)*Cg + c] = w[g*Og + o][c][8 - t].
template <class T> std::vector<T> flipped_taps_major(const T* w, const ConvGeom& g) {
  std::vector<T> wt(size_t(g.O * g.K));
  for (int64_t gr = 0; gr < g.G; ++gr)
    for (int64_t o = 0; o < g.Og; ++o)
      for (int64_t c = 0; c < g.Cg; ++c)
        for (int64_t t = 0; t < 9; ++t)
          wt[size_t(gr * g.Og * g.K + (o * 9 + t) * g.Cg + c)] = w[((gr * g.Og + o) * g.Cg + c) * 9 + 8 - t];
  return wt;
}

// The forward kernel over a batch: x (N, C, H, W) -> y (N, O, Ho, Wo).
template <class T> void forward_batch(const T* x, const std::vector<T>& wt, T* y, const ConvGeom& g) {
#pragma omp parallel
  {
    std::vector<T> pad(size_t(pad_size(g)), T(0));  // the border stays zero
#pragma omp for collapse(2) schedule(static)
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t gr = 0; gr < g.G; ++gr) {
        fill_padded(x + (n * g.C + gr * g.Cg) * g.H * g.W, g, pad.data());
        forward_one(pad.data(), wt.data() + gr * g.Og * g.K, y + (n * g.O + gr * g.Og) * g.P, g);
      }
  }
}

template <class T> void backward_filter_batch(const T* gy, const T* x, T* gw, const ConvGeom& g) {
  const int64_t wsize = g.Og * g.K;  // one group's weights
#pragma omp parallel
  {
    std::vector<T> pad(size_t(pad_size(g)), T(0)), dyT(static_cast<size_t>(g.P * g.Og)),
        img(static_cast<size_t>(wsize)), total(static_cast<size_t>(wsize));
#pragma omp for schedule(static)
    for (int64_t gr = 0; gr < g.G; ++gr) {
      std::fill(total.begin(), total.end(), T(0));
      for (int64_t n = 0; n < g.N; ++n) {
        fill_padded(x + (n * g.C + gr * g.Cg) * g.H * g.W, g, pad.data());
        const T* dy_g = gy + (n * g.O + gr * g.Og) * g.P;
        for (int64_t o = 0; o < g.Og; ++o)
          for (int64_t q = 0; q < g.P; ++q) dyT[size_t(q * g.Og + o)] = dy_g[o * g.P + q];
        std::fill(img.begin(), img.end(), T(0));
        filter_one(pad.data(), dyT.data(), img.data(), g);
        for (int64_t k = 0; k < wsize; ++k) total[size_t(k)] += img[size_t(k)];
      }
      T* gw_g = gw + gr * wsize;
      for (int64_t o = 0; o < g.Og; ++o)
        for (int64_t k = 0; k < g.K; ++k) gw_g[o * g.K + k] = total[size_t(k * g.Og + o)];
    }
  }
}

// The geometry of the backward data as a forward convolution: dy (N, O,
// Ho, Wo) in, dx (N, C, H, W) out, stride 1 (Ho = H, Wo = W).
ConvGeom swapped(const ConvGeom& g) {
  ConvGeom t = g;
  t.C = g.O, t.O = g.C, t.Cg = g.Og, t.Og = g.Cg;
  t.H = g.Ho, t.W = g.Wo, t.Ho = g.H, t.Wo = g.W;
  t.K = t.Cg * 9, t.P = t.Ho * t.Wo;
  return t;
}

}  // namespace

bool direct_3x3_fits(const ConvGeom& g) {
  return g.G > 1 && g.kh == 3 && g.kw == 3 && g.p.pad_h == 1 && g.p.pad_w == 1 && g.p.stride_h == g.p.stride_w &&
         g.p.stride_h <= 2 && g.Og % 8 == 0;
}

bool direct_3x3_backward_data_fits(const ConvGeom& g) {
  return g.G > 1 && g.kh == 3 && g.kw == 3 && g.p.pad_h == 1 && g.p.pad_w == 1 && g.p.stride_h == 1 &&
         g.p.stride_w == 1 && g.Cg % 8 == 0;
}

void direct_3x3_forward(const float* x, const float* w, float* y, const ConvGeom& g) {
  forward_batch(x, taps_major(w, g), y, g);
}
void direct_3x3_forward(const double* x, const double* w, double* y, const ConvGeom& g) {
  forward_batch(x, taps_major(w, g), y, g);
}

void direct_3x3_backward_data(const float* gy, const float* w, float* gx, const ConvGeom& g) {
  forward_batch(gy, flipped_taps_major(w, g), gx, swapped(g));
}
void direct_3x3_backward_data(const double* gy, const double* w, double* gx, const ConvGeom& g) {
  forward_batch(gy, flipped_taps_major(w, g), gx, swapped(g));
}

void direct_3x3_backward_filter(const float* gy, const float* x, float* gw, const ConvGeom& g) {
  backward_filter_batch(gy, x, gw, g);
}
void direct_3x3_backward_filter(const double* gy, const double* x, double* gw, const ConvGeom& g) {
  backward_filter_batch(gy, x, gw, g);
}

}  // namespace ich::cpu
