#include "io/parallel.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace ich {

void run_parallel(int64_t n, int threads, const std::function<void(int64_t, int64_t)>& progress,
                  const std::function<void(int64_t)>& fn) {
  if (threads <= 0) threads = int(std::max(1u, std::thread::hardware_concurrency()));
  std::atomic<int64_t> next{0}, done{0};
  std::atomic<bool> failed{false};
  std::exception_ptr failure;
  std::mutex mu;
  std::condition_variable finished;  // wakes the reporter when the last item is done
  auto worker = [&] {
    for (int64_t i; !failed && (i = next++) < n;) {
      try {
        fn(i);
      } catch (...) {
        std::lock_guard<std::mutex> l(mu);
        if (!failure) failure = std::current_exception();
        failed = true;
      }
      if (++done == n) {
        std::lock_guard<std::mutex> l(mu);
        finished.notify_all();
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(worker);
  while (progress && done < n && !failed) {
    progress(done, n);
    std::unique_lock<std::mutex> l(mu);
    finished.wait_for(l, std::chrono::milliseconds(200), [&] { return done >= n || failed; });
  }
  for (auto& t : pool) t.join();
  if (failure) std::rethrow_exception(failure);
  if (progress) progress(n, n);
}

}  // namespace ich
