// checkpoint.h: everything a run needs to continue exactly where it stopped,
// in one flat weights file (weights/FORMAT.md), written atomically:
//   model/<name>        the model's state_dict (parameters and buffers)
//   optim/<name>        Adam's moments and step count
//   meta/<name>         architecture, input size, windows, seed, learning
//                       rate, batch size, pos_weight, the position in the
//                       data (epoch, next batch, optimizer step), best
//                       validation loss; after ich-calibrate, the
//                       temperatures
#pragma once
#include <array>
#include <memory>
#include <string>
#include <vector>

#include "engine/ops/optim.h"
#include "layers/resnext.h"

namespace ich {

struct CheckpointMeta {
  std::string arch = "resnext_mini", windows = "brain,subdural,soft";
  int64_t size = 200, batch = 8, epoch = 0, next_batch = 0, step = 0;
  uint64_t seed = 0;
  double lr = 2e-5, best_valid_loss = 1e300;
  std::array<float, 6> pos_weight{1, 1, 1, 1, 1, 1};
  bool has_pos_weight = false;
  std::string precision = "fp32";             // fp32, bf16 or fp16 (engine/ops/amp.h)
  std::string lr_schedule = "constant";       // constant or cosine (trainer.h epoch_lr)
  int64_t context = 0;                        // neighbouring slices a side in the input (ich-train --context)
  int64_t world = 1, accumulate = 1;          // ranks, and micro-batches a step on each (train/data_parallel.h)
  int64_t sync_bn = 0;                        // 1: batch-norm statistics shared by the ranks (--sync-bn)
  double loss_scale = 65536;                  // fp16: the LossScaler's state
  int64_t loss_scale_tracker = 0;
  // ich-calibrate: one temperature per label (data/calibrate.h), applied to
  // the logits by ich-eval, ich-predict and ich-serve. A calibrated
  // checkpoint has no optimizer state: ich-train refuses to resume it.
  std::array<double, 6> temperature{1, 1, 1, 1, 1, 1};
  bool calibrated = false;
};

// The six probabilities of one image's logits: sigmoid(z / T) with the
// checkpoint's temperatures when it is calibrated, else sigmoid(z).
std::array<double, 6> probabilities_of(const double* logits, const CheckpointMeta& m);
// Every row's probabilities of a batch of logits (B, 6): sigmoid on the
// logits' device, or, when `m` is a calibrated checkpoint's, sigmoid(z / T)
// on the host (ich-eval, ich-predict, ich-serve and ensembles all use it).
std::vector<std::array<double, 6>> probabilities(const Tensor& logits, const CheckpointMeta* m);

void save_checkpoint(const std::string& path, const ResNeXt& model, Optimizer* opt, const CheckpointMeta& meta);

struct LoadedCheckpoint {
  std::shared_ptr<ResNeXt> model;
  CheckpointMeta meta;
};
// Builds the model the checkpoint describes (6 outputs) and loads it; with
// opt, restores the optimizer state too (names and shapes checked).
LoadedCheckpoint load_checkpoint(const std::string& path);

// What a model computes, as a name: the CRC-32 of its state (every
// parameter's and buffer's name, shape and bytes, in state_dict order) and
// its size. ich-embed records it and ich-train-seq keeps it, so that a
// series model finds the slice model whose embeddings it was trained on
// among an ensemble's members (a calibrated copy of a checkpoint, whose
// temperatures change the file but not the features, is the same model).
std::string weights_fingerprint(const Module& model);

// --resume CKPT into RUN, for a retry loop that runs one command line the
// first time and after every failure: the checkpoint to continue from.
//   CKPT exists                     CKPT
//   RUN has epoch<N>.ckpt files     the newest (a kill after it was written,
//                                   before CKPT was), with a note line
//   RUN holds no checkpoint         "": nothing to resume, start fresh, with
//                                   a note line (a kill before the first)
// Throws when RUN holds other checkpoints only, naming them. The caller
// still refuses a checkpoint trained with other settings, naming them.
std::string resume_point(const std::string& ckpt, const std::string& run_folder);
void load_optimizer_state(const std::string& path, Optimizer& opt);

}  // namespace ich
