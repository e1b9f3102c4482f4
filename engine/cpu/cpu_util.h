// cpu_util.h: small helpers shared by the CPU kernels.
#pragma once
#include <string>
#include <type_traits>
#include <utility>

#include "engine/error.h"
#include "engine/half.h"
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

// The activation kernels (pointwise, batch norm, pools) also take the 16-bit
// tensors of mixed precision (engine/ops/amp.h): f(T{}) with T = float, double,
// BFloat16 or Float16. A 16-bit element is widened to float32, the kernel
// computes as it does for float32 (sums in double where float32's do), and
// the result is rounded to 16 bits once, where it is stored: the rounding
// points of PyTorch's (and our CUDA kernels') bfloat16/float16 ops.
template <class F> void dispatch_activation(const Tensor& t, const char* kernel, F&& f) {
  switch (t.dtype()) {
    case DType::BFloat16: f(BFloat16{}); return;
    case DType::Float16: f(Float16{}); return;
    default: dispatch_float(t, kernel, std::forward<F>(f));
  }
}
template <class T> constexpr bool is_16bit_type = std::is_same_v<T, BFloat16> || std::is_same_v<T, Float16>;
// What an element of T is computed in: float for the 16-bit types, else T.
template <class T> using wide_t = std::conditional_t<is_16bit_type<T>, float, T>;

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
