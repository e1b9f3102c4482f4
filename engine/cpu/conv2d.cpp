// conv2d.cpp: 2-d convolution on the CPU, by im2col + GEMM, forward and
// backward side by side.
//
// Shapes: x (N,C,H,W), w (O,C/G,kh,kw), y (N,O,Ho,Wo), G groups,
//   Ho = (H + 2*pad_h - kh) / stride_h + 1   (likewise Wo).
// Group g sees input channels [g*C/G, (g+1)*C/G) and makes output channels
// [g*O/G, (g+1)*O/G). For one image n and group g:
//   col  (K, Ho*Wo), K = (C/G)*kh*kw:  col[(c,i,j), (oh,ow)] = x[c, oh*sh-ph+i, ow*sw-pw+j] (0 outside)
//   forward          y_g  (O/G, Ho*Wo) = w_g (O/G, K) * col
//   backward data    dcol (K, Ho*Wo)   = w_g^T * dy_g,  then col2im adds dcol back into dx
//   backward filter  dw_g (O/G, K)    += dy_g * col^T   (summed over images)
// A 1x1 convolution with stride 1 and no padding needs no im2col: col is x.
// Work is split over (image, group) pairs, each with its own col buffer, so
// no two threads write the same output; the filter gradient is summed per
// thread and the per-thread sums added in thread order (reproducible for a
// given thread count).
#include <omp.h>

#include <algorithm>
#include <vector>

#include "engine/cpu/cpu_util.h"
#include "engine/cpu/gemm.h"
#include "engine/kernels.h"

namespace ich::cpu {

namespace {

struct ConvGeom {
  int64_t N, C, H, W, O, kh, kw, Ho, Wo, G, Cg, Og, K, P;  // P = Ho*Wo
  Conv2dParams p;
  bool identity_col() const { return kh == 1 && kw == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_h == 0 && p.pad_w == 0; }
};

ConvGeom geometry(const Shape& xs, const Shape& ws, const Conv2dParams& p) {
  ConvGeom g;
  g.N = xs[0], g.C = xs[1], g.H = xs[2], g.W = xs[3];
  g.O = ws[0], g.kh = ws[2], g.kw = ws[3];
  g.G = p.groups;
  g.Cg = g.C / g.G, g.Og = g.O / g.G;
  g.Ho = (g.H + 2 * p.pad_h - g.kh) / p.stride_h + 1;
  g.Wo = (g.W + 2 * p.pad_w - g.kw) / p.stride_w + 1;
  g.K = g.Cg * g.kh * g.kw;
  g.P = g.Ho * g.Wo;
  g.p = p;
  return g;
}

// x_c: the group's C/G input planes of one image (H*W each) -> col (K, P)
template <class T> void im2col(const T* x_c, const ConvGeom& g, T* col) {
  for (int64_t c = 0; c < g.Cg; ++c)
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j) {
        T* row = col + ((c * g.kh + i) * g.kw + j) * g.P;
        const T* plane = x_c + c * g.H * g.W;
        for (int64_t oh = 0; oh < g.Ho; ++oh) {
          const int64_t ih = oh * g.p.stride_h - g.p.pad_h + i;
          T* out = row + oh * g.Wo;
          if (ih < 0 || ih >= g.H) {
            for (int64_t ow = 0; ow < g.Wo; ++ow) out[ow] = T(0);
            continue;
          }
          for (int64_t ow = 0; ow < g.Wo; ++ow) {
            const int64_t iw = ow * g.p.stride_w - g.p.pad_w + j;
            out[ow] = (iw >= 0 && iw < g.W) ? plane[ih * g.W + iw] : T(0);
          }
        }
      }
}

// The adjoint of im2col: adds col (K, P) into the group's input planes.
template <class T> void col2im_add(const T* col, const ConvGeom& g, T* dx_c) {
  for (int64_t c = 0; c < g.Cg; ++c)
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j) {
        const T* row = col + ((c * g.kh + i) * g.kw + j) * g.P;
        T* plane = dx_c + c * g.H * g.W;
        for (int64_t oh = 0; oh < g.Ho; ++oh) {
          const int64_t ih = oh * g.p.stride_h - g.p.pad_h + i;
          if (ih < 0 || ih >= g.H) continue;
          for (int64_t ow = 0; ow < g.Wo; ++ow) {
            const int64_t iw = ow * g.p.stride_w - g.p.pad_w + j;
            if (iw >= 0 && iw < g.W) plane[ih * g.W + iw] += row[oh * g.Wo + ow];
          }
        }
      }
}

