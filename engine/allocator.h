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

}  // namespace ich
