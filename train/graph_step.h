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
// The captured step: zero the gradients, clear the found-NaN flag, normalise
// the byte batch, forward under autocast, loss, backward, flag the loss if it
// is NaN or infinite (on the device), Adam with its step count on the device,
// skipped there when flagged. The loss is read after the replay: a NaN loss
// still stops ich-train with nothing applied, as the eager step does. Only
// the BN running statistics moved, in both.
//
// Not for float16: its loss scaler decides on the host, between backward and
// the update, every step. bfloat16 needs no scaler.
#pragma once
#include <memory>

#include "engine/graph.h"
#include "train/step.h"

namespace ich {

class GraphedStep {
 public:
  GraphedStep(Module& model, Adam& opt, Tensor pos_weight, DType precision, MemoryFormat input_format,
              int warmup = 3);
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
  int64_t eager_steps_ = 0;
  Device device_;
  Tensor x_, y_, found_, loss_;  // input buffers, the NaN flag, the loss (written by each replay)
  std::unique_ptr<StepGraph> graph_;
};

}  // namespace ich
