// allocator.h: one allocator interface per device.
//
// Every byte a tensor owns comes from an Allocator, so that memory use can be
// reported (bytes in use, peak) and compared with PyTorch's. The CPU one hands
// out 64-byte aligned blocks (cache lines, AVX-512 loads); the CUDA one
// (engine/cuda/) caches freed blocks so a warm training step never calls
// cudaMalloc.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

#include "engine/device.h"

namespace ich {

struct AllocatorStats {
  int64_t bytes_in_use = 0;
  int64_t peak_bytes = 0;
  int64_t allocations = 0;  // calls to allocate() since start
};

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t bytes) = 0;
  virtual void deallocate(void* ptr, size_t bytes) = 0;
  virtual AllocatorStats stats() const = 0;
  virtual void reset_peak() = 0;
};

// The allocator that serves a device. Throws ich::Error for a device this
// build cannot serve (CUDA without the CUDA backend).
Allocator& allocator_for(Device d);

// A private pool for a device (a BlockCache of its own, engine/block_cache.h):
// what a captured step allocates (engine/graph.h), kept apart from every
// other tensor so that the addresses a graph recorded are never handed to
// anyone else. A tensor allocated from it keeps it alive.
std::shared_ptr<Allocator> make_private_pool(Device d);

// While a PoolScope lives, tensors this thread allocates on `d` come from
// `pool` (scopes nest; each restores the one before).
class PoolScope {
 public:
  PoolScope(Device d, std::shared_ptr<Allocator> pool);
  ~PoolScope();
  PoolScope(const PoolScope&) = delete;
  PoolScope& operator=(const PoolScope&) = delete;

 private:
  Device previous_device_;
  std::shared_ptr<Allocator> previous_;
};

// The pool of the innermost PoolScope on this thread for `d`; null if none.
const std::shared_ptr<Allocator>& active_pool(Device d);

}  // namespace ich
