// memory.cu: copies between host and device, and fills.
#include "engine/cuda/context.h"
#include "engine/cuda/runtime.h"

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
}  // namespace

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
