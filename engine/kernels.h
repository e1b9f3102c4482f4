// kernels.h: the device-level contract of every op, declared once.
//
// Each kernel exists twice with the same signature: ich::cpu:: (engine/cpu/,
// the readable reference and the oracle) and ich::cuda:: (engine/cuda/, cuDNN,
// cuBLAS and plain CUDA kernels). The differentiable ops in engine/ops/ call
// them through ICH_DISPATCH, so layers never branch on the device, and a
// kernel missing on a device is an error naming the kernel, never a silent
// copy to the CPU.
//
// Contract shared by all kernels:
//   - inputs are contiguous (NCHW for images) unless the kernel says so;
//   - outputs are allocated by the caller with the right shape, dtype and
//     device, and are fully WRITTEN (never accumulated into), except the
//     *_inplace kernels and the optimizer steps, which update their first
//     argument;
//   - float32 and float64 are supported on the CPU; other dtypes are errors.
#pragma once
#include <cstdint>

#include "engine/profile.h"

#include "engine/tensor.h"

namespace ich {

struct Conv2dParams {
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t groups = 1;
};

struct Pool2dParams {
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
};

struct AdamParams {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  int64_t step = 1;  // 1-based count, after this step
  // The count kept on the device instead (adam_step_all only; a captured
  // step cannot take it from the host, engine/graph.h): a one-element
  // float64 tensor beside the parameters, advanced by one and then used in
  // place of `step`, unless skip_if (one float32 element, e.g. the found_inf
  // of unscale_check_) is non-zero, in which case nothing at all changes.
  Tensor step_count, skip_if;
};

// One parameter's tensors for the all-parameters Adam step.
struct AdamSlot {
  Tensor param, grad, exp_avg, exp_avg_sq;
};

struct SgdParams {
  double lr = 1e-2, momentum = 0.0, dampening = 0.0, weight_decay = 0.0;
  bool nesterov = false;
  bool first_step = true;  // the momentum buffer is initialised from the gradient
};

// ImageNet's per-channel mean and std, which normalize_u8 applies (and
// data/augment.cpp, for float batches).
constexpr float kImageNetMean[3] = {0.485f, 0.456f, 0.406f};
constexpr float kImageNetStd[3] = {0.229f, 0.224f, 0.225f};

namespace cpu {
#include "engine/kernel_decls.inc"
}
#ifdef ICH_WITH_CUDA
namespace cuda {
#include "engine/kernel_decls.inc"
}
#endif

[[noreturn]] void missing_kernel(const char* kernel, Device d);

}  // namespace ich

// The profile::Scope (engine/profile.h) lives to the end of the full
// expression: it times the call when profiling is on.
#ifdef ICH_WITH_CUDA
#define ICH_DISPATCH(device, kernel, ...)         \
  (::ich::profile::Scope(#kernel, (device)),      \
   (device).is_cpu() ? ::ich::cpu::kernel(__VA_ARGS__) : ::ich::cuda::kernel(__VA_ARGS__))
#else
#define ICH_DISPATCH(device, kernel, ...)         \
  (::ich::profile::Scope(#kernel, (device)),      \
   (device).is_cpu() ? ::ich::cpu::kernel(__VA_ARGS__) : ::ich::missing_kernel(#kernel, (device)))
#endif
