// memory.cu: copies between host and device, and fills.
#include "engine/cuda/context.h"
#include "engine/cuda/runtime.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace ich::cuda {

void copy_bytes(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes) {
  if (bytes == 0) return;
  const int dev = dst_dev.is_cuda() ? dst_dev.index : src_dev.index;
  Context& c = context(dev);
  // Host memory may be pageable and freed right after we return: wait.
  ICH_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, c.stream));
  ICH_CUDA_CHECK(cudaStreamSynchronize(c.stream));
}

namespace {
template <class T> __global__ void fill_kernel(T* p, int64_t n, T v) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    p[i] = v;
}
template <class T> void launch_fill(void* dst, int64_t n, double value, cudaStream_t s) {
  fill_kernel<T><<<blocks_for(n), 256, 0, s>>>(static_cast<T*>(dst), n, T(value));
  ICH_CUDA_LAUNCH_CHECK();
}
// Loads and stores through float (double stays double), rounding to
// nearest even into the 16-bit formats.
template <class T> __device__ double load_as(const void* p, int64_t i) { return double(static_cast<const T*>(p)[i]); }
template <> __device__ double load_as<__nv_bfloat16>(const void* p, int64_t i) {
  return double(__bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]));
}
template <> __device__ double load_as<__half>(const void* p, int64_t i) {
  return double(__half2float(static_cast<const __half*>(p)[i]));
}
template <class T> __device__ void store_as(void* p, int64_t i, double v) { static_cast<T*>(p)[i] = T(v); }
template <> __device__ void store_as<float>(void* p, int64_t i, double v) { static_cast<float*>(p)[i] = float(v); }
template <> __device__ void store_as<__nv_bfloat16>(void* p, int64_t i, double v) {
  static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(float(v));
}
template <> __device__ void store_as<__half>(void* p, int64_t i, double v) {
  static_cast<__half*>(p)[i] = __float2half_rn(float(v));
}
template <class S, class D> __global__ void cast_kernel(void* dst, const void* src, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    store_as<D>(dst, i, load_as<S>(src, i));
}
template <class S> void launch_cast_from(void* dst, DType dt, const void* src, int64_t n, cudaStream_t s) {
  switch (dt) {
    case DType::Float32: cast_kernel<S, float><<<blocks_for(n), 256, 0, s>>>(dst, src, n); break;
    case DType::Float64: cast_kernel<S, double><<<blocks_for(n), 256, 0, s>>>(dst, src, n); break;
    case DType::BFloat16: cast_kernel<S, __nv_bfloat16><<<blocks_for(n), 256, 0, s>>>(dst, src, n); break;
    case DType::Float16: cast_kernel<S, __half><<<blocks_for(n), 256, 0, s>>>(dst, src, n); break;
    default: throw Error(std::string("cast on cuda: to ") + dtype_name(dt) + " is not supported");
  }
  ICH_CUDA_LAUNCH_CHECK();
}
}  // namespace

void cast(void* dst, DType dst_type, const void* src, DType src_type, int64_t n, Device dev) {
  if (n == 0) return;
  cudaStream_t s = context(dev.index).stream;
  switch (src_type) {
    case DType::Float32: return launch_cast_from<float>(dst, dst_type, src, n, s);
    case DType::Float64: return launch_cast_from<double>(dst, dst_type, src, n, s);
    case DType::BFloat16: return launch_cast_from<__nv_bfloat16>(dst, dst_type, src, n, s);
    case DType::Float16: return launch_cast_from<__half>(dst, dst_type, src, n, s);
    default: throw Error(std::string("cast on cuda: from ") + dtype_name(src_type) + " is not supported");
  }
}

void fill(void* dst, Device dev, int64_t n, DType dtype, double value) {
  if (n == 0) return;
  cudaStream_t s = context(dev.index).stream;
  switch (dtype) {
    case DType::Float32: return launch_fill<float>(dst, n, value, s);
    case DType::Float64: return launch_fill<double>(dst, n, value, s);
    case DType::Int64: return launch_fill<int64_t>(dst, n, value, s);
    case DType::UInt8: return launch_fill<uint8_t>(dst, n, value, s);
    default: throw Error(std::string("fill on cuda: dtype ") + dtype_name(dtype) + " not supported");
  }
}

}  // namespace ich::cuda
