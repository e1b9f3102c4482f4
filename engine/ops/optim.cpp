#include "engine/ops/optim.h"

#include "engine/autograd.h"

namespace ich {

Optimizer::Optimizer(std::vector<Tensor> params) : params_(std::move(params)) {
  for (size_t i = 0; i < params_.size(); ++i)
    ICH_CHECK(params_[i].is_leaf() && params_[i].requires_grad(), "optimizer: parameter ", i, " (",
              params_[i].str(), ") is not a leaf that requires grad");
}

void Optimizer::zero_grad() {
  for (Tensor& p : params_) p.zero_grad();
}

namespace {
Tensor zeros_like(const Tensor& p) { return Tensor::zeros(p.shape(), p.dtype()).to(p.device()); }
void check_grad(const Tensor& p, const Tensor& g, size_t i) {
  ICH_CHECK(g.shape() == p.shape() && g.dtype() == p.dtype() && g.device() == p.device(), "optimizer: gradient ",
            g.str(), " of parameter ", i, " does not match ", p.str());
}
}  // namespace

Adam::Adam(std::vector<Tensor> params, Options o) : Optimizer(std::move(params)), o_(o) {
  for (const Tensor& p : params_) {
    exp_avg_.push_back(zeros_like(p));
    exp_avg_sq_.push_back(zeros_like(p));
  }
}

void Adam::keep_count_on_device(Tensor skip_if) {
  ICH_CHECK(!params_.empty(), "Adam: no parameters");
  const Device d = params_.front().device();
  ICH_CHECK(skip_if.numel() == 1 && skip_if.dtype() == DType::Float32 && skip_if.device() == d,
            "Adam: skip_if must be one float32 element on ", d.str(), ", not ", skip_if.str());
  device_count_ = Tensor::full({1}, double(steps_), DType::Float64, d);
  skip_if_ = std::move(skip_if);
}

void Adam::set_steps(int64_t s) {
  steps_ = s;
  if (device_count_.defined()) device_count_.fill_(double(s));  // queued in order: no wait
}

void Adam::step() {
  NoGradGuard no_grad;
  AdamParams a;
  a.lr = o_.lr, a.beta1 = o_.beta1, a.beta2 = o_.beta2, a.eps = o_.eps, a.weight_decay = o_.weight_decay;
  a.step = steps_ + 1;
  if (device_count_.defined()) {
    a.step_count = device_count_;
    a.skip_if = skip_if_;
  } else {
    ++steps_;
  }
  // Every parameter with a gradient in one call: on a GPU one launch for all.
  std::vector<AdamSlot> slots;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor g = params_[i].grad();
    if (!g.defined()) continue;
    check_grad(params_[i], g, i);
    slots.push_back({params_[i], g.contiguous(), exp_avg_[i], exp_avg_sq_[i]});
  }
  if (!slots.empty()) ICH_DISPATCH(slots[0].param.device(), adam_step_all, slots, a);
}

std::vector<std::pair<std::string, Tensor>> Adam::state() {
  std::vector<std::pair<std::string, Tensor>> s;
  for (size_t i = 0; i < params_.size(); ++i) {
    s.emplace_back("exp_avg." + std::to_string(i), exp_avg_[i]);
    s.emplace_back("exp_avg_sq." + std::to_string(i), exp_avg_sq_[i]);
  }
  return s;
}

Sgd::Sgd(std::vector<Tensor> params, Options o) : Optimizer(std::move(params)), o_(o) {
  for (const Tensor& p : params_) buf_.push_back(o_.momentum != 0.0 ? zeros_like(p) : Tensor());
  has_buf_.assign(params_.size(), false);
}

void Sgd::step() {
  NoGradGuard no_grad;
  ++steps_;
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor& p = params_[i];
    const Tensor g = p.grad();
    if (!g.defined()) continue;
    check_grad(p, g, i);
    const SgdParams s{o_.lr, o_.momentum, o_.dampening, o_.weight_decay, o_.nesterov, !has_buf_[i]};
    ICH_DISPATCH(p.device(), sgd_step, p, g.contiguous(), buf_[i], s);
    has_buf_[i] = true;
  }
}

std::vector<std::pair<std::string, Tensor>> Sgd::state() {
  std::vector<std::pair<std::string, Tensor>> s;
  for (size_t i = 0; i < params_.size(); ++i)
    if (buf_[i].defined()) s.emplace_back("momentum_buffer." + std::to_string(i), buf_[i]);
  return s;
}

}  // namespace ich
