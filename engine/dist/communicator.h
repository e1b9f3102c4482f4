// communicator.h: collective operations across the processes of a
// data-parallel run, on proven libraries: Gloo over TCP for CPU tensors
// (what PyTorch's CPU DistributedDataParallel uses) and NCCL for GPU
// tensors. No transport of our own: TcpStore (store.h) only lets the ranks
// meet.
//
// Every call names what it is for (`what`, e.g. "gradient all-reduce, step
// 12") and has a deadline: when a peer died or hangs, the call fails within
// the timeout with one line naming this rank, the operation and the cause,
// instead of blocking forever.
#pragma once
#include <chrono>
#include <memory>
#include <string>

#include "engine/device.h"
#include "engine/tensor.h"

namespace ich::dist {

// What torchrun (and ich-launch) put in a worker's environment.
struct DistEnv {
  int rank = 0, world = 1, local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::chrono::milliseconds timeout{std::chrono::seconds(300)};  // ICH_DIST_TIMEOUT (seconds)
  bool distributed() const { return world > 1; }
};
// RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT, ICH_DIST_TIMEOUT;
// without WORLD_SIZE a single process. Malformed values are one clear error.
// Under srun (SLURM_NTASKS set, WORLD_SIZE not): WORLD_SIZE = SLURM_NTASKS,
// RANK = SLURM_PROCID, LOCAL_RANK = SLURM_LOCALID, MASTER_ADDR the first host
// of SLURM_JOB_NODELIST (MASTER_ADDR wins when set), MASTER_PORT or
// 29500 + SLURM_JOB_ID mod 1000. torchrun's variables win where both are set.
DistEnv env_from_environment();
// The first host of a SLURM node list ("gpu[03-08,11],cpu1" -> "gpu03").
std::string first_slurm_host(const std::string& nodelist);

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;  // "gloo" or "nccl"
  // In place: every rank ends with the element-wise sum over ranks.
  // float32 or float64, contiguous, on the backend's device.
  virtual void all_reduce_sum(Tensor& t, const std::string& what) = 0;
  // In place: every rank ends with root's bytes (any dtype, contiguous).
  virtual void broadcast(Tensor& t, int root, const std::string& what) = 0;
  virtual void barrier(const std::string& what) = 0;
};

// Gloo for a CPU device, NCCL for a CUDA device (device index = the local
// rank's GPU). The rendezvous goes through rank 0's TcpStore at
// MASTER_ADDR:MASTER_PORT.
std::unique_ptr<Communicator> make_communicator(const DistEnv& env, Device device);

// Names of the backends this build has, e.g. "gloo, nccl".
std::string available_backends();

}  // namespace ich::dist
