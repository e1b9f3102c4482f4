// op_util.h: argument checks shared by the differentiable ops.
#pragma once
#include "engine/tensor.h"

namespace ich {

// Every defined tensor in `ts` is on `ref`'s device with `ref`'s dtype.
inline void same_device_dtype(const char* op, const Tensor& ref, std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts) {
    if (!t->defined()) continue;
    ICH_CHECK(t->device() == ref.device(), op, ": ", t->str(), " is not on ", ref.device().str(), " like ", ref.str());
    ICH_CHECK(t->dtype() == ref.dtype(), op, ": ", t->str(), " is not ", dtype_name(ref.dtype()), " like ", ref.str());
  }
}

inline Tensor empty_like(const Tensor& t) { return Tensor::empty(t.shape(), t.dtype(), t.device()); }
inline Tensor empty_on(const Tensor& ref, const Shape& s) { return Tensor::empty(s, ref.dtype(), ref.device()); }

}  // namespace ich
