// step.h: one training step, as ich-train and ich-bench-train take it.
//
//   zero the gradients; forward under autocast (engine/amp.h: convolutions
//   and the head in bf16/fp16 when asked), the loss in float32; backward
//   (of the loss times the scale, with a LossScaler); the loss read back
//   (a NaN or infinite loss stops here, nothing applied); unscale and check
//   the gradients (skipping the update when they overflowed); the
//   optimizer's update of the float32 master weights.
#pragma once
#include "engine/amp.h"
#include "engine/optim.h"
#include "layers/module.h"

namespace ich {

struct StepResult {
  double loss = 0;      // the unscaled loss
  bool finite = true;   // false: the loss was NaN or infinite; nothing was applied
  bool applied = true;  // false: not finite, or the scaler found overflowed gradients and skipped the update
};

// The step's forward: the model under autocast, the loss in float32.
Tensor forward_loss(Module& model, const Tensor& x, const Tensor& y, const Tensor& pos_weight, DType precision);

// precision: Float32, BFloat16 or Float16; scaler: used when given (float16).
StepResult train_step(Module& model, Optimizer& opt, const Tensor& x, const Tensor& y, const Tensor& pos_weight,
                      DType precision, LossScaler* scaler);

}  // namespace ich
