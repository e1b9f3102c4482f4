// progress.h: progress for long work: a bar with items done, rate and ETA on
// a terminal, plain lines every few seconds otherwise (logs, CI).
#pragma once
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

namespace ich {

class Progress {
 public:
  explicit Progress(std::string what, std::string unit = "files")
      : what_(std::move(what)), unit_(std::move(unit)), tty_(isatty(STDERR_FILENO)), t0_(clock::now()) {}

  // Call as often as you like; it prints at most a few times a second.
  void operator()(int64_t done, int64_t total) {
    const auto now = clock::now();
    const double since = std::chrono::duration<double>(now - last_).count();
    const bool final = done >= total;
    if (!final && since < (tty_ ? 0.2 : 5.0)) return;
    if (final && finished_) return;
    finished_ = final;
    last_ = now;
    const double el = std::chrono::duration<double>(now - t0_).count();
    const double rate = el > 0 ? double(done) / el : 0;
    const double eta = rate > 0 ? double(total - done) / rate : 0;
    if (tty_) {
      const int width = 30, filled = total > 0 ? int(width * done / total) : width;
      std::fprintf(stderr, "\r%s [%s%s] %lld/%lld %s, %.1f/s, ETA %s  ", what_.c_str(),
                   std::string(size_t(filled), '#').c_str(), std::string(size_t(width - filled), '.').c_str(),
                   (long long)done, (long long)total, unit_.c_str(), rate, fmt(eta).c_str());
      if (final) std::fprintf(stderr, "\n");
    } else {
      std::fprintf(stderr, "%s: %lld/%lld %s, %.1f/s, ETA %s\n", what_.c_str(), (long long)done, (long long)total,
                   unit_.c_str(), rate, fmt(eta).c_str());
    }
    std::fflush(stderr);
  }

 private:
  using clock = std::chrono::steady_clock;
  static std::string fmt(double s) {
    char b[32];
    const long t = long(s + 0.5);
    std::snprintf(b, sizeof b, "%ld:%02ld", t / 60, t % 60);
    return b;
  }
  std::string what_, unit_;
  bool tty_, finished_ = false;
  clock::time_point t0_, last_{};
};

}  // namespace ich
