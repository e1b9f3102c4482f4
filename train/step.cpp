#include "train/step.h"

#include <cmath>

#include "engine/ops.h"
#include "train/graph_step.h"

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

// --- the three kinds behind Stepper -----------------------------------------

namespace {

// A host micro-batch as the network's input on the step's device.
MicroBatch on_device(const MicroBatch& m, const StepSetup& s) {
  return {to_device_input(m.x, s.device).contiguous(s.input_format), m.y.to(s.device)};
}

class EagerStepper final : public Stepper {
 public:
  explicit EagerStepper(const StepSetup& s) : s_(s) {}
  StepResult take(const std::vector<MicroBatch>& micro, int64_t, bool interrupted) override {
    ICH_CHECK(micro.size() == 1, "eager step: ", micro.size(), " micro-batches, expected 1");
    const MicroBatch b = on_device(micro[0], s_);
    StepResult r = train_step(s_.model, s_.opt, b.x, b.y, s_.pos_weight, s_.precision, s_.scaler);
    r.interrupted = interrupted;
    return r;
  }
  const char* kind() const override { return "eager"; }

 private:
  StepSetup s_;
};

class ParallelStepper final : public Stepper {
 public:
  ParallelStepper(const StepSetup& s, DataParallel& dp) : s_(s), dp_(dp) {}
  StepResult take(const std::vector<MicroBatch>& micro, int64_t step, bool interrupted) override {
    std::vector<MicroBatch> dev;
    for (const MicroBatch& m : micro) dev.push_back(on_device(m, s_));
    return parallel_step(s_.model, s_.opt, dev, s_.pos_weight, s_.precision, s_.scaler, dp_, step, interrupted);
  }
  const char* kind() const override { return "data-parallel"; }

 private:
  StepSetup s_;
  DataParallel& dp_;
};

class GraphedStepper final : public Stepper {
 public:
  explicit GraphedStepper(const StepSetup& s)
      : g_(s.model, s.opt, s.pos_weight, s.precision, s.input_format, 3, s.scaler) {}
  StepResult take(const std::vector<MicroBatch>& micro, int64_t, bool interrupted) override {
    ICH_CHECK(micro.size() == 1, "captured step: ", micro.size(), " micro-batches, expected 1");
    StepResult r = g_.run(micro[0].x, micro[0].y);
    r.interrupted = interrupted;
    return r;
  }
  const char* kind() const override { return "graphed"; }

 private:
  GraphedStep g_;
};

}  // namespace

std::unique_ptr<Stepper> make_stepper(const StepSetup& s, DataParallel& dp, bool graphed) {
  if (graphed) {
    ICH_CHECK(dp.world() == 1 && dp.accumulate() == 1,
              "--cuda-graph captures one whole step: not with --accumulate or several ranks");
    return std::make_unique<GraphedStepper>(s);
  }
  if (dp.world() > 1 || dp.accumulate() > 1) return std::make_unique<ParallelStepper>(s, dp);
  return std::make_unique<EagerStepper>(s);
}

}  // namespace ich
