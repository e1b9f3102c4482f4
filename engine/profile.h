// profile.h: where the time of a training step goes, kernel by kernel
// (ich-bench-train --profile).
//
// Every kernel call goes through ICH_DISPATCH (engine/kernels.h), which opens
// a profile::Scope around it. While profiling is off that is one branch;
// while on, the scope times the call, and on a GPU it synchronises the
// device before and after, so that each kernel's time is its own (the run is
// then slower than a normal one: use the profile for shares, the unprofiled
// run for speed).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/device.h"

namespace ich::profile {

void enable(bool on);
bool enabled();

struct Entry {
  std::string kernel;
  int64_t calls = 0;
  double seconds = 0;
};
// What was recorded since the last take(), largest time first; resets.
std::vector<Entry> take();
// The family a kernel belongs to: conv, batchnorm, elementwise, pooling,
// linear, loss, optimizer, cast (precision conversions).
const char* category(const std::string& kernel);

class Scope {
 public:
  Scope(const char* kernel, Device d) : kernel_(enabled() ? kernel : nullptr), device_(d) {
    if (kernel_) start();
  }
  ~Scope() {
    if (kernel_) stop();
  }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  void start();
  void stop();
  const char* kernel_;
  Device device_;
  double t0_ = 0;
};

}  // namespace ich::profile
