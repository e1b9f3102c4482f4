// dataset.h: batches of windowed slices for training and evaluation.
//
// A SliceDataset is a split CSV (ich-split's train.csv/valid.csv) over a
// folder of ich-window's .npy images. BatchLoader produces batches in the
// order of a permutation fixed by (seed, epoch), on worker threads, through a
// bounded queue (prefetch) so the model waits only when the data is slower.
// Augmentation of sample i in epoch e uses a generator seeded by (seed, e, i):
// the same run gives the same batches whatever the thread count, and a
// resumed run continues with exactly the batches it would have seen.
#pragma once
#include <array>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "data/augment.h"
#include "data/split.h"
#include "engine/tensor.h"

namespace ich {

class SliceDataset {
 public:
  SliceDataset(std::vector<SplitRow> rows, std::string images_dir);
  size_t size() const { return rows_.size(); }
  const SplitRow& row(size_t i) const { return rows_[i]; }
  // Reads image i into out (c x size x size); the error names the file.
  void load(size_t i, const AugmentOptions& o, Generator& gen, float* out) const;
  // The same as bytes, not normalised (augment_slice_u8).
  void load_u8(size_t i, const AugmentOptions& o, Generator& gen, uint8_t* out) const;
  int channels() const { return channels_ * (2 * context_ + 1); }
  // Adjacent slices as channels (ich-train --context K): sample i's input is
  // the 2K+1 slices of its series around it, in order along the series'
  // normal (data/series.h, from the images folder's meta.csv), each slice's
  // windows as channels, slice by slice; at a series' end the nearest slice
  // stands in for the missing ones (the edge repeated, as the 1st place of
  // RSNA 2019 padded). One augmentation draw warps all of them alike.
  void set_context(int K);
  int context() const { return context_; }
  // Fraction of positives per label (for pos_weight = negatives/positives).
  std::array<double, 6> positive_fraction() const;

 private:
  Tensor image(const std::string& id) const;  // the .npy, checked
  // The stacked (H, W, channels()) bytes of sample i (its neighbours' too).
  Tensor input(size_t i) const;
  std::vector<SplitRow> rows_;
  std::string dir_;
  int channels_ = 3, context_ = 0;
  std::vector<std::vector<std::string>> neighbours_;  // per sample: the 2K+1 ids, in order
};

struct Batch {
  int64_t index = 0;            // batch number within the epoch
  Tensor x, y;                  // (B, C, S, S) float32 (uint8 from a bytes loader), (B, 6) float32
  std::vector<size_t> samples;  // dataset indices
};

// A part of every epoch's order, for data-parallel training: the order
// padded (pad: with its first samples, as torch's DistributedSampler) to a
// multiple of `parts`, then every parts-th sample from `part` on. The
// parts of one epoch together hold every sample once (plus the padding);
// without pad (validation) exactly once.
struct Shard {
  int part = 0, parts = 1;
  bool pad = true;
};
std::vector<size_t> shard_order(const std::vector<size_t>& order, const Shard& s);

// How a BatchLoader walks the dataset; named fields, so a call says what it asks.
struct LoaderOptions {
  int64_t batch = 8;
  bool shuffle = false;    // a permutation per epoch (seed, epoch)
  bool drop_last = false;  // keeps batch shapes fixed
  uint64_t seed = 0;
  int64_t epoch = 0;
  int64_t first_batch = 0;  // resume inside an epoch
  int workers = 2, prefetch = 4;
  bool bytes = false;  // x as uint8, not normalised (for a GPU: to_device_input() in engine/ops.h moves and normalises it there)
  Shard shard;         // this rank's part of the epoch's order (data-parallel training)
};

class BatchLoader {
 public:
  BatchLoader(const SliceDataset& ds, AugmentOptions o, const LoaderOptions& lo);
  ~BatchLoader();
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;
  int64_t batches() const { return n_batches_; }
  // The next batch in order; false at the end of the epoch. Rethrows a
  // worker's error (e.g. a missing image).
  bool next(Batch& b);

 private:
  void work();
  Batch make(int64_t index);
  const SliceDataset& ds_;
  AugmentOptions o_;
  int64_t batch_, n_batches_, next_to_make_, next_to_give_;
  uint64_t seed_;
  int64_t epoch_;
  std::vector<size_t> order_;
  size_t prefetch_;
  bool bytes_ = false;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<int64_t, Batch> ready_;
  std::exception_ptr error_;
  bool stop_ = false;
  std::vector<std::thread> workers_;
};

// Permutation of 0..n-1 for an epoch (Fisher-Yates with our generator).
std::vector<size_t> epoch_order(size_t n, uint64_t seed, int64_t epoch, bool shuffle);

}  // namespace ich
