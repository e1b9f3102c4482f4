// trainer.h: the training loop behind ich-train, and the prediction loop
// behind ich-eval and ich-predict.
#pragma once
#include <array>
#include <functional>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "engine/dist/communicator.h"
#include "layers/resnext.h"
#include "train/checkpoint.h"

namespace ich {

struct TrainOptions {
  std::string train_csv, valid_csv, images, out;
  std::string arch = "resnext_mini";
  std::string weights;            // pretrained backbone (ich weights file); empty: random init
  int64_t epochs = 3, batch = 8, size = 200;
  double lr = 2e-5;
  std::string lr_schedule = "constant";  // or "cosine": lr * (1 + cos(pi * epoch / epochs)) / 2 for each epoch
  int context = 0;  // adjacent slices a side as extra input channels (SliceDataset::set_context); conv1 widened
  std::string pos_weight = "none";  // none or auto (negatives/positives per label, from the train split)
  // The new head's bias: "prior", the logit of the constant prediction that
  // minimises the training loss (log(p/(1-p)) per label, 0 with
  // --pos-weight auto), as RetinaNet initialises its classifier; or "zero"
  // (PyTorch's Linear init draws it near 0). See head_bias_for_prior().
  std::string head_bias = "prior";
  std::string device = "auto";
  std::string resume;               // a checkpoint to continue from
  uint64_t seed = 0;
  int workers = 2;
  bool augment = true;
  bool transpose = false;           // with augment: transposes too (data/augment.h)
  int64_t max_steps_per_epoch = 0;  // 0: the whole epoch (a smaller number for smoke tests)
  std::string precision = "fp32";   // fp32, bf16 or fp16 (engine/ops/amp.h; fp16 with loss scaling)
  bool channels_last = false;       // activations N,H,W,C from the input on (cuDNN's preferred layout)
  bool cuda_graph = false;          // capture the step once, replay it (train/graph_step.h)
  bool tf32 = false;                // TF32 tensor cores for float32 convolutions on a GPU (PyTorch's default)
  int accumulate = 1;               // micro-batches per optimizer step, gradients averaged (train/data_parallel.h)
  bool sync_bn = false;             // batch-norm statistics over every rank's batch (SyncBatchNorm)
  dist::DistEnv dist;               // this process's rank in a data-parallel run (one process by default)
  // Called after every step: its number (from 1), the batch's loss, and
  // whether it was applied (fp16 skips steps whose gradients overflowed).
  std::function<void(int64_t step, double loss, bool applied)> on_step;
};

struct EpochLog {
  int64_t epoch = 0, step = 0;
  double train_loss = 0, valid_loss = 0, valid_auc_any = 0, valid_auc_mean = 0, valid_wlogloss = 0, seconds = 0,
         images_per_second = 0;
};

// Runs the whole training. Returns 0 when done, 130 when interrupted (SIGINT,
// after writing RUN/last.ckpt). Throws ich::Error on bad input or a NaN/Inf
// loss (after which RUN/last.ckpt is still the last good state).
int train(const TrainOptions& o, const std::function<void(const std::string&)>& log = nullptr);

// The head bias that makes the untrained model predict the training set's
// label frequencies f (each weighed by pos_weight[k] when given): with it,
// the first steps' gradients go into the features instead of into moving
// six biases from 0 to the prior's logit, which Adam does at about lr per
// step (from 0 to -2.5 at lr 1e-3: some 2,500 steps, longer than the whole
// Grad-CAM test's training; docs/train.md).
std::array<float, 6> head_bias_for_prior(const std::array<double, 6>& f, const float* pos_weight = nullptr);

// The learning rate of an epoch (from 0) under a schedule: constant, or
// cosine (timm's and torch's CosineAnnealingLR per epoch, down to 0 at the
// end: later epochs move the weights less, so the last ones are steadier).
double epoch_lr(double lr, const std::string& schedule, int64_t epoch, int64_t epochs);

// Probabilities (sigmoid of the logits) for every image of a dataset; with a
// shard, only its images' rows are filled (the others stay 0). With a
// calibrated checkpoint's meta, sigmoid(logit / T) (train/checkpoint.h).
std::vector<std::array<double, 6>> predict_probs(ResNeXt& model, const SliceDataset& ds, int64_t size, int64_t batch,
                                                 Device device, const std::function<void(int64_t, int64_t)>& progress,
                                                 Shard shard = {}, const CheckpointMeta* calibration = nullptr);
// The evaluation batches of a dataset (nothing random, the model's input
// size; bytes on a GPU), each handed to `fn` under no-grad; progress after
// each. predict_probs, predict_logits and ensembles (infer/ensemble.h) go
// through it.
void for_each_eval_batch(const SliceDataset& ds, int64_t size, int64_t batch, Device device, Shard shard,
                         const std::function<void(const Batch&)>& fn,
                         const std::function<void(int64_t, int64_t)>& progress);
// The logits themselves (ich-calibrate fits its temperatures on them).
std::vector<std::array<double, 6>> predict_logits(ResNeXt& model, const SliceDataset& ds, int64_t size, int64_t batch,
                                                  Device device, const std::function<void(int64_t, int64_t)>& progress);

// The windows an ich-window output folder was made with (its meta.csv), in
// parse_windows() form; the default three when there is no meta.csv.
std::string windows_of_images(const std::string& images_dir);

}  // namespace ich
