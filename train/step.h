// step.h: one training step, as ich-train and ich-bench-train take it.
//
//   zero the gradients; forward under autocast (engine/ops/amp.h: convolutions
//   and the head in bf16/fp16 when asked), the loss in float32; backward
//   (of the loss times the scale, with a LossScaler); the loss read back
//   (a NaN or infinite loss stops here, nothing applied); unscale and check
//   the gradients (skipping the update when they overflowed); the
//   optimizer's update of the float32 master weights.
#pragma once
#include <memory>

#include "engine/ops/amp.h"
#include "engine/ops/optim.h"
#include "layers/module.h"
#include "train/data_parallel.h"

namespace ich {

struct StepResult {
  double loss = 0;      // the unscaled loss
  bool finite = true;   // false: the loss was NaN or infinite; nothing was applied
  bool applied = true;  // false: not finite, or the scaler found overflowed gradients and skipped the update
  bool interrupted = false;  // parallel_step: some rank was interrupted (every rank then stops after this step)
};

// The step's forward: the model under autocast, the loss in float32.
Tensor forward_loss(Module& model, const Tensor& x, const Tensor& y, const Tensor& pos_weight, DType precision);

// precision: Float32, BFloat16 or Float16; scaler: used when given (float16).
StepResult train_step(Module& model, Optimizer& opt, const Tensor& x, const Tensor& y, const Tensor& pos_weight,
                      DType precision, LossScaler* scaler);

// The step of a data-parallel run or of gradient accumulation
// (train/data_parallel.h): forward and backward of each micro-batch, their
// gradients summed; then over the ranks the losses, a non-finite loss
// anywhere and an interruption anywhere (so every rank decides alike); the
// gradients averaged over every micro-batch of every rank; the update. The
// loss is the mean over all micro-batches. With one rank and one
// micro-batch, train_step's numbers.
struct MicroBatch {
  Tensor x, y;
};
StepResult parallel_step(Module& model, Optimizer& opt, const std::vector<MicroBatch>& micro, const Tensor& pos_weight,
                         DType precision, LossScaler* scaler, DataParallel& dp, int64_t step, bool interrupted);

// The three kinds of step ich-train takes, behind one interface:
//
//   eager      one process, one micro-batch: train_step
//   parallel   several ranks or --accumulate: parallel_step
//   graphed    --cuda-graph: the step captured once and replayed
//              (train/graph_step.h)
//
// take() gets the loader's micro-batches as they come (on the host; each
// kind moves them where it needs them: the device in the step's memory
// format, or the captured step's fixed input buffers) and this process's
// Ctrl-C flag; the result's `interrupted` says whether to stop after this
// step, which with several ranks all of them decide alike.
class Stepper {
 public:
  virtual ~Stepper() = default;
  virtual StepResult take(const std::vector<MicroBatch>& micro, int64_t step, bool interrupted) = 0;
  virtual const char* kind() const = 0;
};

// What every kind needs: the model, its optimizer, the loss's class weights,
// the precision (and float16's scaler), the device and input memory format.
struct StepSetup {
  Module& model;
  Adam& opt;
  Tensor pos_weight;
  DType precision = DType::Float32;
  LossScaler* scaler = nullptr;
  Device device = Device::cpu();
  MemoryFormat input_format = MemoryFormat::Contiguous;
};
// graphed: --cuda-graph (one rank, one micro-batch, checked by the caller);
// parallel when dp has several ranks or accumulates; eager otherwise.
std::unique_ptr<Stepper> make_stepper(const StepSetup& s, DataParallel& dp, bool graphed);

}  // namespace ich
