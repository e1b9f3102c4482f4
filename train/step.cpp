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

StepResult parallel_step(Module& model, Optimizer& opt, const std::vector<MicroBatch>& micro, const Tensor& pos_weight,
                         DType precision, LossScaler* scaler, DataParallel& dp, int64_t step, bool interrupted) {
  ICH_CHECK(int(micro.size()) == dp.accumulate(), "parallel_step: ", micro.size(), " micro-batches, expected ",
            dp.accumulate());
  opt.zero_grad();
  double loss_sum = 0, bad = 0;
  for (size_t k = 0; k < micro.size(); ++k) {
    const Tensor loss = forward_loss(model, micro[k].x, micro[k].y, pos_weight, precision);
    // The last backward completes the gradients: their all-reduce overlaps it.
    if (k + 1 == micro.size()) dp.start_overlap(opt.params(), step);
    (scaler ? scaler->scale_loss(loss) : loss).backward();  // gradients add up over the micro-batches
    const double l = loss.item();
    loss_sum += l;
    bad += !std::isfinite(l);
  }
  dp.backward_done();
  const std::vector<double> all =
      dp.sum({loss_sum, bad, interrupted ? 1.0 : 0.0}, "the step's losses (step " + std::to_string(step) + ")");
  dp.finish_overlap(opt.params(), step);  // every rank: the buckets' calls are queued already
  StepResult r;
  r.loss = all[0] / double(dp.world() * dp.accumulate());
  r.interrupted = all[2] > 0;
  if (all[1] > 0) {
    r.finite = r.applied = false;
    if (std::isfinite(r.loss)) r.loss = NAN;  // another rank's loss was not finite
    return r;
  }
  if (scaler) {  // the gradients are the same on every rank now: so is the verdict
    r.applied = scaler->unscale(opt.params());
    scaler->update(!r.applied);
  }
  if (r.applied) opt.step();
  return r;
}

}  // namespace ich
