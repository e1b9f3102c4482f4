// data_parallel.h: ich-train on many processes, as PyTorch's
// DistributedDataParallel, and gradient accumulation, its single-process twin.
//
// A run has world ranks (processes, ich-launch or another launcher) and each
// takes `accumulate` micro-batches per optimizer step. Every epoch's order
// (the same permutation on every rank) is cut into world x accumulate
// shards (data/dataset.h Shard, as DistributedSampler: padded, strided);
// rank r's k-th micro-batch of a step comes from shard r x accumulate + k.
// After the backward passes of its micro-batches a rank holds the sum of
// their gradients; the sums are all-reduced over the ranks in buckets and
// divided by world x accumulate: the mean of every micro-batch's gradient,
// which is what DDP gives (its gradients averaged over ranks). So
// `--accumulate 2` on one process and two ranks with the same batch make
// the same steps: the same micro-batches, the same sums, the same update.
//
// Batch norm normalises each micro-batch by its own statistics (DDP's
// default, per replica); the running statistics of rank 0 are the run's
// (DDP broadcasts rank 0's buffers before every forward; here before each
// validation and checkpoint, which gives the same numbers: in training mode
// they are only written). Validation is split over the ranks and the
// probabilities gathered, so every rank computes the same metrics; only rank
// 0 writes files.
#pragma once
#include <array>
#include <memory>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "engine/dist/communicator.h"
#include "layers/module.h"

namespace ich {

class DataParallel {
 public:
  // A communicator is made only when env.world > 1.
  DataParallel(const dist::DistEnv& env, int accumulate, Device device);
  int rank() const { return env_.rank; }
  int world() const { return env_.world; }
  int accumulate() const { return accumulate_; }
  bool writer() const { return env_.rank == 0; }
  bool distributed() const { return comm_ != nullptr; }
  // The shard of this rank's k-th micro-batch of every step.
  Shard train_shard(int k) const { return {env_.rank * accumulate_ + k, env_.world * accumulate_, true}; }
  Shard valid_shard() const { return {env_.rank, env_.world, false}; }

  // Every parameter and buffer from rank 0 (a run starts from rank 0's model).
  void broadcast_state(Module& m, const std::string& why);
  // Buffers only (running statistics): rank 0's.
  void broadcast_buffers(Module& m, const std::string& why);
  // Gradients summed over this rank's micro-batches -> the mean over every
  // micro-batch of every rank: all-reduced in buckets of ~25 MB (DDP's
  // default), divided by world x accumulate.
  void average_gradients(const std::vector<Tensor>& params, int64_t step);
  // The element-wise sum of `values` over the ranks (float64).
  std::vector<double> sum(const std::vector<double>& values, const std::string& what);
  // Validation probabilities: each rank filled the rows of its shard; every
  // rank gets all rows.
  std::vector<std::array<double, 6>> gather_rows(const std::vector<std::array<double, 6>>& rows,
                                                 const std::vector<bool>& mine);

 private:
  dist::DistEnv env_;
  int accumulate_;
  Device device_;
  std::unique_ptr<dist::Communicator> comm_;
};

}  // namespace ich
