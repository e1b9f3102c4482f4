#include "engine/allocator.h"

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>

#include "engine/block_cache.h"
#include "engine/error.h"

namespace ich {

#ifdef ICH_WITH_CUDA
Allocator& cuda_allocator(int device);  // engine/cuda/allocator.cu
namespace cuda {
std::shared_ptr<Allocator> make_private_pool(int device);  // engine/cuda/allocator.cu
}
#endif

namespace {

// The CPU's private pool: the same caching rule over the C heap, so that a
// step emulated on the CPU (engine/graph.h) plans its memory as on a GPU.
class CpuPool final : public BlockCache {
 public:
  ~CpuPool() override { release_all(); }

 protected:
  void* get_block(size_t bytes) override {
    void* p = std::aligned_alloc(64, bytes);  // bytes: a multiple of 512
    ICH_CHECK(p != nullptr, "cpu pool: out of memory allocating ", bytes, " bytes");
    return p;
  }
  void put_block(void* p) override { std::free(p); }
};

// The CPU's allocator. Blocks of 1 MiB and more (activations, their
// gradients, im2col buffers) are kept when freed and handed out again by the
// caching rule (block_cache.h): fresh ones from the C heap arrive as pages
// the kernel maps and zeroes on first touch, and a ResNeXt-101 step touching
// ~1 GB of new pages spent a fifth of its time in page faults. The cache
// trims on a miss (kept blocks of the wrong sizes are given back before new
// memory is asked for), so what it holds beside the tensors in use never
// adds up to more than the peak in use: without that, inference at batch 32
// held 0.6 GiB of kept blocks on top of a 0.7 GiB peak. Small blocks go
// straight to the C heap. The statistics count the bytes asked for.
// Under AddressSanitizer nothing is cached: a block handed out again would
// hide a use after free from it.
#if defined(__SANITIZE_ADDRESS__)
#define ICH_CPU_CACHE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ICH_CPU_CACHE 0
#endif
#endif
#ifndef ICH_CPU_CACHE
#define ICH_CPU_CACHE 1
#endif
class CpuAllocator final : public Allocator {
 public:
  static constexpr size_t kCacheFrom = ICH_CPU_CACHE ? size_t(1) << 20 : SIZE_MAX;

  CpuAllocator() { cache_.set_trim_on_miss(true); }

  void* allocate(size_t bytes) override {
    void* p = nullptr;
    if (bytes >= kCacheFrom) {
      p = cache_.allocate(bytes);
    } else {
      // aligned_alloc needs a size that is a multiple of the alignment.
      const size_t rounded = (bytes + 63) / 64 * 64;
      p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
      ICH_CHECK(p != nullptr, "cpu allocator: out of memory allocating ", bytes, " bytes");
    }
    count_.fetch_add(1);
    int64_t now = in_use_.fetch_add(int64_t(bytes)) + int64_t(bytes);
    int64_t peak = peak_.load();
    while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
    }
    count_.fetch_add(1);
    return p;
  }
  void deallocate(void* ptr, size_t bytes) override {
    if (bytes >= kCacheFrom) {
      cache_.deallocate(ptr, bytes);
    } else {
      std::free(ptr);
    }
    in_use_.fetch_sub(int64_t(bytes));
  }
  AllocatorStats stats() const override { return {in_use_.load(), peak_.load(), count_.load()}; }
  void reset_peak() override { peak_.store(in_use_.load()); }

 private:
  CpuPool cache_;
  std::atomic<int64_t> in_use_{0}, peak_{0}, count_{0};
};

thread_local Device t_pool_device = Device::cpu();
thread_local std::shared_ptr<Allocator> t_pool;

}  // namespace

std::shared_ptr<Allocator> make_private_pool(Device d) {
  if (d.is_cpu()) return std::make_shared<CpuPool>();
#ifdef ICH_WITH_CUDA
  return cuda::make_private_pool(d.index);
#else
  throw Error("device " + d.str() + " requested, but this build has no CUDA backend");
#endif
}

PoolScope::PoolScope(Device d, std::shared_ptr<Allocator> pool)
    : previous_device_(t_pool_device), previous_(std::move(t_pool)) {
  t_pool_device = d;
  t_pool = std::move(pool);
}

PoolScope::~PoolScope() {
  t_pool_device = previous_device_;
  t_pool = std::move(previous_);
}

const std::shared_ptr<Allocator>& active_pool(Device d) {
  static const std::shared_ptr<Allocator> none;
  return t_pool && t_pool_device == d ? t_pool : none;
}

Allocator& allocator_for(Device d) {
  if (d.is_cpu()) {
    // Never destroyed: a tensor held by a static object may be freed after
    // the allocator's own static lifetime would have ended.
    static CpuAllocator* cpu = new CpuAllocator;
    return *cpu;
  }
#ifdef ICH_WITH_CUDA
  return cuda_allocator(d.index);
#else
  throw Error("device " + d.str() + " requested, but this build has no CUDA backend (CUDA toolkit or cuDNN not found at configure time)");
#endif
}

}  // namespace ich
