// pool.cu: max pooling and adaptive average pooling as small kernels with
// the CPU backend's contract (engine/cpu/pool.cpp): max pooling keeps the
// argmax of each window. Both backward passes gather (each input element
// sums the outputs that reach it) instead of scattering with atomics, so the
// result is deterministic. bfloat16/float16 tensors too (cuda_util.h): the
// maximum is exact, averages and gradient sums are formed in float32 and
// rounded once, in the CPU's order.
#include <cfloat>

#include "engine/cuda/cuda_util.h"
#include "engine/kernels.h"

namespace ich::cuda {

namespace {

template <class T>
__global__ void max_pool_fwd(const T* x, T* y, int64_t* arg, int64_t NC, int64_t H, int64_t W, int64_t Ho,
                             int64_t Wo, Pool2dParams p) {
  const int64_t n = NC * Ho * Wo;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ow = i % Wo, oh = (i / Wo) % Ho, plane = i / (Wo * Ho);
    const T* xin = x + plane * H * W;
    wide_t<T> best = 0;
    int64_t where = -1;
    bool nan_seen = false;  // NaN wins and ends the search, as on the CPU
    for (int64_t a = 0; a < p.kernel_h && !nan_seen; ++a) {
      const int64_t ih = oh * p.stride_h - p.pad_h + a;
      if (ih < 0 || ih >= H) continue;
      for (int64_t b = 0; b < p.kernel_w && !nan_seen; ++b) {
        const int64_t iw = ow * p.stride_w - p.pad_w + b;
        if (iw < 0 || iw >= W) continue;
        const wide_t<T> v = widen(xin[ih * W + iw]);
        if (where < 0 || v > best || isnan(v)) {
          best = v;
          where = ih * W + iw;
          nan_seen = isnan(v);
        }
      }
    }
    y[i] = narrow<T>(best);  // exact: best is one of the inputs
    arg[i] = where;
  }
}

__device__ int64_t clamp_low(int64_t v) { return v < 0 ? 0 : v; }
__device__ int64_t clamp_high(int64_t v, int64_t hi) { return v > hi ? hi : v; }

template <class T>
__global__ void max_pool_bwd(const T* gy, const int64_t* arg, T* gx, int64_t NC, int64_t H, int64_t W, int64_t Ho,
                             int64_t Wo, Pool2dParams p) {
  const int64_t n = NC * H * W;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t iw = i % W, ih = (i / W) % H, plane = i / (W * H), flat = ih * W + iw;
    // Outputs whose window covers (ih, iw): oh*s - pad <= ih <= oh*s - pad + k - 1.
    const int64_t oh0 = clamp_low((ih + p.pad_h - p.kernel_h + p.stride_h) / p.stride_h);
    const int64_t oh1 = clamp_high((ih + p.pad_h) / p.stride_h, Ho - 1);
    const int64_t ow0 = clamp_low((iw + p.pad_w - p.kernel_w + p.stride_w) / p.stride_w);
    const int64_t ow1 = clamp_high((iw + p.pad_w) / p.stride_w, Wo - 1);
    wide_t<T> s = 0;
    for (int64_t oh = oh0; oh <= oh1; ++oh)
      for (int64_t ow = ow0; ow <= ow1; ++ow) {
        const int64_t o = (plane * Ho + oh) * Wo + ow;
        if (arg[o] == flat) s += widen(gy[o]);
      }
    gx[i] = narrow<T>(s);
  }
}

__device__ int64_t cell_start(int64_t i, int64_t in, int64_t out) { return (i * in) / out; }
__device__ int64_t cell_end(int64_t i, int64_t in, int64_t out) { return ((i + 1) * in + out - 1) / out; }

template <class T>
__global__ void avg_pool_fwd(const T* x, T* y, int64_t NC, int64_t H, int64_t W, int64_t Ho, int64_t Wo) {
  const int64_t n = NC * Ho * Wo;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ow = i % Wo, oh = (i / Wo) % Ho, plane = i / (Wo * Ho);
    const int64_t h0 = cell_start(oh, H, Ho), h1 = cell_end(oh, H, Ho), w0 = cell_start(ow, W, Wo),
                  w1 = cell_end(ow, W, Wo);
    double s = 0;
    for (int64_t a = h0; a < h1; ++a)
      for (int64_t b = w0; b < w1; ++b) s += double(widen(x[(plane * H + a) * W + b]));
    y[i] = narrow_from_double<T>(s / double((h1 - h0) * (w1 - w0)));
  }
}

