// cpu_util.h: small helpers shared by the CPU kernels.
#pragma once
#include <string>

#include "engine/error.h"
#include "engine/tensor.h"

namespace ich::cpu {

using TensorList = std::initializer_list<const Tensor*>;

// Runs f(T{}) with T = float or double per the tensor's dtype.
template <class F> void dispatch_float(const Tensor& t, const char* kernel, F&& f) {
  switch (t.dtype()) {
    case DType::Float32: f(float{}); return;
    case DType::Float64: f(double{}); return;
    default: throw Error(std::string(kernel) + ": dtype " + dtype_name(t.dtype()) + " is not supported on the CPU");
  }
}

// Kernels take contiguous NCHW tensors on the CPU, of one dtype.
inline void expect(const Tensor& t, const char* kernel, const char* arg, DType dtype) {
  ICH_CHECK(t.defined(), kernel, ": ", arg, " is undefined");
  ICH_CHECK(t.device().is_cpu(), kernel, ": ", arg, " is on ", t.device().str(), ", expected the CPU");
  ICH_CHECK(t.dtype() == dtype, kernel, ": ", arg, " is ", dtype_name(t.dtype()), ", expected ", dtype_name(dtype));
  ICH_CHECK(t.is_contiguous(), kernel, ": ", arg, " ", t.str(), " is not contiguous");
}

// Fixed-size blocks for reductions: partial sums per block, then the blocks
// in order. The result does not depend on the thread count.
constexpr int64_t kReduceBlock = 4096;

}  // namespace ich::cpu