// Grouped 3x3 convolutions (ResNeXt's: 8-64 channels per group) computed
// directly instead of by im2col + GEMM: a GEMM of 8-64 rows is thin, and
// im2col copies 9 values per input value for it (measured at batch 32,
// 200x200 on 2 cores: 16-60 GFLOP/s against 110-160 for the 1x1
// convolutions). One (image, group) pair at a time: its input planes are
// copied once with a zero border (and slack after the last row, so that a
// run of kPix outputs never branches at the edge); the group's weights are
// laid out tap-major, wt[(c*9 + i*3 + j)*Og + o], so that for each output
// row kPix outputs x kOut output channels are held in registers, and each
// input value is broadcast once per (channel, tap) into kOut channels'
// multiply-adds (vectorised along the output channels, which the deep
// layers' 7-13 pixel rows could not fill). Each output is the sum over (c,
// i, j) in that order, one multiply-add at a time, as the definition reads.
// Compiled for AVX-512, AVX with FMA and baseline x86-64, picked at load time
// (target_clones).
constexpr int64_t kPix = 8, kOutMax = 16;

// By CPU feature, not model ("arch=haswell" clones are picked by model, and
// an AMD EPYC got the baseline one); x86-64 only, one build elsewhere.
#if defined(__x86_64__)
#define ICH_CPU_CLONES __attribute__((target_clones("avx512f", "fma", "default")))
#else
#define ICH_CPU_CLONES
#endif

bool use_direct_3x3(const ConvGeom& g) {
  return g.G > 1 && g.kh == 3 && g.kw == 3 && g.p.pad_h == 1 && g.p.pad_w == 1 && g.p.stride_h == g.p.stride_w &&
         g.p.stride_h <= 2 && g.Og % 8 == 0;
}

template <class T, int64_t s, int64_t kOut>
__attribute__((always_inline)) inline void direct_3x3_body(const T* x_c, const T* wt, T* y_g, const ConvGeom& g,
                                                           T* pad) {
  const int64_t Hp = g.H + 2, Wp = g.W + 2;
  for (int64_t c = 0; c < g.Cg; ++c)
    for (int64_t h = 0; h < g.H; ++h)
      std::copy(x_c + (c * g.H + h) * g.W, x_c + (c * g.H + h + 1) * g.W, pad + (c * Hp + h + 1) * Wp + 1);
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
__attribute__((always_inline)) inline void direct_3x3_any(const T* x_c, const T* wt, T* y_g, const ConvGeom& g,
                                                          T* pad) {
  const bool wide = g.Og % kOutMax == 0;
  if (g.p.stride_h == 1)
    wide ? direct_3x3_body<T, 1, kOutMax>(x_c, wt, y_g, g, pad) : direct_3x3_body<T, 1, 8>(x_c, wt, y_g, g, pad);
  else
    wide ? direct_3x3_body<T, 2, kOutMax>(x_c, wt, y_g, g, pad) : direct_3x3_body<T, 2, 8>(x_c, wt, y_g, g, pad);
}

// One (image, group): wt its weights tap-major, pad its scratch (direct_pad_size).
ICH_CPU_CLONES void direct_3x3(const float* x_c, const float* wt, float* y_g, const ConvGeom& g, float* pad) {
  direct_3x3_any(x_c, wt, y_g, g, pad);
}
ICH_CPU_CLONES void direct_3x3(const double* x_c, const double* wt, double* y_g, const ConvGeom& g, double* pad) {
  direct_3x3_any(x_c, wt, y_g, g, pad);
}

// The weights of every group tap-major: wt[g][(c*9 + i*3 + j)*Og + o] = w[g*Og + o][c][i][j].
template <class T> std::vector<T> taps_major(const T* w, const ConvGeom& g) {
  std::vector<T> wt(size_t(g.O * g.K));
  for (int64_t gr = 0; gr < g.G; ++gr)
    for (int64_t o = 0; o < g.Og; ++o)
      for (int64_t k = 0; k < g.K; ++k) wt[size_t((gr * g.K + k) * g.Og + o)] = w[(gr * g.Og + o) * g.K + k];
  return wt;
}

// Padded planes of one (image, group), zero border, with slack for the last
// vector's reads past the row.
int64_t direct_pad_size(const ConvGeom& g) { return g.Cg * (g.H + 2) * (g.W + 2) + kPix * g.p.stride_w + 4; }

void check_conv(const char* k, const Tensor& x, const Tensor& w, const Conv2dParams& p) {
  ICH_CHECK(x.dim() == 4 && w.dim() == 4, k, ": expected 4-d x and w, got ", x.str(), " and ", w.str());
  ICH_CHECK(p.groups >= 1 && x.size(1) % p.groups == 0 && w.size(0) % p.groups == 0, k, ": groups ", p.groups,
            " must divide input channels ", x.size(1), " and output channels ", w.size(0));
  ICH_CHECK(w.size(1) * p.groups == x.size(1), k, ": weight ", w.str(), " expects ", w.size(1) * p.groups,
            " input channels, x has ", x.size(1));
}

}  // namespace

