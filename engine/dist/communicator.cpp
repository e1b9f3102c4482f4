#include "engine/dist/communicator.h"

#include <cstdlib>
#include <string>

#include "engine/error.h"

namespace ich::dist {

#ifdef ICH_WITH_GLOO
std::unique_ptr<Communicator> make_gloo(const DistEnv& env);
#endif
#if defined(ICH_WITH_CUDA) && defined(ICH_WITH_NCCL)
std::unique_ptr<Communicator> make_nccl(const DistEnv& env, int device);
#endif

namespace {

int int_env(const char* name, int fallback, int lo, int hi) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  ICH_CHECK(end && *end == 0 && x >= lo && x <= hi, "environment ", name, "='", v, "': expected a whole number from ",
            lo, " to ", hi);
  return int(x);
}

}  // namespace

DistEnv env_from_environment() {
  DistEnv e;
  e.world = int_env("WORLD_SIZE", 1, 1, 1 << 16);
  e.rank = int_env("RANK", 0, 0, e.world - 1);
  e.local_rank = int_env("LOCAL_RANK", 0, 0, 1 << 16);
  e.master_port = int_env("MASTER_PORT", 29500, 1, 65535);
  e.timeout = std::chrono::seconds(int_env("ICH_DIST_TIMEOUT", 300, 1, 86400));
  if (const char* a = std::getenv("MASTER_ADDR"); a && *a) e.master_addr = a;
  if (e.world > 1)
    ICH_CHECK(std::getenv("RANK") != nullptr, "environment WORLD_SIZE=", e.world,
              " without RANK: start workers with ich-launch (or set RANK, MASTER_ADDR and MASTER_PORT for each)");
  return e;
}

std::unique_ptr<Communicator> make_communicator(const DistEnv& env, Device device) {
  if (device.is_cpu()) {
#ifdef ICH_WITH_GLOO
    return make_gloo(env);
#else
    throw Error("data-parallel training on the CPU needs Gloo, which this build lacks (install libgloo-dev, rebuild)");
#endif
  }
#if defined(ICH_WITH_CUDA) && defined(ICH_WITH_NCCL)
  return make_nccl(env, device.index);
#else
  throw Error("data-parallel training on " + device.str() + " needs NCCL, which this build lacks");
#endif
}

std::string available_backends() {
  std::string s;
#ifdef ICH_WITH_GLOO
  s += "gloo";
#endif
#if defined(ICH_WITH_CUDA) && defined(ICH_WITH_NCCL)
  s += s.empty() ? "nccl" : ", nccl";
#endif
  return s.empty() ? "none" : s;
}

}  // namespace ich::dist
