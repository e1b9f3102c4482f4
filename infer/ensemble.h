// ensemble.h: several slice models and test-time views, applied as one
// (ich-eval and ich-predict --checkpoint A --checkpoint B ... --tta MODE;
// ich-serve the same).
//
// Members are ich-train checkpoints (the folds of a cross-validation, other
// seeds) that read the same input: the same windows, size and context,
// checked, so that each slice is windowed and resized once for all of them.
// Each member sees every view of the batch (data/augment.h tta_views: the
// image, its mirror, its transpose) and gives its probabilities, calibrated
// when it is (ich-calibrate); the result is their mean over members and
// views.
//
// Probabilities are averaged, not logits: the log loss is convex in p, so
// the mean's loss is at most the members' mean loss (Jensen), whatever the
// members are; averaged logits carry no such bound, and the competition was
// scored in log loss. The RSNA 2019 winners averaged probabilities too.
// One member without views is the model itself, bit for bit, and two
// identical members are one (a sum of two equal numbers halved is exact).
#pragma once
#include <array>
#include <functional>
#include <string>
#include <vector>

#include "data/augment.h"
#include "data/dataset.h"
#include "train/checkpoint.h"

namespace ich {

struct Ensemble {
  std::vector<LoadedCheckpoint> members;  // on their device, in eval mode
  std::vector<std::string> paths;
  Tta tta = Tta::None;
  const CheckpointMeta& meta() const { return members.front().meta; }
  bool single() const { return members.size() == 1 && tta == Tta::None; }
};
// Loads every checkpoint onto dev; refuses members that read their input
// otherwise than the first (windows, size, context), naming both.
// `first`: paths[0] already loaded (its model is shared, not loaded again).
// precision: "fp32", or "bf16" (each member compiled for the CPU's bf16
// inference, layers/resnext_compiled.h; refused where the CPU has none).
Ensemble load_ensemble(const std::vector<std::string>& paths, Device dev, Tta tta,
                       const LoadedCheckpoint* first = nullptr, const std::string& precision = "fp32");

// The mean probabilities of a host batch x (B,C,S,S; float32, or uint8 bytes
// normalised on the device) over members and views.
std::vector<std::array<double, 6>> ensemble_probs(Ensemble& e, const Tensor& x, Device dev);

// Every image of a dataset (the evaluation batches of train/trainer.h).
std::vector<std::array<double, 6>> ensemble_predict(Ensemble& e, const SliceDataset& ds, int64_t batch, Device dev,
                                                    const std::function<void(int64_t, int64_t)>& progress = nullptr);

}  // namespace ich