template <class T>
__global__ void avg_pool_bwd(const T* gy, T* gx, int64_t NC, int64_t H, int64_t W, int64_t Ho, int64_t Wo) {
  const int64_t n = NC * H * W;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t iw = i % W, ih = (i / W) % H, plane = i / (W * H);
    wide_t<T> s = 0;
    for (int64_t oh = 0; oh < Ho; ++oh) {
      const int64_t h0 = cell_start(oh, H, Ho), h1 = cell_end(oh, H, Ho);
      if (ih < h0 || ih >= h1) continue;
      for (int64_t ow = 0; ow < Wo; ++ow) {
        const int64_t w0 = cell_start(ow, W, Wo), w1 = cell_end(ow, W, Wo);
        if (iw < w0 || iw >= w1) continue;
        s += wide_t<T>(double(widen(gy[(plane * Ho + oh) * Wo + ow])) / double((h1 - h0) * (w1 - w0)));
      }
    }
    gx[i] = narrow<T>(s);
  }
}

}  // namespace

void max_pool2d_forward(const Tensor& x, Tensor& y, Tensor& argmax, const Pool2dParams& p) {
  const char* k = "max_pool2d_forward";
  expect(x, k, "x", x.dtype());
  expect(y, k, "y", x.dtype());
  expect(argmax, k, "argmax", DType::Int64);
  Context& c = context_of(x);
  dispatch_activation(x, k, [&](auto z) {
    using T = decltype(z);
    max_pool_fwd<T><<<blocks_for(y.numel()), 256, 0, c.stream>>>(ptr<T>(x), ptr<T>(y), ptr<int64_t>(argmax),
                                                                  x.size(0) * x.size(1), x.size(2), x.size(3),
                                                                  y.size(2), y.size(3), p);
    ICH_CUDA_LAUNCH_CHECK();
  });
}

void max_pool2d_backward(const Tensor& gy, const Tensor& argmax, Tensor& gx, const Pool2dParams& p) {
  const char* k = "max_pool2d_backward";
  expect(gy, k, "gy", gy.dtype());
  expect(gx, k, "gx", gy.dtype());
  expect(argmax, k, "argmax", DType::Int64);
  Context& c = context_of(gy);
  dispatch_activation(gy, k, [&](auto z) {
    using T = decltype(z);
    max_pool_bwd<T><<<blocks_for(gx.numel()), 256, 0, c.stream>>>(ptr<T>(gy), ptr<int64_t>(argmax), ptr<T>(gx),
                                                                   gx.size(0) * gx.size(1), gx.size(2), gx.size(3),
                                                                   gy.size(2), gy.size(3), p);
    ICH_CUDA_LAUNCH_CHECK();
  });
}

void adaptive_avg_pool2d_forward(const Tensor& x, Tensor& y) {
  const char* k = "adaptive_avg_pool2d_forward";
  expect(x, k, "x", x.dtype());
  expect(y, k, "y", x.dtype());
  Context& c = context_of(x);
  dispatch_activation(x, k, [&](auto z) {
    using T = decltype(z);
    avg_pool_fwd<T><<<blocks_for(y.numel()), 256, 0, c.stream>>>(ptr<T>(x), ptr<T>(y), x.size(0) * x.size(1),
                                                                  x.size(2), x.size(3), y.size(2), y.size(3));
    ICH_CUDA_LAUNCH_CHECK();
  });
}

void adaptive_avg_pool2d_backward(const Tensor& gy, Tensor& gx) {
  const char* k = "adaptive_avg_pool2d_backward";
  expect(gy, k, "gy", gy.dtype());
  expect(gx, k, "gx", gy.dtype());
  Context& c = context_of(gy);
  dispatch_activation(gy, k, [&](auto z) {
    using T = decltype(z);
    avg_pool_bwd<T><<<blocks_for(gx.numel()), 256, 0, c.stream>>>(ptr<T>(gy), ptr<T>(gx), gx.size(0) * gx.size(1),
                                                                   gx.size(2), gx.size(3), gy.size(2), gy.size(3));
    ICH_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace ich::cuda
