#include "train/step.h"

#include <cmath>

#include "engine/ops.h"

namespace ich {

Tensor forward_loss(Module& model, const Tensor& x, const Tensor& y, const Tensor& pos_weight, DType precision) {
  AutocastGuard autocast(precision);
  const Tensor logits = model(x);
  AutocastGuard off(DType::Float32);  // the loss in float32, as PyTorch's autocast does
  return bce_with_logits(logits, y, pos_weight);
}

StepResult train_step(Module& model, Optimizer& opt, const Tensor& x, const Tensor& y, const Tensor& pos_weight,
                      DType precision, LossScaler* scaler) {
  opt.zero_grad();
  StepResult r;
  const Tensor loss = forward_loss(model, x, y, pos_weight, precision);
  (scaler ? scaler->scale_loss(loss) : loss).backward();
  // Read after backward is queued (a GPU keeps working meanwhile), before any update.
  r.loss = loss.item();
  if (!std::isfinite(r.loss)) {
    r.finite = r.applied = false;
    return r;
  }
  if (scaler) {
    r.applied = scaler->unscale(opt.params());
    scaler->update(!r.applied);
  }
  if (r.applied) opt.step();
  return r;
}

}  // namespace ich
