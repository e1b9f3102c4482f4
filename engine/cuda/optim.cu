// optim.cu: fused optimizer steps, one pass over a parameter each, in the
// same order of operations as engine/cpu/optim.cpp (torch.optim's).
#include <algorithm>
#include <cmath>

#include "engine/cuda/cuda_util.h"
#include "engine/kernels.h"

namespace ich::cuda {

namespace {

template <class T>
__global__ void adam_kernel(T* p, const T* g, T* m, T* v, int64_t n, T b1, T b2, T one_minus_b1, T one_minus_b2,
                            T wd, T eps, T step_size, T bc2_sqrt) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const T gi = wd != T(0) ? g[i] + wd * p[i] : g[i];
    m[i] = m[i] * b1 + gi * one_minus_b1;
    v[i] = v[i] * b2 + one_minus_b2 * gi * gi;
    const T denom = sqrt(v[i]) / bc2_sqrt + eps;
    p[i] = p[i] + (-step_size) * m[i] / denom;
  }
}

template <class T>
__global__ void sgd_kernel(T* p, const T* g, T* buf, int64_t n, T lr, T mu, T damp, T wd, bool first, bool nesterov) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    T d = wd != T(0) ? g[i] + wd * p[i] : g[i];
    if (buf) {
      buf[i] = first ? d : buf[i] * mu + d * damp;
      d = nesterov ? d + mu * buf[i] : buf[i];
    }
    p[i] = p[i] + (-lr) * d;
  }
}

// The all-parameters step: one block per chunk of at most kChunk elements of
// one parameter. The chunk table travels in the launch's own parameters
// (up to 32 KB since CUDA 12.1 on Volta and later): no copy to the device
// before the launch, no allocation, and a graph capture records it by value.
// ResNeXt-101's 314 parameters (88.8 M values) make about 650 chunks: one
// launch.
constexpr int64_t kChunk = 262144;
constexpr int kChunksPerLaunch = 768;
struct AdamChunk {
  float *p, *m, *v;
  const float* g;
  int64_t n;
};
struct AdamChunkTable {
  AdamChunk c[kChunksPerLaunch];
};
static_assert(sizeof(AdamChunkTable) + 64 <= 32764, "kernel parameters are limited to 32764 bytes");

// Where the count is on the device (a captured step): skip if asked, else
// advance it, before any block of the update reads it.
__global__ void advance_step_kernel(double* count, const float* skip_if) {
  if (skip_if && *skip_if != 0.f) return;
  *count += 1.0;
}

__global__ void adam_all_kernel(const __grid_constant__ AdamChunkTable t, float b1, float b2, float one_minus_b1,
                                float one_minus_b2, float wd, float eps, float step_size, float bc2_sqrt, double lr, double beta1, double beta2,
                                const double* count, const float* skip_if) {
  if (skip_if && *skip_if != 0.f) return;
  if (count) {  // the host's formula (engine/cpu/optim.cpp), in double, from the device's count
    const double bc1 = 1.0 - pow(beta1, *count), bc2 = 1.0 - pow(beta2, *count);
    step_size = float(lr / bc1);
    bc2_sqrt = float(sqrt(bc2));
  }
  const AdamChunk c = t.c[blockIdx.x];
  for (int64_t i = threadIdx.x; i < c.n; i += blockDim.x) {
    // adam_kernel's arithmetic, operation for operation
    const float gi = wd != 0.f ? c.g[i] + wd * c.p[i] : c.g[i];
    c.m[i] = c.m[i] * b1 + gi * one_minus_b1;
    c.v[i] = c.v[i] * b2 + one_minus_b2 * gi * gi;
    const float denom = sqrtf(c.v[i]) / bc2_sqrt + eps;
    c.p[i] = c.p[i] + (-step_size) * c.m[i] / denom;
  }
}

}  // namespace

