// optim.cpp: optimizer steps on the CPU, in PyTorch's exact order of
// operations (torch.optim, single-tensor path), so that float32 results
// agree to rounding.
//
// Adam (L2 weight decay added to the gradient, as torch.optim.Adam):
//   g = grad + wd*p
//   m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g*g
//   p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
// 1-b1 and 1-b2 are formed in double and then rounded, as torch.optim does
// in Python: 1 - 0.999f in float32 is 0.00100004673, a bias of 4.7e-5 on
// every second moment (and 2.3e-5 on every update) that float32 Adam used to
// carry here (tests/test_float32_accuracy.cpp, docs/engine.md).
// SGD with momentum mu, dampening d:
//   g = grad + wd*p;  buf = g on the first step, else mu*buf + (1-d)*g
//   p -= lr * (nesterov ? g + mu*buf : buf)
#include <cmath>

#include "engine/cpu/cpu_util.h"
#include "engine/kernels.h"

namespace ich::cpu {

void adam_step(Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq, const AdamParams& a) {
  const char* k = "adam_step";
  for (const Tensor* t : TensorList{&param, &grad, &exp_avg, &exp_avg_sq}) expect(*t, k, "param/grad/state", param.dtype());
  dispatch_float(param, k, [&](auto zero) {
    using T = decltype(zero);
    T *p = param.data<T>(), *m = exp_avg.data<T>(), *v = exp_avg_sq.data<T>();
    const T* g = grad.data<T>();
    const T b1 = T(a.beta1), b2 = T(a.beta2), wd = T(a.weight_decay), eps = T(a.eps);
    const T one_minus_b1 = T(1.0 - a.beta1), one_minus_b2 = T(1.0 - a.beta2);
    const double bc1 = 1.0 - std::pow(a.beta1, double(a.step));
    const double bc2 = 1.0 - std::pow(a.beta2, double(a.step));
    const T step_size = T(a.lr / bc1), bc2_sqrt = T(std::sqrt(bc2));
    const int64_t n = param.numel();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const T gi = wd != T(0) ? g[i] + wd * p[i] : g[i];
      m[i] = m[i] * b1 + gi * one_minus_b1;
      v[i] = v[i] * b2 + one_minus_b2 * gi * gi;  // addcmul: value * t1 * t2
      const T denom = std::sqrt(v[i]) / bc2_sqrt + eps;
      p[i] = p[i] + (-step_size) * m[i] / denom;  // addcdiv: value * t1 / t2
    }
  });
}

void sgd_step(Tensor& param, const Tensor& grad, Tensor& buf, const SgdParams& s) {
  const char* k = "sgd_step";
  expect(param, k, "param", param.dtype());
  expect(grad, k, "grad", param.dtype());
  if (s.momentum != 0.0) expect(buf, k, "momentum buffer", param.dtype());
  dispatch_float(param, k, [&](auto zero) {
    using T = decltype(zero);
    T* p = param.data<T>();
    T* b = s.momentum != 0.0 ? buf.data<T>() : nullptr;
    const T* g = grad.data<T>();
    const T mu = T(s.momentum), wd = T(s.weight_decay), damp = T(1.0 - s.dampening), lr = T(s.lr);
    const int64_t n = param.numel();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      T d = wd != T(0) ? g[i] + wd * p[i] : g[i];
      if (b) {
        b[i] = s.first_step ? d : b[i] * mu + d * damp;
        d = s.nesterov ? d + mu * b[i] : b[i];
      }
      p[i] = p[i] + (-lr) * d;
    }
  });
}

void adam_step_all(const std::vector<AdamSlot>& slots, const AdamParams& a) {
  AdamParams b = a;
  if (a.step_count.defined()) {  // the count on the "device" (here: in a tensor), as a graph needs it
    expect(a.step_count, "adam_step_all", "step_count", DType::Float64);
    if (a.skip_if.defined()) {
      expect(a.skip_if, "adam_step_all", "skip_if", DType::Float32);
      if (a.skip_if.data<float>()[0] != 0.f) return;
    }
    Tensor count = a.step_count;
    b.step = int64_t(count.data<double>()[0] += 1.0);
  }
  for (const AdamSlot& s : slots) {
    Tensor p = s.param, m = s.exp_avg, v = s.exp_avg_sq;
    adam_step(p, s.grad, m, v, b);
  }
}

}  // namespace ich::cpu
