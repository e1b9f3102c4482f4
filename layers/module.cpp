#include "layers/module.h"

namespace ich {

namespace {
thread_local ForwardObserver g_observer;
}

bool forward_observed() { return bool(g_observer); }

ForwardObserverScope::ForwardObserverScope(ForwardObserver f) : prev_(std::move(g_observer)) { g_observer = std::move(f); }
ForwardObserverScope::~ForwardObserverScope() { g_observer = std::move(prev_); }

Tensor Module::operator()(const Tensor& x) {
  Tensor y = forward(x);
  if (g_observer) g_observer(*this, x, y);
  return y;
}

Tensor& Module::register_parameter(const std::string& name, Tensor t) {
  if (!t.defined()) {  // like PyTorch's bias=None: a name with no tensor, not in the state_dict
    absent_.push_back(std::make_unique<Tensor>());
    (void)name;
    return *absent_.back();
  }
  t.set_requires_grad(true);
  params_.emplace_back(name, std::make_unique<Tensor>(std::move(t)));
  return *params_.back().second;
}

Tensor& Module::register_buffer(const std::string& name, Tensor t) {
  buffers_.emplace_back(name, std::make_unique<Tensor>(std::move(t)));
  return *buffers_.back().second;
}

void Module::collect(const std::string& prefix, bool params, bool buffers, NamedTensors& out) const {
  if (params)
    for (const auto& [n, t] : params_) out.emplace_back(prefix + n, *t);
  if (buffers)
    for (const auto& [n, t] : buffers_) out.emplace_back(prefix + n, *t);
  for (const auto& [n, m] : children_) m->collect(prefix + n + ".", params, buffers, out);
}

NamedTensors Module::named_parameters() const {
  NamedTensors out;
  collect("", true, false, out);
  return out;
}

NamedTensors Module::named_buffers() const {
  NamedTensors out;
  collect("", false, true, out);
  return out;
}

NamedTensors Module::state_dict() const {
  NamedTensors out;
  collect("", true, true, out);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [n, t] : named_parameters()) out.push_back(t);
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_children() const {
  std::vector<std::pair<std::string, Module*>> out;
  for (const auto& [n, m] : children_) out.emplace_back(n, m.get());
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
  std::vector<std::pair<std::string, Module*>> out{{"", this}};
  for (const auto& [n, m] : children_)
    for (auto& [sub, mod] : m->named_modules()) out.emplace_back(sub.empty() ? n : n + "." + sub, mod);
  return out;
}

void Module::replace_module(const std::string& name, std::shared_ptr<Module> m) {
  for (auto& [n, child] : children_)
    if (n == name) {
      child = std::move(m);
      return;
    }
  throw Error("replace_module: no child named '" + name + "'");
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [n, m] : children_) m->train(on);
}

void Module::to(Device d) {
  for (auto& [n, t] : params_) {
    *t = t->to(d).detach();
    t->set_requires_grad(true);
  }
  for (auto& [n, t] : buffers_) *t = t->to(d);
  for (auto& [n, m] : children_) m->to(d);
}

void Module::to(DType dt) {
  ICH_CHECK(dt == DType::Float32 || dt == DType::Float64, "Module::to: ", dtype_name(dt), " is not a floating dtype");
  auto floating = [](const Tensor& t) { return t.dtype() == DType::Float32 || t.dtype() == DType::Float64; };
  for (auto& [n, t] : params_) {
    *t = t->to(dt).detach();
    t->set_requires_grad(true);
  }
  for (auto& [n, t] : buffers_)
    if (floating(*t)) *t = t->to(dt);
  for (auto& [n, m] : children_) m->to(dt);
}

int64_t Module::parameter_count() const {
  int64_t n = 0;
  for (auto& [name, t] : named_parameters()) n += t.numel();
  return n;
}

}  // namespace ich