void adam_step_all(const std::vector<AdamSlot>& slots, const AdamParams& a) {
  const char* k = "adam_step_all";
  if (slots.empty()) return;
  bool all_float = true;
  for (const AdamSlot& s : slots) all_float &= s.param.dtype() == DType::Float32;
  const bool on_device_count = a.step_count.defined();
  if (!all_float) {  // float64 (gradient checks): one launch per parameter
    ICH_CHECK(!on_device_count, k, ": a step count on the device needs float32 parameters");
    for (const AdamSlot& s : slots) {
      Tensor p = s.param, m = s.exp_avg, v = s.exp_avg_sq;
      adam_step(p, s.grad, m, v, a);
    }
    return;
  }
  double* count = nullptr;
  const float* skip_if = nullptr;
  if (on_device_count) {
    expect(a.step_count, k, "step_count", DType::Float64);
    count = ptr<double>(a.step_count);
    if (a.skip_if.defined()) {
      expect(a.skip_if, k, "skip_if", DType::Float32);
      skip_if = ptr<float>(a.skip_if);
    }
  }
  std::vector<AdamChunk> chunks;
  for (const AdamSlot& s : slots) {
    for (const Tensor* t : TensorList{&s.param, &s.grad, &s.exp_avg, &s.exp_avg_sq})
      expect(*t, k, "param/grad/state", DType::Float32);
    ICH_CHECK(s.param.device() == slots[0].param.device(), k, ": parameters on different devices");
    for (int64_t off = 0; off < s.param.numel(); off += kChunk)
      chunks.push_back({ptr<float>(s.param) + off, ptr<float>(s.exp_avg) + off, ptr<float>(s.exp_avg_sq) + off,
                        ptr<float>(s.grad) + off, std::min(kChunk, s.param.numel() - off)});
  }
  if (chunks.empty()) return;
  Context& c = context_of(slots[0].param);
  if (count) {
    advance_step_kernel<<<1, 1, 0, c.stream>>>(count, skip_if);
    ICH_CUDA_LAUNCH_CHECK();
  }
  const double bc1 = 1.0 - std::pow(a.beta1, double(a.step)), bc2 = 1.0 - std::pow(a.beta2, double(a.step));
  AdamChunkTable table;
  for (size_t first = 0; first < chunks.size(); first += kChunksPerLaunch) {
    const size_t n = std::min<size_t>(kChunksPerLaunch, chunks.size() - first);
    std::copy(chunks.begin() + long(first), chunks.begin() + long(first + n), table.c);
    adam_all_kernel<<<unsigned(n), 512, 0, c.stream>>>(table, float(a.beta1), float(a.beta2),
                                                       float(1.0 - a.beta1), float(1.0 - a.beta2),
                                                       float(a.weight_decay), float(a.eps), float(a.lr / bc1),
                                                       float(std::sqrt(bc2)), a.lr, a.beta1, a.beta2, count, skip_if);
    ICH_CUDA_LAUNCH_CHECK();
  }
}

void adam_step(Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq, const AdamParams& a) {
  const char* k = "adam_step";
  for (const Tensor* t : TensorList{&param, &grad, &exp_avg, &exp_avg_sq}) expect(*t, k, "param/grad/state", param.dtype());
  Context& c = context_of(param);
  dispatch_float(param, k, [&](auto z) {
    using T = decltype(z);
    const double bc1 = 1.0 - std::pow(a.beta1, double(a.step)), bc2 = 1.0 - std::pow(a.beta2, double(a.step));
    adam_kernel<T><<<blocks_for(param.numel()), 256, 0, c.stream>>>(
        ptr<T>(param), ptr<T>(grad), ptr<T>(exp_avg), ptr<T>(exp_avg_sq), param.numel(), T(a.beta1), T(a.beta2),
        T(1.0 - a.beta1), T(1.0 - a.beta2), T(a.weight_decay), T(a.eps), T(a.lr / bc1), T(std::sqrt(bc2)));
    ICH_CUDA_LAUNCH_CHECK();
  });
}

void sgd_step(Tensor& param, const Tensor& grad, Tensor& buf, const SgdParams& s) {
  const char* k = "sgd_step";
  expect(param, k, "param", param.dtype());
  expect(grad, k, "grad", param.dtype());
  if (s.momentum != 0.0) expect(buf, k, "momentum buffer", param.dtype());
  Context& c = context_of(param);
  dispatch_float(param, k, [&](auto z) {
    using T = decltype(z);
    sgd_kernel<T><<<blocks_for(param.numel()), 256, 0, c.stream>>>(
        ptr<T>(param), ptr<T>(grad), s.momentum != 0.0 ? ptr<T>(buf) : nullptr, param.numel(), T(s.lr),
        T(s.momentum), T(1.0 - s.dampening), T(s.weight_decay), s.first_step, s.nesterov);
    ICH_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace ich::cuda
