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
  ~DataParallel();
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
  // The same, overlapped with the backward pass that completes the step's
  // gradients (DDP's overlap): call start_overlap before that backward and
  // finish_overlap after it. Buckets follow the parameters in reverse (the
  // order backward finishes them); as soon as backward has finished every
  // gradient of a bucket (autograd's LeafReadyScope), the bucket is copied
  // out and its all-reduce starts on a communication thread, in bucket order
  // on every rank, while backward goes on. finish_overlap waits for them and
  // writes the means back. Every collective call in between (sync-bn's, the
  // step's losses) goes through the same thread, after the buckets queued
  // before it, so the ranks' calls stay in one order. On by default on GPUs,
  // off on CPUs (ICH_DDP_OVERLAP=1 or 0 in the environment decides); with
  // one rank, or off, finish_overlap is average_gradients.
  void start_overlap(const std::vector<Tensor>& params, int64_t step);
  void finish_overlap(const std::vector<Tensor>& params, int64_t step);
  void backward_done();  // for last_overlap(): the moment backward returned
  // Bucket size (default 25 MB, DDP's; ICH_DDP_BUCKET_MB in the environment).
  void set_bucket_bytes(size_t bytes) { bucket_bytes_ = bytes; }
  void set_overlap(bool on) { overlap_enabled_ = on; }
  // The last overlapped step: its buckets, and how many of their all-reduces
  // had finished before backward did (the communication hidden behind it).
  struct OverlapStats {
    int64_t buckets = 0, done_during_backward = 0;
  };
  OverlapStats last_overlap() const { return stats_; }
  // The element-wise sum of `values` over the ranks (float64).
  std::vector<double> sum(const std::vector<double>& values, const std::string& what);
  // Validation probabilities: each rank filled the rows of its shard; every
  // rank gets all rows.
  std::vector<std::array<double, 6>> gather_rows(const std::vector<std::array<double, 6>>& rows,
                                                 const std::vector<bool>& mine);

 private:
  struct Overlap;  // the buckets and the communication thread of one step
  dist::DistEnv env_;
  int accumulate_;
  Device device_;
  std::unique_ptr<dist::Communicator> comm_;
  std::shared_ptr<Overlap> overlap_;
  bool overlap_enabled_ = true;
  size_t bucket_bytes_;
  OverlapStats stats_;
};

}  // namespace ich
