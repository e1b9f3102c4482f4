// batch_norm2d: forward and backward (see engine/cpu/batch_norm.cpp for the
// math). The running statistics are buffers, not inputs of the graph: they
// are updated in place by the training forward and never get gradients.
// 16-bit activations (engine/amp.h) come with float32 parameters, running
// and saved statistics (param_dtype).
#include <cmath>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/ops/op_util.h"

namespace ich {

Tensor batch_norm2d(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& running_mean,
                    Tensor& running_var, bool training, double momentum, double eps) {
  ICH_CHECK(x.dim() == 4 || x.dim() == 2, "batch_norm2d: input must be (N,C,H,W) or (N,C), got ", x.str());
  const DType pd = param_dtype(x.dtype());
  same_device_as("batch_norm2d", x, {&gamma, &beta, &running_mean, &running_var}, &pd);
  const int64_t C = x.size(1);
  for (const Tensor* t : std::initializer_list<const Tensor*>{&gamma, &beta, &running_mean, &running_var})
    ICH_CHECK(t->defined() && t->numel() == C, "batch_norm2d: per-channel tensor ", t->str(), " for input ", x.str());
  ICH_CHECK(!training || x.numel() / C > 1, "batch_norm2d: training needs more than one value per channel, got input ",
            x.str());
  // cuDNN normalises channels-last batches as they are in training; the
  // evaluation backward is our own N,C,H,W kernel, so eval converts.
  const Layout L = layout_for(x, training);
  const Tensor xc = L.in(x);
  Tensor y = L.empty(x.shape(), x);
  Tensor mean = Tensor::empty({C}, pd, x.device()), invstd = Tensor::empty({C}, pd, x.device());
  if (training) {
    ICH_DISPATCH(x.device(), batch_norm_forward_train, xc, gamma, beta, running_mean, running_var, momentum, eps, y,
                 mean, invstd);
  } else {
    ICH_DISPATCH(x.device(), batch_norm_forward_eval, xc, gamma, beta, running_mean, running_var, eps, y);
    if (needs_graph({x, gamma, beta})) {  // the constants that backward needs
      mean = running_mean.clone();
      std::vector<double> v = running_var.to_vector();
      for (double& e : v) e = 1.0 / std::sqrt(e + eps);
      invstd = Tensor::from_vector(v, {C}, pd).to(x.device());
    }
  }
  const Tensor x_saved = xc.detach(), g_saved = gamma.detach();
  return record("batch_norm2d", L.out(y), {x, gamma, beta},
                [L, x_saved, g_saved, mean, invstd, eps, training](const Tensor& gy_in, const NeedsGrad& need) {
                  const Tensor gy = L.in(gy_in);
                  Tensor gx = need[0] ? L.empty(x_saved.shape(), x_saved) : Tensor();
                  Tensor ggamma = empty_like(g_saved), gbeta = empty_like(g_saved);
                  ICH_DISPATCH(gy.device(), batch_norm_backward, gy, x_saved, g_saved, mean, invstd, eps, training, gx,
                               ggamma, gbeta);
                  return std::vector<Tensor>{need[0] ? L.out(gx) : Tensor(), need[1] ? ggamma : Tensor(),
                                             need[2] ? gbeta : Tensor()};
                });
}

Tensor batch_norm_relu(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& running_mean,
                       Tensor& running_var, bool training, double momentum, double eps, const Tensor& residual) {
  ICH_CHECK(x.dim() == 4, "batch_norm_relu: input must be (N,C,H,W), got ", x.str());
  ICH_CHECK(!residual.defined() || residual.shape() == x.shape(), "batch_norm_relu: residual ", residual.str(),
            " does not match ", x.str());
  const DType pd = param_dtype(x.dtype());
  same_device_dtype("batch_norm_relu", x, {&residual});
  same_device_as("batch_norm_relu", x, {&gamma, &beta, &running_mean, &running_var}, &pd);
  const int64_t C = x.size(1);
  for (const Tensor* t : std::initializer_list<const Tensor*>{&gamma, &beta, &running_mean, &running_var})
    ICH_CHECK(t->defined() && t->numel() == C, "batch_norm_relu: per-channel tensor ", t->str(), " for input ", x.str());
  if (!training) {  // inference: batch norm with the running statistics, then one in-place add + clamp pass
    ICH_CHECK(!needs_graph({x, gamma, beta, residual}),
              "batch_norm_relu: in evaluation only without gradients (Grad-CAM runs the separate ops)");
    const Layout L = layout_for(x, false);
    Tensor y = L.empty(x.shape(), x);
    ICH_DISPATCH(x.device(), batch_norm_forward_eval, L.in(x), gamma, beta, running_mean, running_var, eps, y);
    const Tensor rc = residual.defined() ? L.in(residual) : Tensor();
    ICH_DISPATCH(x.device(), add_relu_, y, rc);
    return L.out(y);
  }
  ICH_CHECK(x.numel() / C > 1, "batch_norm_relu: training needs more than one value per channel, got input ", x.str());
  const Layout L = layout_for(x, true);
  const Tensor xc = L.in(x);
  Tensor y = L.empty(x.shape(), x);
  Tensor mean = Tensor::empty({C}, pd, x.device()), invstd = Tensor::empty({C}, pd, x.device());
  ICH_DISPATCH(x.device(), batch_norm_forward_train, xc, gamma, beta, running_mean, running_var, momentum, eps, y,
               mean, invstd);
  const Tensor rc = residual.defined() ? L.in(residual) : Tensor();
  ICH_DISPATCH(x.device(), add_relu_, y, rc);
  const MemoryFormat fr = residual.defined() ? memory_format_of(residual) : MemoryFormat::Contiguous;
  return record("batch_norm_relu", L.out(y), {x, gamma, beta, residual},
                [L, fr, x_saved = xc.detach(), y_saved = y.detach(), g_saved = gamma.detach(), mean, invstd,
                 eps](const Tensor& gy_in, const NeedsGrad& need) {
                  const Tensor gy = L.in(gy_in);
                  Tensor gz = L.empty(gy.shape(), gy);  // the gradient where the output was positive
                  ICH_DISPATCH(gy.device(), relu_backward, gy, y_saved, gz);
                  Tensor gx = need[0] ? L.empty(x_saved.shape(), x_saved) : Tensor();
                  Tensor ggamma = empty_like(g_saved), gbeta = empty_like(g_saved);
                  ICH_DISPATCH(gy.device(), batch_norm_backward, gz, x_saved, g_saved, mean, invstd, eps, true, gx,
                               ggamma, gbeta);
                  return std::vector<Tensor>{need[0] ? L.out(gx) : Tensor(), need[1] ? ggamma : Tensor(),
                                             need[2] ? gbeta : Tensor(), need[3] ? gz.contiguous(fr) : Tensor()};
                });
}

}  // namespace ich
