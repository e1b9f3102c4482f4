#include "engine/block_cache.h"

#include <algorithm>

namespace ich {

void* BlockCache::allocate(size_t bytes) {
  const size_t size = round(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  void* p = nullptr;
  size_t got = size;
  auto it = free_.lower_bound(size);
  if (it != free_.end() && it->first <= 2 * size) {
    p = it->second;
    got = it->first;
    cached_ -= int64_t(got);
    free_.erase(it);
  } else {
    if (trim_on_miss_ && !free_.empty()) {
      before_release();
      int64_t freed = 0;
      while (freed < int64_t(size) && !free_.empty()) {
        auto last = std::prev(free_.end());
        freed += int64_t(last->first);
        cached_ -= int64_t(last->first);
        put_block(last->second);
        free_.erase(last);
      }
    }
    p = get_block(size);
    ++backing_;
  }
  live_[p] = got;
  in_use_ += int64_t(got);
  peak_ = std::max(peak_, in_use_);
  ++count_;
  if (tracing_) trace_.push_back(size);
  return p;
}

void BlockCache::deallocate(void* p, size_t) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(p);
  if (it == live_.end()) return;  // not ours: never happens, but never free twice
  in_use_ -= int64_t(it->second);
  cached_ += int64_t(it->second);
  free_.emplace(it->second, p);
  live_.erase(it);
}

AllocatorStats BlockCache::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return {in_use_, peak_, count_};
}

void BlockCache::reset_peak() {
  std::lock_guard<std::mutex> lock(mu_);
  peak_ = in_use_;
}

void BlockCache::release_cache() {
  std::lock_guard<std::mutex> lock(mu_);
  release_cached_locked();
}

void BlockCache::release_cached_locked() {
  if (free_.empty()) return;
  before_release();
  for (auto& [size, p] : free_) put_block(p);
  free_.clear();
  cached_ = 0;
}

void BlockCache::release_all() {
  std::lock_guard<std::mutex> lock(mu_);
  release_cached_locked();
  if (!live_.empty()) {  // only when tensors outlive their pool, which Storage's ownership rules out
    before_release();
    for (auto& [p, size] : live_) put_block(p);
    live_.clear();
    in_use_ = 0;
  }
}

int64_t BlockCache::cached() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cached_;
}

int64_t BlockCache::backing_calls() const {
  std::lock_guard<std::mutex> lock(mu_);
  return backing_;
}

void BlockCache::set_trace(bool on) {
  std::lock_guard<std::mutex> lock(mu_);
  tracing_ = on;
  if (on) trace_.clear();
}

std::vector<size_t> BlockCache::trace() const {
  std::lock_guard<std::mutex> lock(mu_);
  return trace_;
}

}  // namespace ich
