// context.h: per-device state of the CUDA backend: one stream on which every
// kernel, copy and library call of the engine is queued (so work is ordered
// and freed memory can be reused at once), and the cuDNN and cuBLAS handles
// bound to it.
#pragma once
#include "engine/cuda/check.h"
#include "engine/tensor.h"

namespace ich::cuda {

struct Context {
  int device = 0;
  cudaStream_t stream = nullptr;
  cudnnHandle_t cudnn = nullptr;
  cublasHandle_t cublas = nullptr;
  int major = 0, minor = 0;  // compute capability
};

// The context of a device, created on first use; makes the device current.
// After a thread's first call for a device: no lock, no driver call.
Context& context(int device);
inline Context& context_of(const Tensor& t) { return context(t.device().index); }

// Grid for a grid-stride loop over n elements.
inline int blocks_for(int64_t n, int threads = 256) {
  const int64_t b = (n + threads - 1) / threads;
  return int(b < 1 ? 1 : (b > 4096 ? 4096 : b));
}

}  // namespace ich::cuda
