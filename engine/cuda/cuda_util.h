// cuda_util.h: argument checks and dtype dispatch shared by the CUDA kernels
// (the same contract as engine/cpu/cpu_util.h).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <string>

#include "engine/cuda/context.h"
#include "engine/error.h"
#include "engine/tensor.h"

namespace ich::cuda {

using TensorList = std::initializer_list<const Tensor*>;

template <class F> void dispatch_float(const Tensor& t, const char* kernel, F&& f) {
  switch (t.dtype()) {
    case DType::Float32: f(float{}); return;
    case DType::Float64: f(double{}); return;
    default: throw Error(std::string(kernel) + ": dtype " + dtype_name(t.dtype()) + " is not supported on cuda");
  }
}

// The activation kernels (pointwise, batch norm, pools) also take the 16-bit
// tensors of mixed precision, as the CPU's (engine/cpu/cpu_util.h): f(T{})
// with T = float, double, __nv_bfloat16 or __half; each element widened to
// float32 (widen), computed, and rounded once where it is stored (narrow).
template <class F> void dispatch_activation(const Tensor& t, const char* kernel, F&& f) {
  switch (t.dtype()) {
    case DType::BFloat16: f(__nv_bfloat16{}); return;
    case DType::Float16: f(__half{}); return;
    default: dispatch_float(t, kernel, f);
  }
}
template <class T> struct WideOf { using type = T; };
template <> struct WideOf<__half> { using type = float; };
template <> struct WideOf<__nv_bfloat16> { using type = float; };
template <class T> using wide_t = typename WideOf<T>::type;
__device__ __forceinline__ float widen(float v) { return v; }
__device__ __forceinline__ double widen(double v) { return v; }
__device__ __forceinline__ float widen(__half v) { return __half2float(v); }
__device__ __forceinline__ float widen(__nv_bfloat16 v) { return __bfloat162float(v); }
template <class T> __device__ __forceinline__ T narrow(wide_t<T> v) { return T(v); }
template <> __device__ __forceinline__ __half narrow<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 narrow<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
// From a double (batch norm's float64 sums): to float32 first, as the CPU's
// BFloat16(double) / Float16(double) do, then rounded once more to 16 bits.
template <class T> __device__ __forceinline__ T narrow_from_double(double v) { return narrow<T>(wide_t<T>(v)); }

inline void expect(const Tensor& t, const char* kernel, const char* arg, DType dtype) {
  ICH_CHECK(t.defined(), kernel, ": ", arg, " is undefined");
  ICH_CHECK(t.device().is_cuda(), kernel, ": ", arg, " is on ", t.device().str(), ", expected a CUDA device");
  ICH_CHECK(t.dtype() == dtype, kernel, ": ", arg, " is ", dtype_name(t.dtype()), ", expected ", dtype_name(dtype));
  ICH_CHECK(t.is_contiguous(), kernel, ": ", arg, " ", t.str(), " is not contiguous");
}

// Pointwise kernels walk raw memory: any dense layout will do, provided
// every operand has the same one (N,C,H,W, or N,H,W,C from channels-last
// ops, engine/ops/op_util.h).
inline void expect_dense(const Tensor& t, const Tensor& ref, const char* kernel, const char* arg, DType dtype) {
  ICH_CHECK(t.defined(), kernel, ": ", arg, " is undefined");
  ICH_CHECK(t.device().is_cuda(), kernel, ": ", arg, " is on ", t.device().str(), ", expected a CUDA device");
  ICH_CHECK(t.dtype() == dtype, kernel, ": ", arg, " is ", dtype_name(t.dtype()), ", expected ", dtype_name(dtype));
  ICH_CHECK(t.is_contiguous(memory_format_of(ref)), kernel, ": ", arg, " ", t.str(),
            " is not dense in the layout of ", ref.str());
}

template <class T> T* ptr(const Tensor& t) { return static_cast<T*>(t.raw_data()); }

// cuDNN's data type and the type of its alpha/beta scaling factors.
template <class T> constexpr cudnnDataType_t cudnn_type();
template <> constexpr cudnnDataType_t cudnn_type<float>() { return CUDNN_DATA_FLOAT; }
template <> constexpr cudnnDataType_t cudnn_type<double>() { return CUDNN_DATA_DOUBLE; }

// The alpha/beta scaling factors cuDNN takes: float for float data, double
// for double data.
template <class T> const void* one() {
  static const T v = 1;
  return &v;
}
template <class T> const void* zero() {
  static const T v = 0;
  return &v;
}

// The first algorithm cuDNN's Find* call reports as usable, or -1.
template <class Perf> int first_usable(const Perf* perf, int found) {
  for (int i = 0; i < found; ++i)
    if (perf[i].status == CUDNN_STATUS_SUCCESS) return i;
  return -1;
}

// Owns a cuDNN descriptor.
template <class D, cudnnStatus_t (*Create)(D*), cudnnStatus_t (*Destroy)(D)> class Descriptor {
 public:
  Descriptor() { ICH_CUDNN_CHECK(Create(&d_)); }
  ~Descriptor() { Destroy(d_); }
  Descriptor(const Descriptor&) = delete;
  Descriptor& operator=(const Descriptor&) = delete;
  operator D() const { return d_; }

 private:
  D d_;
};
using TensorDesc = Descriptor<cudnnTensorDescriptor_t, cudnnCreateTensorDescriptor, cudnnDestroyTensorDescriptor>;
using FilterDesc = Descriptor<cudnnFilterDescriptor_t, cudnnCreateFilterDescriptor, cudnnDestroyFilterDescriptor>;
using ConvDesc =
    Descriptor<cudnnConvolutionDescriptor_t, cudnnCreateConvolutionDescriptor, cudnnDestroyConvolutionDescriptor>;

// An NCHW descriptor for a 4-d tensor, or (N,C) seen as (N,C,1,1).
inline void set_nchw(cudnnTensorDescriptor_t d, cudnnDataType_t type, const Shape& s) {
  const int n = int(s[0]), c = int(s[1]), h = s.size() > 2 ? int(s[2]) : 1, w = s.size() > 3 ? int(s[3]) : 1;
  ICH_CUDNN_CHECK(cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NCHW, type, n, c, h, w));
}

// A descriptor from the tensor's own strides: N,C,H,W or channels-last
// (N,H,W,C in memory) alike; (N,C) is seen as (N,C,1,1).
inline void set_strided(cudnnTensorDescriptor_t d, cudnnDataType_t type, const Tensor& t) {
  if (t.dim() != 4) return set_nchw(d, type, t.shape());
  const Shape& s = t.shape();
  const Shape& st = t.strides();
  ICH_CUDNN_CHECK(cudnnSetTensor4dDescriptorEx(d, type, int(s[0]), int(s[1]), int(s[2]), int(s[3]), int(st[0]),
                                               int(st[1]), int(st[2]), int(st[3])));
}

}  // namespace ich::cuda
