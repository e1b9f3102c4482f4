// graph_step.h: the training step captured once and replayed
// (ich-train --cuda-graph, ich-bench-train's "+graph" configurations).
//
//   every step        the batch is loaded into fixed input buffers
//   steps 1..warmup   the step below runs eagerly: every kernel it launches
//                     is loaded, cuDNN chooses its algorithms, the caching
//                     allocator warms up
//   step warmup+1     the same step is captured (engine/graph.h) and run once
//   every later step  one replay
//
// The captured step: zero the gradients, clear the flags, normalise the byte
// batch, forward under autocast, loss, backward (of the scaled loss with
// float16), flag the loss if it is NaN or infinite (on the device), with
// float16 unscale the gradients and flag an overflow, Adam with its step
// count on the device, skipped there when flagged, and with float16 the loss
// scaler's update, on the device too (LossScaler::keep_on_device). The loss
// (and the flag and the scale) are read after the replay: a NaN loss still
// stops ich-train with nothing applied, as the eager step does (only the BN
// running statistics moved, in both), and an overflowed float16 step is
// skipped with the scale backed off, as eagerly.
#pragma once
#include <memory>

#include "engine/graph.h"
#include "train/step.h"

namespace ich {

class GraphedStep {
 public:
  // scaler: float16's (required then, ignored otherwise); its state moves to
  // the device, and scale() is read back after every step.
  GraphedStep(Module& model, Adam& opt, Tensor pos_weight, DType precision, MemoryFormat input_format,
              int warmup = 3, LossScaler* scaler = nullptr);
  // x: the loader's batch (uint8 bytes or float32), y: its labels, on the
  // host or already on the device. Every batch must have the first captured
  // one's shape.
  StepResult run(const Tensor& x, const Tensor& y);

  bool captured() const { return graph_ && graph_->captured(); }
  const StepGraph* graph() const { return graph_.get(); }

 private:
  void body();

  Module& model_;
  Adam& opt_;
  Tensor pos_weight_;
  DType precision_;
  MemoryFormat format_;
  int warmup_;
  LossScaler* scaler_;
  int64_t eager_steps_ = 0;
  Device device_;
  Tensor x_, y_, loss_;     // input buffers, the loss (written by each replay)
  Tensor found_, loss_bad_;  // skip the update (NaN loss or overflow); the loss alone was NaN
  std::unique_ptr<StepGraph> graph_;
};

}  // namespace ich
