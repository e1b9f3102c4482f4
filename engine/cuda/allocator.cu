// allocator.cu: the caching device allocator.
//
// cudaMalloc and cudaFree synchronise the device and cost tens of
// microseconds, so a training step must not call them: freed blocks are kept
// and handed out again by engine/block_cache.h's rule. All work runs on one
// stream per device, so a block freed by a tensor can be reused at once: any
// kernel that still reads it was queued before any kernel that will write it.
// When cudaMalloc fails, the cache is released and the call retried once;
// then the error says how much was in use and suggests a smaller batch.
//
// A private pool (make_private_pool) is a second cache of the same kind that
// only a captured step allocates from (engine/graph.h): the addresses a CUDA
// graph recorded stay the graph's, and its blocks are given back only when
// the last tensor using them and the graph are gone.
#include <cstdio>
#include <memory>
#include <mutex>
#include <vector>

#include "engine/block_cache.h"
#include "engine/cuda/context.h"
#include "engine/cuda/runtime.h"
#include "engine/error.h"

namespace ich::cuda {

namespace {

class CachingAllocator final : public BlockCache {
 public:
  explicit CachingAllocator(int device) : device_(device) {}
  ~CachingAllocator() override {  // private pools only: the per-device ones live until exit
    try {
      release_all();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "warning: releasing a private GPU memory pool: %s\n", e.what());
    }
  }

 protected:
  void* get_block(size_t size) override {
    context(device_);  // makes the device current
    const bool capturing = capturing_now();
    void* p = nullptr;
    cudaError_t e;
    {
      // While this thread captures a graph, cudaMalloc is one of the calls
      // the capture forbids by default; it is safe here (not stream-ordered
      // work), so it is allowed for this call, as PyTorch's allocator does.
      RelaxedCapture relaxed;
      e = cudaMalloc(&p, size);
      // Out of memory: give the cached blocks back and try once more. Not
      // during a capture: blocks freed earlier in the captured step may be
      // read by nodes already recorded, and queued work cannot be waited for.
      if (e == cudaErrorMemoryAllocation && !capturing) {
        cudaGetLastError();
        release_cached_locked();
        e = cudaMalloc(&p, size);
      }
    }
    if (e == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      throw Error("out of GPU memory on cuda:" + std::to_string(device_) + " allocating " +
                  std::to_string(size >> 20) + " MiB (" + std::to_string(in_use_locked() >> 20) +
                  " MiB in use by tensors" + (capturing ? ", while capturing the step as a CUDA graph" : "") +
                  "): try a smaller --batch");
    }
    ICH_CUDA_CHECK(e);
    return p;
  }
  void put_block(void* p) override { ICH_CUDA_CHECK(cudaFree(p)); }
  void before_release() override {
    // Kept blocks may still be read by queued work: wait for it. (Never
    // called while capturing: get_block does not release then, and nothing
    // else runs inside a captured step.)
    ICH_CUDA_CHECK(cudaDeviceSynchronize());
  }

 private:
  bool capturing_now() const {
    cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
    ICH_CUDA_CHECK(cudaStreamIsCapturing(context(device_).stream, &st));
    return st != cudaStreamCaptureStatusNone;
  }
  // This thread's capture mode set to relaxed for its lifetime, and restored
  // however the scope is left.
  struct RelaxedCapture {
    cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
    RelaxedCapture() { ICH_CUDA_CHECK(cudaThreadExchangeStreamCaptureMode(&mode)); }
    ~RelaxedCapture() { cudaThreadExchangeStreamCaptureMode(&mode); }
  };

  int device_;
};

std::mutex g_mu;
// Never destroyed: at exit the CUDA runtime may already be gone, and the
// driver takes the memory back anyway.
std::vector<CachingAllocator*> g_allocators;

CachingAllocator& get(int device) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_allocators.size() <= size_t(device)) g_allocators.resize(size_t(device) + 1, nullptr);
  auto& a = g_allocators[size_t(device)];
  if (!a) a = new CachingAllocator(device);
  return *a;
}

}  // namespace

Allocator& allocator(int device) {
  context(device);  // checks that the device exists
  return get(device);
}
void empty_cache(int device) { get(device).release_cache(); }
int64_t cached_bytes(int device) { return get(device).cached(); }
int64_t device_malloc_count(int device) { return get(device).backing_calls(); }
std::shared_ptr<Allocator> make_private_pool(int device) {
  context(device);
  return std::make_shared<CachingAllocator>(device);
}

}  // namespace ich::cuda

namespace ich {
Allocator& cuda_allocator(int device) { return cuda::allocator(device); }
}  // namespace ich
