// pool.cpp: max pooling and adaptive average pooling on the CPU.
//
// max_pool2d: y[n,c,oh,ow] = max over the window rows oh*sh-ph .. +kh-1 and
// columns ow*sw-pw .. +kw-1 that lie inside the image (padding never wins, as
// if it were -inf). Ho = (H + 2*ph - kh)/sh + 1 (PyTorch's floor mode). The
// first maximum in row-major window order wins ties, and its position is kept
// so that backward routes dy there: dx[argmax] += dy (windows overlap when
// stride < kernel, so several dy can land on one x).
//
// adaptive_avg_pool2d: output cell (i,j) averages rows floor(i*H/Ho) ..
// ceil((i+1)*H/Ho)-1 and the matching columns; 1x1 output is the global mean.
// Backward spreads dy/count evenly over the cell's inputs.
//
// Both take bfloat16/float16 tensors too (cpu_util.h): the maximum is exact,
// averages and the gradients that several outputs send to one input are
// summed in float32 and rounded once, as the CUDA kernels do.
#include <cmath>
#include <limits>
#include <vector>

#include "engine/cpu/cpu_util.h"
#include "engine/kernels.h"

namespace ich::cpu {

void max_pool2d_forward(const Tensor& x, Tensor& y, Tensor& argmax, const Pool2dParams& p) {
  const char* k = "max_pool2d_forward";
  expect(x, k, "x", x.dtype());
  expect(y, k, "y", x.dtype());
  expect(argmax, k, "argmax", DType::Int64);
  const int64_t NC = x.size(0) * x.size(1), H = x.size(2), W = x.size(3), Ho = y.size(2), Wo = y.size(3);
  dispatch_activation(x, k, [&](auto zero) {
    using T = decltype(zero);
    using A = wide_t<T>;
    const T* xp = x.data<T>();
    T* yp = y.data<T>();
    int64_t* ap = argmax.data<int64_t>();
#pragma omp parallel for schedule(static)
    for (int64_t plane = 0; plane < NC; ++plane) {
      const T* xin = xp + plane * H * W;
      for (int64_t oh = 0; oh < Ho; ++oh)
        for (int64_t ow = 0; ow < Wo; ++ow) {
          A best = -std::numeric_limits<A>::infinity();
          int64_t where = -1;
          for (int64_t i = 0; i < p.kernel_h; ++i) {
            const int64_t ih = oh * p.stride_h - p.pad_h + i;
            if (ih < 0 || ih >= H) continue;
            for (int64_t j = 0; j < p.kernel_w; ++j) {
              const int64_t iw = ow * p.stride_w - p.pad_w + j;
              if (iw < 0 || iw >= W) continue;
              const A v = A(xin[ih * W + iw]);
              if (where < 0 || v > best || std::isnan(v)) {  // NaN propagates, as in PyTorch
                best = v;
                where = ih * W + iw;
                if (std::isnan(v)) goto done;
              }
            }
          }
        done:
          yp[(plane * Ho + oh) * Wo + ow] = T(best);
          ap[(plane * Ho + oh) * Wo + ow] = where;
        }
    }
  });
}

void max_pool2d_backward(const Tensor& gy, const Tensor& argmax, Tensor& gx, const Pool2dParams&) {
  const char* k = "max_pool2d_backward";
  expect(gy, k, "gy", gy.dtype());
  expect(gx, k, "gx", gy.dtype());
  expect(argmax, k, "argmax", DType::Int64);
  const int64_t NC = gx.size(0) * gx.size(1), HW = gx.size(2) * gx.size(3), HWo = gy.size(2) * gy.size(3);
  dispatch_activation(gy, k, [&](auto zero) {
    using T = decltype(zero);
    using A = wide_t<T>;
    const T* g = gy.data<T>();
    const int64_t* ap = argmax.data<int64_t>();
    T* out = gx.data<T>();
#pragma omp parallel
    {
      std::vector<A> acc(is_16bit_type<T> ? size_t(HW) : 0);  // 16-bit: the sums in float32, rounded once
#pragma omp for schedule(static)
      for (int64_t plane = 0; plane < NC; ++plane) {
        A* dx = acc.data();
        if constexpr (!is_16bit_type<T>) dx = out + plane * HW;
        for (int64_t q = 0; q < HW; ++q) dx[q] = A(0);
        for (int64_t q = 0; q < HWo; ++q) {
          const int64_t a = ap[plane * HWo + q];
          if (a >= 0) dx[a] += A(g[plane * HWo + q]);
        }
        if constexpr (is_16bit_type<T>)
          for (int64_t q = 0; q < HW; ++q) out[plane * HW + q] = T(dx[q]);
      }
    }
  });
}

namespace {
int64_t cell_start(int64_t i, int64_t in, int64_t out) { return (i * in) / out; }
int64_t cell_end(int64_t i, int64_t in, int64_t out) { return ((i + 1) * in + out - 1) / out; }
}  // namespace

void adaptive_avg_pool2d_forward(const Tensor& x, Tensor& y) {
  const char* k = "adaptive_avg_pool2d_forward";
  expect(x, k, "x", x.dtype());
  expect(y, k, "y", x.dtype());
  const int64_t NC = x.size(0) * x.size(1), H = x.size(2), W = x.size(3), Ho = y.size(2), Wo = y.size(3);
  dispatch_activation(x, k, [&](auto zero) {
    using T = decltype(zero);
    const T* xp = x.data<T>();
    T* yp = y.data<T>();
#pragma omp parallel for schedule(static)
    for (int64_t plane = 0; plane < NC; ++plane)
      for (int64_t oh = 0; oh < Ho; ++oh)
        for (int64_t ow = 0; ow < Wo; ++ow) {
          const int64_t h0 = cell_start(oh, H, Ho), h1 = cell_end(oh, H, Ho);
          const int64_t w0 = cell_start(ow, W, Wo), w1 = cell_end(ow, W, Wo);
          double s = 0;
          for (int64_t ih = h0; ih < h1; ++ih)
            for (int64_t iw = w0; iw < w1; ++iw) s += double(xp[(plane * H + ih) * W + iw]);
          yp[(plane * Ho + oh) * Wo + ow] = T(wide_t<T>(s / double((h1 - h0) * (w1 - w0))));
        }
  });
}

void adaptive_avg_pool2d_backward(const Tensor& gy, Tensor& gx) {
  const char* k = "adaptive_avg_pool2d_backward";
  expect(gy, k, "gy", gy.dtype());
  expect(gx, k, "gx", gy.dtype());
  const int64_t NC = gx.size(0) * gx.size(1), H = gx.size(2), W = gx.size(3), Ho = gy.size(2), Wo = gy.size(3);
  dispatch_activation(gy, k, [&](auto zero) {
    using T = decltype(zero);
    using A = wide_t<T>;
    const T* g = gy.data<T>();
    T* out = gx.data<T>();
#pragma omp parallel
    {
      std::vector<A> acc(is_16bit_type<T> ? size_t(H * W) : 0);  // 16-bit: the sums in float32, rounded once
#pragma omp for schedule(static)
      for (int64_t plane = 0; plane < NC; ++plane) {
        A* dx = acc.data();
        if constexpr (!is_16bit_type<T>) dx = out + plane * H * W;
        for (int64_t q = 0; q < H * W; ++q) dx[q] = A(0);
        for (int64_t oh = 0; oh < Ho; ++oh)
          for (int64_t ow = 0; ow < Wo; ++ow) {
            const int64_t h0 = cell_start(oh, H, Ho), h1 = cell_end(oh, H, Ho);
            const int64_t w0 = cell_start(ow, W, Wo), w1 = cell_end(ow, W, Wo);
            const A share = A(double(g[(plane * Ho + oh) * Wo + ow]) / double((h1 - h0) * (w1 - w0)));
            for (int64_t ih = h0; ih < h1; ++ih)
              for (int64_t iw = w0; iw < w1; ++iw) dx[ih * W + iw] += share;
          }
        if constexpr (is_16bit_type<T>)
          for (int64_t q = 0; q < H * W; ++q) out[plane * H * W + q] = T(dx[q]);
      }
    }
  });
}

}  // namespace ich::cpu
