// batch_norm2d: forward and backward (see engine/cpu/batch_norm.cpp for the
// math). The running statistics are buffers, not inputs of the graph: they
// are updated in place by the training forward and never get gradients.
// 16-bit activations (engine/ops/amp.h) come with float32 parameters, running
// and saved statistics (param_dtype).
#include <cmath>

#include "engine/autograd.h"
#include "engine/ops/batch_norm.h"
#include "engine/ops/elementwise.h"
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

Tensor sync_batch_norm2d(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& running_mean,
                         Tensor& running_var, double momentum, double eps, const StatsReducer& reduce) {
  ICH_CHECK(x.dim() == 4 || x.dim() == 2, "sync_batch_norm2d: input must be (N,C,H,W) or (N,C), got ", x.str());
  ICH_CHECK(reduce != nullptr, "sync_batch_norm2d: no reducer");
  const DType pd = param_dtype(x.dtype());
  same_device_as("sync_batch_norm2d", x, {&gamma, &beta, &running_mean, &running_var}, &pd);
  const int64_t C = x.size(1);
  for (const Tensor* t : std::initializer_list<const Tensor*>{&gamma, &beta, &running_mean, &running_var})
    ICH_CHECK(t->defined() && t->numel() == C, "sync_batch_norm2d: per-channel tensor ", t->str(), " for input ",
              x.str());
  const Device dev = x.device();
  const Tensor xc = x.detach().contiguous();  // N,C,H,W: the eval kernels' layout
  const double n_local = double(x.numel() / std::max<int64_t>(1, C));
  std::vector<double> mean_l(size_t(C), 0.0), invstd_l(size_t(C), 1.0);
  if (n_local > 0) {  // this process's statistics (the training kernel, on scratch copies of the buffers)
    Tensor rm = running_mean.clone(), rv = running_var.clone(), y = empty_like(xc);
    Tensor m = Tensor::empty({C}, pd, dev), is = Tensor::empty({C}, pd, dev);
    ICH_CHECK(n_local > 1, "sync_batch_norm2d: this process's part ", x.str(), " has one value per channel");
    ICH_DISPATCH(dev, batch_norm_forward_train, xc, gamma, beta, rm, rv, momentum, eps, y, m, is);
    mean_l = m.to_vector();
    invstd_l = is.to_vector();
  }
  std::vector<double> sums(size_t(2 * C + 1));
  for (size_t c = 0; c < size_t(C); ++c) {
    sums[c] = n_local * mean_l[c];
    sums[size_t(C) + c] = n_local * (1.0 / (invstd_l[c] * invstd_l[c]) - eps + mean_l[c] * mean_l[c]);
  }
  sums[size_t(2 * C)] = n_local;
  reduce(sums);
  const double n = sums[size_t(2 * C)];
  ICH_CHECK(n > 1, "sync_batch_norm2d: training needs more than one value per channel over all processes, got ", n);
  std::vector<double> mu(static_cast<size_t>(C)), var(static_cast<size_t>(C)), inv(static_cast<size_t>(C));
  std::vector<double> rm = running_mean.to_vector(), rv = running_var.to_vector();
  for (size_t c = 0; c < size_t(C); ++c) {
    mu[c] = sums[c] / n;
    var[c] = std::max(0.0, sums[size_t(C) + c] / n - mu[c] * mu[c]);
    inv[c] = 1.0 / std::sqrt(var[c] + eps);
    rm[c] = (1 - momentum) * rm[c] + momentum * mu[c];
    rv[c] = (1 - momentum) * rv[c] + momentum * var[c] * n / (n - 1);
  }
  running_mean.copy_(Tensor::from_vector(rm, {C}, pd).to(dev));
  running_var.copy_(Tensor::from_vector(rv, {C}, pd).to(dev));
  const Tensor mu_t = Tensor::from_vector(mu, {C}, pd).to(dev), var_t = Tensor::from_vector(var, {C}, pd).to(dev),
               inv_t = Tensor::from_vector(inv, {C}, pd).to(dev);
  Tensor y = empty_like(xc);
  ICH_DISPATCH(dev, batch_norm_forward_eval, xc, gamma, beta, mu_t, var_t, eps, y);
  const Tensor g_saved = gamma.detach();
  return record("sync_batch_norm2d", y, {x, gamma, beta},
                [xc, g_saved, mu_t, var_t, inv, n, eps, pd, reduce](const Tensor& gy_in, const NeedsGrad& need) {
                  const Device d = xc.device();
                  const int64_t C = g_saved.numel();
                  // In the parameters' precision (exact widening of 16-bit data): one rounding at the end.
                  const Tensor gy = gy_in.dtype() == pd ? gy_in.contiguous() : cast(gy_in, pd).contiguous();
                  const Tensor x32 = xc.dtype() == pd ? xc : cast(xc, pd).contiguous();
                  Tensor gx = empty_like(x32), ggamma = empty_like(g_saved), gbeta = empty_like(g_saved);
                  const Tensor inv_t = Tensor::from_vector(inv, {C}, pd).to(d);
                  // gamma invstd dy, and this process's sums of dy (gbeta) and dy x^ (ggamma)
                  ICH_DISPATCH(d, batch_norm_backward, gy, x32, g_saved, mu_t, inv_t, eps, false, gx, ggamma, gbeta);
                  const std::vector<double> gb = gbeta.to_vector(), gg = ggamma.to_vector(), g = g_saved.to_vector();
                  std::vector<double> s(gb);
                  s.insert(s.end(), gg.begin(), gg.end());
                  reduce(s);  // every process, in the same order as their forwards
                  // gamma invstd (S_dyx / n) x^ + gamma invstd S_dy / n, as the eval forward's affine map of x
                  std::vector<double> a(static_cast<size_t>(C)), b(static_cast<size_t>(C));
                  for (size_t c = 0; c < size_t(C); ++c) {
                    a[c] = g[c] * inv[c] * s[size_t(C) + c] / n;
                    b[c] = g[c] * inv[c] * s[c] / n;
                  }
                  Tensor corr = empty_like(x32);
                  ICH_DISPATCH(d, batch_norm_forward_eval, x32, Tensor::from_vector(a, {C}, pd).to(d),
                               Tensor::from_vector(b, {C}, pd).to(d), mu_t, var_t, eps, corr);
                  Tensor dx = add(gx, scale(corr, -1.0));
                  if (dx.dtype() != xc.dtype()) dx = cast(dx, xc.dtype());
                  return std::vector<Tensor>{need[0] ? dx : Tensor(), need[1] ? ggamma : Tensor(),
                                             need[2] ? gbeta : Tensor()};
                });
}

}  // namespace ich
