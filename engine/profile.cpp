#include "engine/profile.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>

#ifdef ICH_WITH_CUDA
#include "engine/cuda/runtime.h"
#endif

namespace ich::profile {

namespace {
std::atomic<bool> g_on{false};
std::mutex g_mu;
std::map<std::string, Entry> g_entries;

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

void sync(Device d) {
#ifdef ICH_WITH_CUDA
  if (d.is_cuda()) cuda::synchronize(d.index);
#else
  (void)d;
#endif
}
}  // namespace

void enable(bool on) { g_on = on; }
bool enabled() { return g_on.load(std::memory_order_relaxed); }

void Scope::start() {
  sync(device_);  // earlier work is not this kernel's
  t0_ = now();
}

void Scope::stop() {
  sync(device_);
  const double dt = now() - t0_;
  std::lock_guard<std::mutex> l(g_mu);
  Entry& e = g_entries[kernel_];
  e.kernel = kernel_;
  ++e.calls;
  e.seconds += dt;
}

std::vector<Entry> take() {
  std::lock_guard<std::mutex> l(g_mu);
  std::vector<Entry> out;
  for (auto& [k, e] : g_entries) out.push_back(e);
  g_entries.clear();
  std::sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) { return a.seconds > b.seconds; });
  return out;
}

const char* category(const std::string& k) {
  auto starts = [&](const char* p) { return k.rfind(p, 0) == 0; };
  if (starts("conv2d")) return "conv";
  if (starts("batch_norm")) return "batchnorm";
  if (starts("max_pool") || starts("adaptive_avg_pool")) return "pooling";
  if (starts("linear")) return "linear";
  if (starts("bce")) return "loss";
  if (starts("adam") || starts("sgd") || starts("unscale") || starts("update_scale")) return "optimizer";
  if (starts("round_to_precision") || starts("layout")) return "cast";
  return "elementwise";
}

}  // namespace ich::profile
