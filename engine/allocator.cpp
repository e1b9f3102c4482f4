#include "engine/allocator.h"

#include <atomic>
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

class CpuAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes) override {
    // aligned_alloc needs a size that is a multiple of the alignment.
    size_t rounded = (bytes + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
    ICH_CHECK(p != nullptr, "cpu allocator: out of memory allocating ", bytes, " bytes");
    int64_t now = in_use_.fetch_add(int64_t(bytes)) + int64_t(bytes);
    int64_t peak = peak_.load();
    while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
    }
    count_.fetch_add(1);
    return p;
  }
  void deallocate(void* ptr, size_t bytes) override {
    std::free(ptr);
    in_use_.fetch_sub(int64_t(bytes));
  }
  AllocatorStats stats() const override { return {in_use_.load(), peak_.load(), count_.load()}; }
  void reset_peak() override { peak_.store(in_use_.load()); }

 private:
  std::atomic<int64_t> in_use_{0}, peak_{0}, count_{0};
};

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
    static CpuAllocator cpu;
    return cpu;
  }
#ifdef ICH_WITH_CUDA
  return cuda_allocator(d.index);
#else
  throw Error("device " + d.str() + " requested, but this build has no CUDA backend (CUDA toolkit or cuDNN not found at configure time)");
#endif
}

}  // namespace ich
