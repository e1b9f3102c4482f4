// calibrate.h: ich-calibrate. Fits one temperature per label on a labelled
// split (validation data, never the training data) by temperature scaling
// (data/calibrate.h) and writes the checkpoint again with them
// (meta/temperature), without the optimizer state: a calibrated checkpoint
// is for inference (ich-train refuses to resume it). ich-eval, ich-predict and ich-serve then give
// sigmoid(logit / T); the ranking of the slices (AUC) does not change.
#pragma once
#include <array>
#include <functional>
#include <string>

#include "data/calibrate.h"

namespace ich {

struct CalibrateOptions {
  std::string checkpoint, data, images, out, device = "auto";
  int64_t batch = 16;
};

struct CalibrateResult {
  std::array<TemperatureFit, 6> fits;  // RSNA order, "any" last
  double weighted_log_loss_before = 0, weighted_log_loss_after = 0;
  int64_t images = 0;
};

CalibrateResult run_calibrate(const CalibrateOptions& o, const std::function<void(int64_t, int64_t)>& progress = nullptr);

}  // namespace ich
