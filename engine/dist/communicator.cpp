#include "engine/dist/communicator.h"

#include <csignal>
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

bool has_env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v;
}

// srun's workers: SLURM_NTASKS of them, SLURM_PROCID this one, SLURM_LOCALID
// on its node; the rendezvous on the first node of the job unless
// MASTER_ADDR says otherwise, on MASTER_PORT or 29500 + the job id mod 1000
// (two jobs sharing a node do not meet on one port).
void from_slurm(DistEnv& e) {
  e.world = int_env("SLURM_NTASKS", 1, 1, 1 << 16);
  ICH_CHECK(e.world == 1 || has_env("SLURM_PROCID"), "environment SLURM_NTASKS=", e.world,
            " without SLURM_PROCID: start the workers with srun");
  e.rank = int_env("SLURM_PROCID", 0, 0, e.world - 1);
  e.local_rank = int_env("SLURM_LOCALID", 0, 0, 1 << 16);
  const int job = int_env("SLURM_JOB_ID", 0, 0, 1 << 30);
  e.master_port = int_env("MASTER_PORT", 29500 + job % 1000, 1, 65535);
  if (!has_env("MASTER_ADDR") && e.world > 1) {
    const char* list = has_env("SLURM_JOB_NODELIST") ? std::getenv("SLURM_JOB_NODELIST") : std::getenv("SLURM_NODELIST");
    ICH_CHECK(list && *list, "environment SLURM_NTASKS=", e.world,
              " without SLURM_JOB_NODELIST: cannot tell where rank 0 runs (set MASTER_ADDR)");
    e.master_addr = first_slurm_host(list);
  }
}

}  // namespace

std::string first_slurm_host(const std::string& list) {
  // "a[01-04,07],b" -> "a01"; "n[1-2]-ib" -> "n1-ib"; "host1,host2" -> "host1"
  size_t end = 0;
  int depth = 0;
  for (; end < list.size(); ++end) {
    if (list[end] == '[') ++depth;
    if (list[end] == ']') --depth;
    if (list[end] == ',' && depth == 0) break;
  }
  const std::string first = list.substr(0, end);
  const size_t open = first.find('[');
  if (open == std::string::npos) {
    ICH_CHECK(!first.empty() && first.find(']') == std::string::npos, "SLURM node list '", list, "' is malformed");
    return first;
  }
  const size_t close = first.find(']', open);
  ICH_CHECK(close != std::string::npos && close > open + 1, "SLURM node list '", list, "' is malformed");
  const std::string inside = first.substr(open + 1, close - open - 1);
  const size_t stop = inside.find_first_of(",-");
  const std::string start = inside.substr(0, stop);
  ICH_CHECK(!start.empty() && start.find_first_not_of("0123456789") == std::string::npos, "SLURM node list '", list,
            "': '", inside, "' is not a range of numbers");
  return first.substr(0, open) + start + first.substr(close + 1);
}

DistEnv env_from_environment() {
  DistEnv e;
  if (!has_env("WORLD_SIZE") && has_env("SLURM_NTASKS")) {
    from_slurm(e);
  } else {
    e.world = int_env("WORLD_SIZE", 1, 1, 1 << 16);
    e.rank = int_env("RANK", 0, 0, e.world - 1);
    e.local_rank = int_env("LOCAL_RANK", 0, 0, 1 << 16);
    e.master_port = int_env("MASTER_PORT", 29500, 1, 65535);
  }
  e.timeout = std::chrono::seconds(int_env("ICH_DIST_TIMEOUT", 300, 1, 86400));
  if (const char* a = std::getenv("MASTER_ADDR"); a && *a) e.master_addr = a;
  if (e.world > 1 && !has_env("SLURM_PROCID"))
    ICH_CHECK(std::getenv("RANK") != nullptr, "environment WORLD_SIZE=", e.world,
              " without RANK: start workers with ich-launch (or set RANK, MASTER_ADDR and MASTER_PORT for each)");
  return e;
}

std::unique_ptr<Communicator> make_communicator(const DistEnv& env, Device device) {
  // A peer that dies closes its sockets; a rank that then writes to one would
  // be killed by SIGPIPE (Gloo's TCP pair writes without MSG_NOSIGNAL) instead
  // of seeing EPIPE, which the transport turns into an exception and we into
  // one line naming the rank and the operation. Ignored for the whole
  // process: every socket write here checks its result.
  std::signal(SIGPIPE, SIG_IGN);
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
