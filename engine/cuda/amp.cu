// amp.cu: the CUDA kernels of mixed precision (engine/ops/amp.h): the same
// rounding as engine/half.h through CUDA's own conversions, and the loss
// scaler's unscale/check and update (the latter with its state on the device).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "engine/cuda/cuda_util.h"
#include "engine/kernels.h"

namespace ich::cuda {

namespace {

__global__ void round_bf16_kernel(float* p, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    p[i] = __bfloat162float(__float2bfloat16_rn(p[i]));
}
__global__ void round_fp16_kernel(float* p, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    p[i] = __half2float(__float2half_rn(p[i]));
}

// g *= inv, found = 1 if any result is not finite. The scale either comes
// with the launch (inv), or is read from device memory (scale, a captured
// step's LossScaler): then inv = T(1/scale), the host path's arithmetic.
template <class T> __global__ void unscale_kernel(T* g, int64_t n, T inv, const float* scale, float* found) {
  if (scale) inv = T(1.0 / double(*scale));
  bool bad = false;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    g[i] = g[i] * inv;
    bad |= !isfinite(g[i]);
  }
  if (bad) *found = 1.f;  // benign race: every writer writes 1
}

__global__ void update_scale_kernel(float* scale, float* tracker, const float* found, const float* skip_if,
                                    double growth, double backoff, float interval) {
  if (skip_if && *skip_if != 0.f) return;
  if (*found != 0.f) {
    *scale = float(double(*scale) * backoff);
    *tracker = 0.f;
  } else if ((*tracker += 1.f) == interval) {
    *scale = float(double(*scale) * growth);
    *tracker = 0.f;
  }
}

}  // namespace

void round_to_precision_(Tensor& t, DType precision) {
  expect(t, "round_to_precision_", "t", DType::Float32);
  const int64_t n = t.numel();
  if (n == 0) return;
  cudaStream_t s = context_of(t).stream;
  if (precision == DType::BFloat16) round_bf16_kernel<<<blocks_for(n), 256, 0, s>>>(ptr<float>(t), n);
  else if (precision == DType::Float16) round_fp16_kernel<<<blocks_for(n), 256, 0, s>>>(ptr<float>(t), n);
  else throw Error(std::string("round_to_precision_: ") + dtype_name(precision) + " is not bfloat16 or float16");
  ICH_CUDA_LAUNCH_CHECK();
}

namespace {
// scale: undefined (inv_scale used) or one float32 element on g's device
void launch_unscale(const char* k, Tensor& g, double inv_scale, const Tensor& scale, Tensor& found_inf) {
  expect(found_inf, k, "found_inf", DType::Float32);
  ICH_CHECK(found_inf.numel() == 1, k, ": found_inf must hold one element");
  if (scale.defined()) expect(scale, k, "scale", DType::Float32);
  expect(g, k, "g", g.dtype());
  const int64_t n = g.numel();
  if (n == 0) return;
  cudaStream_t s = context_of(g).stream;
  dispatch_float(g, k, [&](auto zero) {
    using T = decltype(zero);
    unscale_kernel<T><<<blocks_for(n), 256, 0, s>>>(ptr<T>(g), n, T(inv_scale),
                                                     scale.defined() ? ptr<float>(scale) : nullptr,
                                                     ptr<float>(found_inf));
  });
  ICH_CUDA_LAUNCH_CHECK();
}
}  // namespace

void unscale_check_(Tensor& g, double inv_scale, Tensor& found_inf) {
  launch_unscale("unscale_check_", g, inv_scale, Tensor(), found_inf);
}

void unscale_check_by_(Tensor& g, const Tensor& scale, Tensor& found_inf) {
  launch_unscale("unscale_check_by_", g, 1.0, scale, found_inf);
}

void update_scale_(Tensor& scale, Tensor& tracker, const Tensor& found_inf, const Tensor& skip_if, double growth,
                   double backoff, int64_t interval) {
  const char* k = "update_scale_";
  for (const Tensor* t : TensorList{&scale, &tracker, &found_inf}) expect(*t, k, "scale/tracker/found_inf", DType::Float32);
  if (skip_if.defined()) expect(skip_if, k, "skip_if", DType::Float32);
  update_scale_kernel<<<1, 1, 0, context_of(scale).stream>>>(ptr<float>(scale), ptr<float>(tracker),
                                                             ptr<float>(found_inf),
                                                             skip_if.defined() ? ptr<float>(skip_if) : nullptr, growth,
                                                             backoff, float(interval));
  ICH_CUDA_LAUNCH_CHECK();
}

}  // namespace ich::cuda
