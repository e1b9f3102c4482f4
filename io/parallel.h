// parallel.h: runs fn(0..n-1) on worker threads, in any order, while the
// calling thread reports progress(done, n) about five times a second. The
// first exception stops the remaining work and is rethrown here.
#pragma once
#include <cstdint>
#include <functional>

namespace ich {

void run_parallel(int64_t n, int threads, const std::function<void(int64_t, int64_t)>& progress,
                  const std::function<void(int64_t)>& fn);

}  // namespace ich
