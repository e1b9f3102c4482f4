// conv2d.cpp: 2-d convolution on the CPU, by im2col + GEMM, forward and
// backward side by side; grouped 3x3 convolutions go to the direct kernels
// of conv2d_direct.h where they fit.
//
// Shapes as in conv2d_geom.h. For one image n and group g:
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

#include "engine/cpu/conv2d_direct.h"
#include "engine/cpu/conv2d_geom.h"
#include "engine/cpu/cpu_util.h"
#include "engine/cpu/gemm.h"
#include "engine/kernels.h"

namespace ich::cpu {

namespace {

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
  const ConvGeom g = conv_geometry(x.shape(), w.shape(), p);
  dispatch_float(x, k, [&](auto zero) {
    using T = decltype(zero);
    const T *xp = x.data<T>(), *wp = w.data<T>();
    T* yp = y.data<T>();
    if (direct_3x3_fits(g)) {
      direct_3x3_forward(xp, wp, yp, g);
    } else {
#pragma omp parallel
      {
        std::vector<T> col(g.identity_col() ? 0 : size_t(g.K * g.P));
#pragma omp for collapse(2) schedule(static)
        for (int64_t n = 0; n < g.N; ++n)
          for (int64_t gr = 0; gr < g.G; ++gr) {
            const T* cp = xp + (n * g.C + gr * g.Cg) * g.H * g.W;
            if (!g.identity_col()) {
              im2col(cp, g, col.data());
              cp = col.data();
            }
            gemm<T>(false, false, g.Og, g.P, g.K, T(1), wp + gr * g.Og * g.K, g.K, cp, g.P, T(0),
                    yp + (n * g.O + gr * g.Og) * g.P, g.P);
          }
      }
    }
    if (b.defined()) {
      const T* bp = b.data<T>();
#pragma omp parallel for collapse(2) schedule(static)
      for (int64_t n = 0; n < g.N; ++n)
        for (int64_t o = 0; o < g.O; ++o)
          for (int64_t q = 0; q < g.P; ++q) yp[(n * g.O + o) * g.P + q] += bp[o];
    }
  });
}

void conv2d_backward_data(const Tensor& gy, const Tensor& w, Tensor& gx, const Conv2dParams& p) {
  const char* k = "conv2d_backward_data";
  check_conv(k, gx, w, p);
  expect(gy, k, "gy", w.dtype());
  expect(w, k, "w", w.dtype());
  expect(gx, k, "gx", w.dtype());
  const ConvGeom g = conv_geometry(gx.shape(), w.shape(), p);
  dispatch_float(w, k, [&](auto zero) {
    using T = decltype(zero);
    const T *gyp = gy.data<T>(), *wp = w.data<T>();
    T* gxp = gx.data<T>();
    if (direct_3x3_backward_data_fits(g)) {
      direct_3x3_backward_data(gyp, wp, gxp, g);
      return;
    }
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
  const ConvGeom g = conv_geometry(x.shape(), gw.shape(), p);
  dispatch_float(x, k, [&](auto zero) {
    using T = decltype(zero);
    const T *gyp = gy.data<T>(), *xp = x.data<T>();
    T* gwp = gw.data<T>();
    if (direct_3x3_fits(g)) {
      direct_3x3_backward_filter(gyp, xp, gwp, g);
      return;
    }
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
