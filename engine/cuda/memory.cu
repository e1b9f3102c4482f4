// memory.cu: copies between host and device, and fills.
#include "engine/cuda/context.h"
#include "engine/cuda/runtime.h"

#include <algorithm>
#include <vector>

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

void copy_device_async(void* dst, const void* src, size_t bytes, int device) {
  if (bytes == 0) return;
  ICH_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, context(device).stream));
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

namespace {
struct Geometry {
  int dims;
  int64_t shape[6], dst[6], src[6];
};
template <class T> __global__ void strided_kernel(T* d, const T* s, int64_t n, Geometry g) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t rest = i, od = 0, os = 0;
    for (int k = g.dims - 1; k >= 0; --k) {
      const int64_t idx = rest % g.shape[k];
      rest /= g.shape[k];
      od += idx * g.dst[k];
      os += idx * g.src[k];
    }
    d[od] = s[os];
  }
}
}  // namespace

void copy_strided(void* dst, const std::vector<int64_t>& dst_strides, const void* src,
                  const std::vector<int64_t>& src_strides, const std::vector<int64_t>& shape, size_t elem_size,
                  Device dev) {
  int64_t n = 1;
  for (int64_t v : shape) n *= v;
  if (n == 0) return;
  cudaStream_t s = context(dev.index).stream;
  if (dst_strides == src_strides) {  // the same layout: one copy of the span (both are dense tensors here)
    bool dense = true;
    int64_t expect = 1;
    std::vector<size_t> order(shape.size());
    for (size_t k = 0; k < order.size(); ++k) order[k] = k;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return src_strides[a] < src_strides[b]; });
    for (size_t k : order) {
      if (shape[k] == 1) continue;
      dense &= src_strides[k] == expect;
      expect *= shape[k];
    }
    if (dense) {
      ICH_CUDA_CHECK(cudaMemcpyAsync(dst, src, size_t(n) * elem_size, cudaMemcpyDeviceToDevice, s));
      return;
    }
  }
  ICH_CHECK(shape.size() <= 6, "copy_strided: at most 6 dimensions, got ", shape.size());
  Geometry g{int(shape.size()), {}, {}, {}};
  for (size_t k = 0; k < shape.size(); ++k) {
    g.shape[k] = shape[k];
    g.dst[k] = dst_strides[k];
    g.src[k] = src_strides[k];
  }
  switch (elem_size) {
    case 1: strided_kernel<uint8_t><<<blocks_for(n), 256, 0, s>>>(static_cast<uint8_t*>(dst), static_cast<const uint8_t*>(src), n, g); break;
    case 2: strided_kernel<uint16_t><<<blocks_for(n), 256, 0, s>>>(static_cast<uint16_t*>(dst), static_cast<const uint16_t*>(src), n, g); break;
    case 4: strided_kernel<uint32_t><<<blocks_for(n), 256, 0, s>>>(static_cast<uint32_t*>(dst), static_cast<const uint32_t*>(src), n, g); break;
    case 8: strided_kernel<uint64_t><<<blocks_for(n), 256, 0, s>>>(static_cast<uint64_t*>(dst), static_cast<const uint64_t*>(src), n, g); break;
    default: throw Error("copy_strided: element size " + std::to_string(elem_size));
  }
  ICH_CUDA_LAUNCH_CHECK();
}

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
