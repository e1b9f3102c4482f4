// op_util.h: argument checks shared by the differentiable ops.
#pragma once
#include "engine/tensor.h"

namespace ich {

// Every defined tensor in `ts` is on `ref`'s device (with dtype `dtype`).
inline void same_device_as(const char* op, const Tensor& ref, std::initializer_list<const Tensor*> ts,
                           const DType* dtype = nullptr) {
  for (const Tensor* t : ts) {
    if (!t->defined()) continue;
    ICH_CHECK(t->device() == ref.device(), op, ": ", t->str(), " is not on ", ref.device().str(), " like ", ref.str());
    if (dtype)
      ICH_CHECK(t->dtype() == *dtype, op, ": ", t->str(), " is not ", dtype_name(*dtype), " (next to ", ref.str(), ")");
  }
}
// Every defined tensor in `ts` is on `ref`'s device with `ref`'s dtype.
inline void same_device_dtype(const char* op, const Tensor& ref, std::initializer_list<const Tensor*> ts) {
  const DType d = ref.dtype();
  same_device_as(op, ref, ts, &d);
}

// Memory layouts (docs/engine.md, "Channels-last"). An op's 4-D output keeps
// its input's layout (channels-last stays channels-last) and a gradient
// comes back in the layout of what it is the gradient of. Each kernel takes
// the layout it computes in: on a GPU the ops whose CUDA kernels take
// channels-last tensors natively (convolution, batch norm in training,
// pointwise ops) get them as they are; every CPU kernel, and the GPU pools,
// take N,C,H,W, and Layout converts around them.
struct Layout {
  MemoryFormat op = MemoryFormat::Contiguous, kernel = MemoryFormat::Contiguous;
  Tensor in(const Tensor& t) const { return t.contiguous(kernel); }   // an operand, for the kernel
  Tensor out(const Tensor& t) const { return t.contiguous(op); }     // a kernel's result, for the caller
  Tensor empty(const Shape& s, const Tensor& like) const { return Tensor::empty(s, like.dtype(), like.device(), kernel); }
};
inline Layout layout_for(const Tensor& x, bool cuda_takes_channels_last) {
  Layout l;
  l.op = memory_format_of(x);
  l.kernel = x.device().is_cuda() && cuda_takes_channels_last ? l.op : MemoryFormat::Contiguous;
  return l;
}

inline Tensor empty_like(const Tensor& t) { return Tensor::empty(t.shape(), t.dtype(), t.device()); }
inline Tensor empty_on(const Tensor& ref, const Shape& s) { return Tensor::empty(s, ref.dtype(), ref.device()); }

}  // namespace ich
