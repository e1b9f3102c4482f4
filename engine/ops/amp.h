// amp.h: mixed precision, as PyTorch's autocast + GradScaler do it.
//
// Under an AutocastGuard(bfloat16 or float16), conv2d and linear take their
// operands (activation, weight, bias, and in backward the incoming gradient)
// in the low precision, multiply with float32 accumulation, and round their
// results (output, input and weight gradients) to it too. A convolution's
// output is a bfloat16/float16 tensor, and so, end to end, are the
// activations after it: batch norm takes and gives 16-bit tensors with
// float32 parameters and statistics, and ReLU, add, the fused batch norm +
// add + ReLU and both pools run on 16-bit tensors, each computing in float32
// and rounding its result once (engine/cpu/cpu_util.h). Their gradients are
// 16-bit as well (autograd checks that a gradient has its tensor's dtype).
// float32 stay: the network's input, the linear head's output (the loss
// takes float32 logits, as autocast's BCE does), the loss, the master
// weights and their gradients, and the optimizer state. That halves the
// activations kept for backward, as PyTorch's autocast does.
//
// Where the device's kernel takes 16-bit operands (cuDNN convolutions on a
// GPU: tensor cores) they are given as such. On the CPU, and for linear (a
// GEMM of 2048 x 6), the convolution widens its 16-bit operands to float32
// (exactly), and rounds float32 weights to the low precision in place
// (round_to_precision_): numerically what tensor cores compute, up to the
// order of accumulation. The CPU is the oracle of the CUDA path: the same
// rounding points. That is what lets the CPU tests check the training curve
// of mixed precision.
//
// float16's range stops at 65504 and its smallest subnormal is 2^-24: small
// gradients flush to zero. LossScaler multiplies the loss by a large factor
// before backward and divides the gradients back before the step, skipping
// steps whose gradients overflowed, with torch.cuda.amp.GradScaler's rule
// (start 65536, x0.5 on overflow, x2 after 2000 clean steps). bfloat16 has
// float32's range and needs no scaler.
#pragma once
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace ich {

// "fp32"/"float32", "bf16"/"bfloat16", "fp16"/"float16".
DType parse_precision(const std::string& name);
const char* precision_name(DType p);  // "fp32", "bf16", "fp16"

// The low precision conv2d and linear use on this thread; Float32 when off.
DType autocast_dtype();

class AutocastGuard {
 public:
  explicit AutocastGuard(DType precision);  // Float32 turns autocast off inside
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  DType previous_;
};

// The operands and results of one op under autocast. native: the device's
// kernel takes 16-bit tensors; otherwise it computes on float32 tensors
// holding 16-bit values.
struct MixedOperands {
  DType precision;
  bool native;
  // t (float32, or 16-bit of `precision`) as a `precision` tensor,
  // contiguous in `fmt`: rounded to nearest even, or t itself. What a
  // convolution keeps for backward: half the bytes of float32.
  Tensor low(const Tensor& t, MemoryFormat fmt = MemoryFormat::Contiguous) const;
  // A low-precision tensor as the kernel takes it: itself (native), or
  // widened to float32 (exactly) for the time of one kernel call.
  Tensor for_kernel(const Tensor& t16) const;
  // t for the kernel, contiguous in `fmt`: for_kernel(low(t, fmt)), but a
  // float32 t is rounded in a float32 copy straight away.
  Tensor operand(const Tensor& t, MemoryFormat fmt = MemoryFormat::Contiguous) const;
  // an empty output of the kernel
  Tensor result(const Shape& shape, const Tensor& like, MemoryFormat fmt = MemoryFormat::Contiguous) const;
  // the kernel's result r in dtype `as`: `precision` (a 16-bit tensor) or
  // Float32 (holding values rounded to `precision`), in r's layout
  Tensor finish(const Tensor& r, DType as) const;
};

// A float32 copy of t with every element rounded to `precision`.
Tensor rounded(const Tensor& t, DType precision);

class LossScaler {
 public:
  struct Options {
    double init_scale = 65536, growth_factor = 2, backoff_factor = 0.5;
    int64_t growth_interval = 2000;
  };
  LossScaler() : LossScaler(Options{}) {}
  explicit LossScaler(const Options& o);

  double scale() const { return scale_; }
  int64_t growth_tracker() const { return tracker_; }
  // loss * scale, with its gradient (backward of the scaled loss).
  Tensor scale_loss(const Tensor& loss) const;
  // Divides every defined gradient by the scale; false when any is not
  // finite (the step must then be skipped).
  bool unscale(const std::vector<Tensor>& params) const;
  // After each step: the new scale, by GradScaler's rule.
  void update(bool found_inf);
  // Checkpointing: continue with the same scale.
  void restore(double scale, int64_t growth_tracker);

  // For a captured step (engine/graph.h), where nothing may be decided on
  // the host between backward and the update: the scale and the growth
  // tracker move to one-element float32 tensors on device d (PyTorch's
  // GradScaler keeps them so too; the scale stays a power of two with the
  // default options, so float32 holds it exactly). scale_loss() then
  // multiplies by the tensor; unscale_on_device() flags overflow into
  // found_inf without reading it; update_on_device() applies the rule there,
  // unless skip_if is set (a NaN loss: the eager step returns before the
  // scaler too); read_back() brings scale() and growth_tracker() up to date.
  void keep_on_device(Device d);
  bool on_device() const { return scale_t_.defined(); }
  void unscale_on_device(const std::vector<Tensor>& params, Tensor& found_inf) const;
  void update_on_device(const Tensor& found_inf, const Tensor& skip_if);
  void read_back();

 private:
  Options o_;
  double scale_;
  int64_t tracker_ = 0;
  Tensor scale_t_, tracker_t_;
};

}  // namespace ich
