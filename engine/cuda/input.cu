// input.cu: batches that travel as bytes. upload_async copies them through a
// pinned staging buffer on a copy stream of its own (the host does not wait;
// the compute stream does, through an event); normalize_u8 turns them into
// the network's float input on the GPU.
#include <cstring>
#include <mutex>

#include "engine/cuda/cuda_util.h"
#include "engine/cuda/runtime.h"
#include "engine/kernels.h"

namespace ich::cuda {

namespace {

struct Uploader {
  cudaStream_t copy = nullptr;
  cudaEvent_t compute_ready = nullptr, copied = nullptr;
  void* pinned = nullptr;
  size_t capacity = 0;
};

std::mutex g_upload_mu;

Uploader& uploader(int device) {
  static Uploader u[16];
  ICH_CHECK(device >= 0 && device < 16, "upload_async: device ", device);
  Uploader& x = u[device];
  if (!x.copy) {
    context(device);  // makes the device current
    ICH_CUDA_CHECK(cudaStreamCreateWithFlags(&x.copy, cudaStreamNonBlocking));
    ICH_CUDA_CHECK(cudaEventCreateWithFlags(&x.compute_ready, cudaEventDisableTiming));
    ICH_CUDA_CHECK(cudaEventCreateWithFlags(&x.copied, cudaEventDisableTiming));
  }
  return x;
}

struct MeanStd {
  float mean[3], sd[3];
};

__global__ void normalize_kernel(const uint8_t* x, float* y, int64_t n, int64_t hw, int64_t channels, MeanStd ms) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int k = int((i / hw) % channels) % 3;
    y[i] = float((double(x[i]) / 255.0 - double(ms.mean[k])) / double(ms.sd[k]));  // the CPU's arithmetic
  }
}

}  // namespace

void upload_async(void* dst, const void* host, size_t bytes, Device dev) {
  if (bytes == 0) return;
  std::lock_guard<std::mutex> lock(g_upload_mu);
  Context& c = context(dev.index);
  Uploader& u = uploader(dev.index);
  // The staging buffer is free once its last copy is done (long since, as a rule).
  ICH_CUDA_CHECK(cudaEventSynchronize(u.copied));
  if (bytes > u.capacity) {
    if (u.pinned) ICH_CUDA_CHECK(cudaFreeHost(u.pinned));
    u.pinned = nullptr;
    u.capacity = 0;
    ICH_CUDA_CHECK(cudaHostAlloc(&u.pinned, bytes, cudaHostAllocDefault));
    u.capacity = bytes;
  }
  std::memcpy(u.pinned, host, bytes);
  // dst came from the caching allocator, which reuses memory in the compute
  // stream's order: the copy starts after the compute work queued so far.
  ICH_CUDA_CHECK(cudaEventRecord(u.compute_ready, c.stream));
  ICH_CUDA_CHECK(cudaStreamWaitEvent(u.copy, u.compute_ready, 0));
  ICH_CUDA_CHECK(cudaMemcpyAsync(dst, u.pinned, bytes, cudaMemcpyHostToDevice, u.copy));
  ICH_CUDA_CHECK(cudaEventRecord(u.copied, u.copy));
  ICH_CUDA_CHECK(cudaStreamWaitEvent(c.stream, u.copied, 0));  // later compute waits for the bytes
}

void normalize_u8(const Tensor& x, Tensor& y) {
  const char* k = "normalize_u8";
  expect(x, k, "x", DType::UInt8);
  expect(y, k, "y", DType::Float32);
  ICH_CHECK(x.dim() == 4 && x.shape() == y.shape(), k, ": x ", x.str(), " and y ", y.str(), " must be (B,C,S,S) alike");
  const int64_t n = x.numel();
  if (n == 0) return;
  const MeanStd ms{{kImageNetMean[0], kImageNetMean[1], kImageNetMean[2]},
                   {kImageNetStd[0], kImageNetStd[1], kImageNetStd[2]}};
  normalize_kernel<<<blocks_for(n), 256, 0, context_of(x).stream>>>(ptr<uint8_t>(x), ptr<float>(y), n,
                                                                     x.size(2) * x.size(3), x.size(1), ms);
  ICH_CUDA_LAUNCH_CHECK();
}

}  // namespace ich::cuda
