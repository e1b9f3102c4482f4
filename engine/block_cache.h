// block_cache.h: the caching rule shared by the pooled allocators.
//
// Freed blocks are kept, keyed by size; a request takes the smallest kept
// block that fits and is not more than twice as large (so big blocks are not
// wasted on small tensors), and asks the backing memory (cudaMalloc, or the
// C heap for the CPU's private pools) only when none does. Sizes are rounded
// up to 512 bytes. A block freed can be handed out again at once: the users
// of a pool queue all their work in one order (one stream, or the CPU's
// program order), so whatever still reads the block was queued first.
//
// A pool can also record the sizes it hands out (trace): a step that is to
// be captured and replayed (engine/graph.h) must ask for the same sizes in
// the same order every time, and the trace is how the tests see that.
#pragma once
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "engine/allocator.h"

namespace ich {

class BlockCache : public Allocator {
 public:
  void* allocate(size_t bytes) override;
  void deallocate(void* ptr, size_t bytes) override;  // a pointer not from this pool is ignored
  AllocatorStats stats() const override;
  void reset_peak() override;

  void release_cache();          // gives every kept block back to the backing memory
  int64_t cached() const;        // bytes kept for reuse
  int64_t backing_calls() const; // times the backing memory was asked

  // Trim on a miss: before the backing memory is asked for a block, kept
  // blocks are given back until as many bytes as the request are freed
  // (largest first). Kept + used bytes then never grow past the peak in use
  // by more than one request, where a plain cache can hold a step's worth of
  // blocks of the wrong sizes beside the ones in use.
  void set_trim_on_miss(bool on) { trim_on_miss_ = on; }

  void set_trace(bool on);           // start (clearing) or stop recording
  std::vector<size_t> trace() const; // the rounded sizes handed out while recording

 protected:
  // The backing memory; called with the pool's lock held. get_block may call
  // release_cached_locked() and try again when memory ran out.
  virtual void* get_block(size_t bytes) = 0;
  virtual void put_block(void* p) = 0;
  virtual void before_release() {}  // e.g. wait for the device: kept blocks may still be read
  void release_cached_locked();
  // Derived destructors call this: virtual calls do not reach them from ours.
  void release_all();
  int64_t in_use_locked() const { return in_use_; }

 private:
  static size_t round(size_t n) { return n == 0 ? 512 : (n + 511) / 512 * 512; }

  mutable std::mutex mu_;
  std::multimap<size_t, void*> free_;
  std::unordered_map<void*, size_t> live_;
  int64_t in_use_ = 0, peak_ = 0, count_ = 0, cached_ = 0, backing_ = 0;
  bool tracing_ = false, trim_on_miss_ = false;
  std::vector<size_t> trace_;
};

}  // namespace ich