void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y, const Conv2dParams& p) {
  const char* k = "conv2d_forward";
  check_conv(k, x, w, p);
  expect(x, k, "x", x.dtype());
  expect(w, k, "w", x.dtype());
  expect(y, k, "y", x.dtype());
  if (b.defined()) expect(b, k, "b", x.dtype());
  const ConvGeom g = geometry(x.shape(), w.shape(), p);
  dispatch_float(x, k, [&](auto zero) {
    using T = decltype(zero);
    const T *xp = x.data<T>(), *wp = w.data<T>(), *bp = b.defined() ? b.data<T>() : nullptr;
    T* yp = y.data<T>();
    const bool direct = use_direct_3x3(g);
    const std::vector<T> wt = direct ? taps_major(wp, g) : std::vector<T>();
#pragma omp parallel
    {
      std::vector<T> col(g.identity_col() || direct ? 0 : size_t(g.K * g.P));
      std::vector<T> pad(direct ? size_t(direct_pad_size(g)) : 0, T(0));  // the border stays zero
#pragma omp for collapse(2) schedule(static)
      for (int64_t n = 0; n < g.N; ++n)
        for (int64_t gr = 0; gr < g.G; ++gr) {
          const T* x_c = xp + (n * g.C + gr * g.Cg) * g.H * g.W;
          T* y_g = yp + (n * g.O + gr * g.Og) * g.P;
          if (direct) {
            direct_3x3(x_c, wt.data() + gr * g.Og * g.K, y_g, g, pad.data());
          } else {
            const T* cp = x_c;
            if (!g.identity_col()) {
              im2col(x_c, g, col.data());
              cp = col.data();
            }
            gemm<T>(false, false, g.Og, g.P, g.K, T(1), wp + gr * g.Og * g.K, g.K, cp, g.P, T(0), y_g, g.P);
          }
          if (bp)
            for (int64_t o = 0; o < g.Og; ++o)
              for (int64_t q = 0; q < g.P; ++q) y_g[o * g.P + q] += bp[gr * g.Og + o];
        }
    }
  });
}

