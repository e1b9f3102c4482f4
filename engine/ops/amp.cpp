#include "engine/ops/amp.h"

#include "engine/kernels.h"
#include "engine/ops.h"

namespace ich {

namespace {
thread_local DType g_autocast = DType::Float32;
}

DType parse_precision(const std::string& name) {
  if (name == "fp32" || name == "float32") return DType::Float32;
  if (name == "bf16" || name == "bfloat16") return DType::BFloat16;
  if (name == "fp16" || name == "float16") return DType::Float16;
  throw Error("precision '" + name + "': expected fp32, bf16 or fp16");
}

const char* precision_name(DType p) {
  switch (p) {
    case DType::BFloat16: return "bf16";
    case DType::Float16: return "fp16";
    default: return "fp32";
  }
}

DType autocast_dtype() { return g_autocast; }

AutocastGuard::AutocastGuard(DType precision) : previous_(g_autocast) {
  ICH_CHECK(precision == DType::Float32 || precision == DType::BFloat16 || precision == DType::Float16,
            "autocast to ", dtype_name(precision), ": only bfloat16 and float16 (or float32: off)");
  g_autocast = precision;
}
AutocastGuard::~AutocastGuard() { g_autocast = previous_; }

Tensor rounded(const Tensor& t, DType precision) {
  Tensor r = t.contiguous();
  if (r.raw_data() == t.raw_data()) r = r.clone();  // never round the caller's tensor
  ICH_DISPATCH(r.device(), round_to_precision_, r, precision);
  return r;
}

Tensor MixedOperands::low(const Tensor& t, MemoryFormat fmt) const {
  ICH_CHECK(t.dtype() == DType::Float32 || t.dtype() == precision, "autocast to ", dtype_name(precision),
            ": operand ", t.str(), " is neither float32 nor ", dtype_name(precision));
  if (t.dtype() == precision) return t.contiguous(fmt);
  Tensor r = Tensor::empty(t.shape(), precision, t.device(), fmt);
  r.copy_(t);  // rounds and lays out in one go
  return r;
}

Tensor MixedOperands::for_kernel(const Tensor& t16) const { return native ? t16 : t16.to(DType::Float32); }

Tensor MixedOperands::operand(const Tensor& t, MemoryFormat fmt) const {
  if (!native && t.dtype() == DType::Float32) return rounded(t.contiguous(fmt), precision);
  return for_kernel(low(t, fmt));
}

Tensor MixedOperands::result(const Shape& shape, const Tensor& like, MemoryFormat fmt) const {
  return Tensor::empty(shape, native ? precision : DType::Float32, like.device(), fmt);
}

Tensor MixedOperands::finish(const Tensor& r, DType as) const {
  ICH_CHECK(as == DType::Float32 || as == precision, "autocast to ", dtype_name(precision), ": a result as ",
            dtype_name(as));
  if (r.dtype() != DType::Float32 || as != DType::Float32) return r.to(as);  // converting rounds, once
  Tensor out = r;
  ICH_DISPATCH(out.device(), round_to_precision_, out, precision);
  return out;
}

LossScaler::LossScaler(const Options& o) : o_(o), scale_(o.init_scale) {
  ICH_CHECK(o.init_scale > 0 && o.growth_factor > 1 && o.backoff_factor > 0 && o.backoff_factor < 1 &&
                o.growth_interval > 0,
            "LossScaler: need init_scale > 0, growth_factor > 1, 0 < backoff_factor < 1, growth_interval > 0");
}

Tensor LossScaler::scale_loss(const Tensor& loss) const {
  // mul by the one-element scale: the same float product, and its gradient, as scale()
  return on_device() ? mul(loss, scale_t_.view(loss.shape())) : ich::scale(loss, scale_);
}

bool LossScaler::unscale(const std::vector<Tensor>& params) const {
  if (params.empty()) return true;
  Tensor found = Tensor::zeros({1}, DType::Float32, params.front().device());
  const double inv = 1.0 / scale_;  // as GradScaler: the reciprocal in double, then one multiply per element
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    ICH_DISPATCH(g.device(), unscale_check_, g, inv, found);
  }
  return found.item() == 0;  // one read back per step
}

void LossScaler::update(bool found_inf) {
  if (found_inf) {
    scale_ *= o_.backoff_factor;
    tracker_ = 0;
  } else if (++tracker_ == o_.growth_interval) {
    scale_ *= o_.growth_factor;
    tracker_ = 0;
  }
}

void LossScaler::restore(double scale, int64_t growth_tracker) {
  ICH_CHECK(scale > 0 && growth_tracker >= 0 && growth_tracker < o_.growth_interval, "LossScaler: bad saved state (scale ",
            scale, ", tracker ", growth_tracker, ")");
  scale_ = scale;
  tracker_ = growth_tracker;
  if (on_device()) {
    scale_t_.fill_(scale_);
    tracker_t_.fill_(double(tracker_));
  }
}

void LossScaler::keep_on_device(Device d) {
  ICH_CHECK(float(scale_) == scale_, "LossScaler: scale ", scale_, " is not exact in float32");
  scale_t_ = Tensor::full({1}, scale_, DType::Float32, d);
  tracker_t_ = Tensor::full({1}, double(tracker_), DType::Float32, d);
}

void LossScaler::unscale_on_device(const std::vector<Tensor>& params, Tensor& found_inf) const {
  ICH_CHECK(on_device(), "LossScaler::unscale_on_device: keep_on_device() first");
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (g.defined()) ICH_DISPATCH(g.device(), unscale_check_by_, g, scale_t_, found_inf);
  }
}

void LossScaler::update_on_device(const Tensor& found_inf, const Tensor& skip_if) {
  ICH_CHECK(on_device(), "LossScaler::update_on_device: keep_on_device() first");
  ICH_DISPATCH(scale_t_.device(), update_scale_, scale_t_, tracker_t_, found_inf, skip_if, o_.growth_factor,
               o_.backoff_factor, o_.growth_interval);
}

void LossScaler::read_back() {
  if (!on_device()) return;
  scale_ = scale_t_.item();
  tracker_ = int64_t(tracker_t_.item());
}

}  // namespace ich
