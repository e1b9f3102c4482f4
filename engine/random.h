// random.h: the seeded generator behind initialisers, augmentation and data
// order.
//
// xoshiro256** seeded through splitmix64: fast, statistically sound, and
// fully specified here, so a seed gives the same stream on every compiler and
// machine (std::normal_distribution does not promise that). Normals come from
// the Box-Muller transform. The state can be saved and restored, which is how
// a resumed training run continues the same random stream.
#pragma once
#include <array>
#include <cstdint>

namespace ich {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) { seed_with(seed); }
  void seed_with(uint64_t seed);

  uint64_t next_u64();
  double uniform();                       // [0, 1), 53 random bits
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  double normal();                        // mean 0, std 1
  uint64_t below(uint64_t n);             // uniform integer in [0, n), unbiased

  struct State {
    std::array<uint64_t, 4> s;
    double spare;
    bool has_spare;
  };
  State state() const { return {s_, spare_, has_spare_}; }
  void set_state(const State& st) {
    s_ = st.s;
    spare_ = st.spare;
    has_spare_ = st.has_spare;
  }

 private:
  std::array<uint64_t, 4> s_{};
  double spare_ = 0.0;
  bool has_spare_ = false;
};

}  // namespace ich
