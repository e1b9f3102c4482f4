#include "train/graph_step.h"

#include <cmath>

#include "engine/block_cache.h"
#include "engine/kernels.h"
#include "engine/ops.h"

namespace ich {

GraphedStep::GraphedStep(Module& model, Adam& opt, Tensor pos_weight, DType precision, MemoryFormat input_format,
                         int warmup, LossScaler* scaler)
    : model_(model),
      opt_(opt),
      pos_weight_(std::move(pos_weight)),
      precision_(precision),
      format_(input_format),
      warmup_(warmup),
      scaler_(precision == DType::Float16 ? scaler : nullptr),
      device_(opt.params().empty() ? Device::cpu() : opt.params().front().device()) {
  ICH_CHECK(precision != DType::Float16 || scaler, "GraphedStep: float16 needs its LossScaler");
  ICH_CHECK(warmup >= 1, "GraphedStep: at least one eager warm-up step (cuDNN chooses algorithms there)");
}

void GraphedStep::body() {
  opt_.zero_grad();  // the last step's gradients go back to the pool; backward writes new ones
  found_.fill_(0.0);
  const Tensor input = (x_.dtype() == DType::UInt8 ? normalize_input(x_) : x_).contiguous(format_);
  const Tensor loss = forward_loss(model_, input, y_, pos_weight_, precision_);
  (scaler_ ? scaler_->scale_loss(loss) : loss).backward();
  // found_ = 1 if the loss is NaN or infinite (times 1: the loss unchanged).
  Tensor l = loss.detach();
  ICH_DISPATCH(device_, unscale_check_, l, 1.0, found_);
  if (scaler_) {
    loss_bad_.copy_(found_);
    scaler_->unscale_on_device(opt_.params(), found_);  // and found_ = 1 on overflow
  }
  opt_.step();  // skipped on the device when found_ is set
  if (scaler_) scaler_->update_on_device(found_, loss_bad_);
  loss_ = l;
}

StepResult GraphedStep::run(const Tensor& x, const Tensor& y) {
  if (!x_.defined()) {
    x_ = Tensor::empty(x.shape(), x.dtype(), device_, memory_format_of(x));  // a channels-last batch stays so
    y_ = Tensor::empty(y.shape(), y.dtype(), device_);
    found_ = Tensor::zeros({1}, DType::Float32, device_);
    opt_.keep_count_on_device(found_);
    if (scaler_) {
      loss_bad_ = Tensor::zeros({1}, DType::Float32, device_);
      scaler_->keep_on_device(device_);
    }
  }
  ICH_CHECK(x.shape() == x_.shape() && x.dtype() == x_.dtype() && y.shape() == y_.shape(),
            "captured step: batch ", x.str(), " / labels ", y.str(), " differ from the first ", x_.str(), " / ",
            y_.str(), " (a graph replays fixed shapes; the loader must drop the last partial batch)");
  load_input_(x_, x);
  load_input_(y_, y);
  if (eager_steps_ < warmup_) {
    // The very step the capture records, run eagerly: every kernel in it has
    // then been loaded and every cuDNN algorithm chosen before the capture.
    ++eager_steps_;
    body();
  } else if (!graph_) {
    auto g = std::make_unique<StepGraph>(device_);
    g->capture([this] { body(); });  // throws with nothing kept if the step cannot be captured
    graph_ = std::move(g);
    // The warm-up's activations sit in the device allocator's cache, and the
    // replays use the graph's own pool: give them back to the driver.
    if (auto* cache = dynamic_cast<BlockCache*>(&allocator_for(device_))) cache->release_cache();
  } else {
    graph_->replay();
  }
  StepResult r;
  r.loss = loss_.item();  // waits for the step
  r.finite = r.applied = std::isfinite(r.loss);
  if (r.finite && scaler_) {
    r.applied = found_.item() == 0;  // not skipped for overflowed gradients
    scaler_->read_back();
  }
  if (r.applied) opt_.note_device_step();  // the device counted it already
  return r;
}

}  // namespace ich
