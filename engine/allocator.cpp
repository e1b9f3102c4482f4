#include "engine/allocator.h"

#include <atomic>
#include <cstdlib>
#include <new>

#include "engine/error.h"

namespace ich {

#ifdef ICH_WITH_CUDA
Allocator& cuda_allocator(int device);  // engine/cuda/allocator.cu
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

}  // namespace

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
