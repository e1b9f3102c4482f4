// allocator.cu: the caching device allocator.
//
// cudaMalloc and cudaFree synchronise the device and cost tens of
// microseconds, so a training step must not call them. Freed blocks go to a
// per-device cache keyed by size; a request takes the smallest cached block
// that fits and is not more than twice as large (so big blocks are not
// wasted on small tensors), and only calls cudaMalloc when none does. Sizes
// are rounded up to 512 bytes. All work runs on one stream per device, so a
// block freed by a tensor can be handed out again at once: any kernel that
// still reads it was queued before any kernel that will write it.
// When cudaMalloc fails, the cache is released and the call retried once;
// then the error says how much was in use and suggests a smaller batch.
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "engine/cuda/context.h"
#include "engine/cuda/runtime.h"
#include "engine/error.h"

namespace ich::cuda {

namespace {

class CachingAllocator final : public Allocator {
 public:
  explicit CachingAllocator(int device) : device_(device) {}

  void* allocate(size_t bytes) override {
    const size_t size = round(bytes);
    std::lock_guard<std::mutex> lock(mu_);
    void* p = nullptr;
    auto it = free_.lower_bound(size);
    if (it != free_.end() && it->first <= 2 * size) {
      p = it->second;
      live_[p] = it->first;
      cached_ -= int64_t(it->first);
      free_.erase(it);
    } else {
      p = fresh(size);
      live_[p] = size;
    }
    in_use_ += int64_t(live_[p]);
    peak_ = std::max(peak_, in_use_);
    ++count_;
    return p;
  }

  void deallocate(void* p, size_t) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(p);
    if (it == live_.end()) return;  // not ours: never happens, but never free twice
    in_use_ -= int64_t(it->second);
    cached_ += int64_t(it->second);
    free_.emplace(it->second, p);
    live_.erase(it);
  }

  AllocatorStats stats() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return {in_use_, peak_, count_};
  }
  void reset_peak() override {
    std::lock_guard<std::mutex> lock(mu_);
    peak_ = in_use_;
  }

  void release_cache() {
    std::lock_guard<std::mutex> lock(mu_);
    release_locked();
  }
  int64_t cached() const {
    std::lock_guard<std::mutex> lock(mu_);
    return cached_;
  }
  int64_t mallocs() const {
    std::lock_guard<std::mutex> lock(mu_);
    return mallocs_;
  }

 private:
  static size_t round(size_t n) { return n == 0 ? 512 : (n + 511) / 512 * 512; }

  void* fresh(size_t size) {
    ICH_CUDA_CHECK(cudaSetDevice(device_));
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, size);
    if (e == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      release_locked();
      e = cudaMalloc(&p, size);
    }
    if (e == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      throw Error("out of GPU memory on cuda:" + std::to_string(device_) + " allocating " +
                  std::to_string(size >> 20) + " MiB (" + std::to_string(in_use_ >> 20) +
                  " MiB in use by tensors): try a smaller --batch");
    }
    ICH_CUDA_CHECK(e);
    ++mallocs_;
    return p;
  }

  void release_locked() {
    if (free_.empty()) return;
    ICH_CUDA_CHECK(cudaDeviceSynchronize());
    for (auto& [size, p] : free_) ICH_CUDA_CHECK(cudaFree(p));
    free_.clear();
    cached_ = 0;
  }

  int device_;
  mutable std::mutex mu_;
  std::multimap<size_t, void*> free_;
  std::unordered_map<void*, size_t> live_;
  int64_t in_use_ = 0, peak_ = 0, count_ = 0, cached_ = 0, mallocs_ = 0;
};

std::mutex g_mu;
std::vector<std::unique_ptr<CachingAllocator>> g_allocators;

CachingAllocator& get(int device) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_allocators.size() <= size_t(device)) g_allocators.resize(size_t(device) + 1);
  auto& a = g_allocators[size_t(device)];
  if (!a) a = std::make_unique<CachingAllocator>(device);
  return *a;
}

}  // namespace

Allocator& allocator(int device) {
  context(device);  // checks that the device exists
  return get(device);
}
void empty_cache(int device) { get(device).release_cache(); }
int64_t cached_bytes(int device) { return get(device).cached(); }
int64_t device_malloc_count(int device) { return get(device).mallocs(); }

}  // namespace ich::cuda

namespace ich {
Allocator& cuda_allocator(int device) { return cuda::allocator(device); }
}  // namespace ich