void conv2d_backward_data(const Tensor& gy, const Tensor& w, Tensor& gx, const Conv2dParams& p) {
  const char* k = "conv2d_backward_data";
  check_conv(k, gx, w, p);
  expect(gy, k, "gy", w.dtype());
  expect(w, k, "w", w.dtype());
  expect(gx, k, "gx", w.dtype());
  const ConvGeom g = geometry(gx.shape(), w.shape(), p);
  dispatch_float(w, k, [&](auto zero) {
    using T = decltype(zero);
    const T *gyp = gy.data<T>(), *wp = w.data<T>();
    T* gxp = gx.data<T>();
#pragma omp parallel
    {
      std::vector<T> col(g.identity_col() ? 0 : size_t(g.K * g.P));
#pragma omp for collapse(2) schedule(static)
      for (int64_t n = 0; n < g.N; ++n)
        for (int64_t gr = 0; gr < g.G; ++gr) {
          T* dx_c = gxp + (n * g.C + gr * g.Cg) * g.H * g.W;
          const T* dy_g = gyp + (n * g.O + gr * g.Og) * g.P;
          const T* w_g = wp + gr * g.Og * g.K;
          if (g.identity_col()) {  // dx_c (K=Cg, P) = w_g^T dy_g, written directly
            gemm_sum_blocked<T>(true, false, g.K, g.P, g.Og, T(1), w_g, g.K, dy_g, g.P, T(0), dx_c, g.P);
            continue;
          }
          gemm_sum_blocked<T>(true, false, g.K, g.P, g.Og, T(1), w_g, g.K, dy_g, g.P, T(0), col.data(), g.P);
          for (int64_t q = 0; q < g.Cg * g.H * g.W; ++q) dx_c[q] = T(0);
          col2im_add(col.data(), g, dx_c);
        }
    }
  });
}

void conv2d_backward_filter(const Tensor& gy, const Tensor& x, Tensor& gw, const Conv2dParams& p) {
  const char* k = "conv2d_backward_filter";
  check_conv(k, x, gw, p);
  expect(gy, k, "gy", x.dtype());
  expect(x, k, "x", x.dtype());
  expect(gw, k, "gw", x.dtype());
  const ConvGeom g = geometry(x.shape(), gw.shape(), p);
  dispatch_float(x, k, [&](auto zero) {
    using T = decltype(zero);
    const T *gyp = gy.data<T>(), *xp = x.data<T>();
    T* gwp = gw.data<T>();
    const int64_t wsize = gw.numel();
    const int nthreads = omp_get_max_threads();
    std::vector<std::vector<T>> partial(static_cast<size_t>(nthreads));
#pragma omp parallel num_threads(nthreads)
    {
      const int tid = omp_get_thread_num();
      std::vector<T>& acc = partial[size_t(tid)];
      acc.assign(size_t(wsize), T(0));
      std::vector<T> col(g.identity_col() ? 0 : size_t(g.K * g.P));
#pragma omp for schedule(static)
      for (int64_t n = 0; n < g.N; ++n)
        for (int64_t gr = 0; gr < g.G; ++gr) {
          const T* x_c = xp + (n * g.C + gr * g.Cg) * g.H * g.W;
          const T* cp = x_c;
          if (!g.identity_col()) {
            im2col(x_c, g, col.data());
            cp = col.data();
          }
          const T* dy_g = gyp + (n * g.O + gr * g.Og) * g.P;
          gemm<T>(false, true, g.Og, g.K, g.P, T(1), dy_g, g.P, cp, g.P, T(1), acc.data() + gr * g.Og * g.K, g.K);
        }
    }
    for (int64_t i = 0; i < wsize; ++i) {
      T s = T(0);
      for (int t = 0; t < nthreads; ++t) s += partial[size_t(t)][size_t(i)];
      gwp[i] = s;
    }
  });
}

void conv2d_backward_bias(const Tensor& gy, Tensor& gb) {
  const char* k = "conv2d_backward_bias";
  expect(gy, k, "gy", gy.dtype());
  expect(gb, k, "gb", gy.dtype());
  const int64_t N = gy.size(0), O = gy.size(1), P = gy.size(2) * gy.size(3);
  dispatch_float(gy, k, [&](auto zero) {
    using T = decltype(zero);
    const T* g = gy.data<T>();
    T* out = gb.data<T>();
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < O; ++o) {
      double s = 0;
      for (int64_t n = 0; n < N; ++n)
        for (int64_t q = 0; q < P; ++q) s += double(g[(n * O + o) * P + q]);
      out[o] = T(s);
    }
  });
}

}  // namespace ich::cpu
