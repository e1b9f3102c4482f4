#include "layers/layers.h"

#include "engine/autograd.h"
#include "engine/init.h"
#include "engine/ops.h"

namespace ich {

Conv2d::Conv2d(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t padding, int64_t groups, bool has_bias,
               Generator& gen, DType dtype)
    : weight(register_parameter("weight", Tensor::empty({out, in / groups, k, k}, dtype))),
      bias(has_bias ? register_parameter("bias", Tensor::zeros({out}, dtype)) : register_parameter("bias", Tensor())),
      p_{stride, stride, padding, padding, groups} {
  ICH_CHECK(groups >= 1 && in % groups == 0 && out % groups == 0, "Conv2d: groups ", groups,
            " must divide in and out channels (", in, ", ", out, ")");
  kaiming_normal_fan_out(weight, gen);
}

Tensor Conv2d::forward(const Tensor& x) { return conv2d(x, weight, bias, p_); }

BatchNorm2d::BatchNorm2d(int64_t c, DType dtype)
    : weight(register_parameter("weight", Tensor::ones({c}, dtype))),
      bias(register_parameter("bias", Tensor::zeros({c}, dtype))),
      running_mean(register_buffer("running_mean", Tensor::zeros({c}, dtype))),
      running_var(register_buffer("running_var", Tensor::ones({c}, dtype))),
      num_batches_tracked(register_buffer("num_batches_tracked", Tensor::zeros({}, DType::Int64))) {}

Tensor BatchNorm2d::forward(const Tensor& x) {
  if (is_training() && num_batches_tracked.device().is_cpu())
    num_batches_tracked.data<int64_t>()[0] += 1;  // bookkeeping only (momentum is fixed)
  if (is_training() && sync) return sync_batch_norm2d(x, weight, bias, running_mean, running_var, momentum, eps, sync);
  return batch_norm2d(x, weight, bias, running_mean, running_var, is_training(), momentum, eps);
}

Tensor BatchNorm2d::forward_relu(const Tensor& x, const Tensor& residual) {
  if (is_training() && sync) return relu(residual.defined() ? add(forward(x), residual) : forward(x));
  if (!is_training()) {
    if (needs_graph({x, weight, bias, residual}))  // e.g. Grad-CAM: the separate ops record their backward
      return relu(residual.defined() ? add(forward(x), residual) : forward(x));
    return batch_norm_relu(x, weight, bias, running_mean, running_var, false, momentum, eps, residual);
  }
  if (num_batches_tracked.device().is_cpu()) num_batches_tracked.data<int64_t>()[0] += 1;
  return batch_norm_relu(x, weight, bias, running_mean, running_var, true, momentum, eps, residual);
}

void set_sync_batch_norm(Module& m, const StatsReducer& reduce) {
  for (auto& [name, mod] : m.named_modules())
    if (auto* bn = dynamic_cast<BatchNorm2d*>(mod)) bn->sync = reduce;
}

Linear::Linear(int64_t in, int64_t out, Generator& gen, bool has_bias, DType dtype)
    : weight(register_parameter("weight", Tensor::empty({out, in}, dtype))),
      bias(has_bias ? register_parameter("bias", Tensor::empty({out}, dtype)) : register_parameter("bias", Tensor())) {
  linear_default(weight, bias, gen);
}

Tensor Linear::forward(const Tensor& x) { return linear(x, weight, bias); }

Tensor ReLU::forward(const Tensor& x) { return relu(x); }

MaxPool2d::MaxPool2d(int64_t k, int64_t s, int64_t p) : p_{k, k, s, s, p, p} {}
Tensor MaxPool2d::forward(const Tensor& x) { return max_pool2d(x, p_); }

Tensor AdaptiveAvgPool2d::forward(const Tensor& x) { return adaptive_avg_pool2d(x, h_, w_); }

Tensor Sequential::forward(const Tensor& x) {
  Tensor h = x;
  for (auto& [name, m] : named_children()) h = (*m)(h);
  return h;
}

}  // namespace ich
