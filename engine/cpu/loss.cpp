// loss.cpp: binary cross-entropy with logits, on the CPU.
//
// For logit x, target t in [0,1] and positive weight w (per class, 1 without
// pos_weight), PyTorch's BCEWithLogitsLoss is
//   l = -[ w*t*log(sigmoid(x)) + (1-t)*log(1 - sigmoid(x)) ]
//     = (1-t)*x + (1 + (w-1)*t) * softplus(-x)
// with softplus(-x) = log(1 + e^-x) = log1p(e^-|x|) + max(-x, 0), which never
// overflows. The loss is the mean of v*l over all N*C elements, v the
// class's weight (1 without weight).
// dl/dx = (1-t) - (1 + (w-1)*t) * sigmoid(-x); without weights, sigmoid(x) - t.
#include <cmath>

#include "engine/cpu/cpu_util.h"
#include "engine/kernels.h"

namespace ich::cpu {

namespace {
void check_bce(const char* k, const Tensor& x, const Tensor& t, const Tensor& pw, const Tensor& cw) {
  expect(x, k, "logits", x.dtype());
  expect(t, k, "target", x.dtype());
  ICH_CHECK(x.shape() == t.shape(), k, ": logits ", x.str(), " and target ", t.str(), " differ in shape");
  for (auto [w, name] : {std::pair{&pw, "pos_weight"}, std::pair{&cw, "weight"}}) {
    if (!w->defined()) continue;
    expect(*w, k, name, x.dtype());
    ICH_CHECK(x.dim() >= 1 && w->numel() == x.size(-1), k, ": ", name, " ", w->str(),
              " must have one value per class (", x.dim() ? x.size(-1) : 0, ")");
  }
}
template <class T> double softplus_neg(T x) {  // log(1 + e^-x), stable
  const double xd = double(x);
  return std::log1p(std::exp(-std::fabs(xd))) + std::max(-xd, 0.0);
}
}  // namespace

void bce_with_logits_forward(const Tensor& x, const Tensor& target, const Tensor& pos_weight, const Tensor& weight,
                             Tensor& loss) {
  const char* k = "bce_with_logits_forward";
  check_bce(k, x, target, pos_weight, weight);
  expect(loss, k, "loss", x.dtype());
  dispatch_float(x, k, [&](auto zero) {
    using T = decltype(zero);
    const T *xp = x.data<T>(), *tp = target.data<T>(), *wp = pos_weight.defined() ? pos_weight.data<T>() : nullptr;
    const T* vp = weight.defined() ? weight.data<T>() : nullptr;
    const int64_t n = x.numel(), C = x.dim() ? x.size(-1) : 1;
    double s = 0;  // sequential: n is a batch of logits, small
    for (int64_t i = 0; i < n; ++i) {
      const double t = double(tp[i]), w = wp ? double(wp[i % C]) : 1.0, v = vp ? double(vp[i % C]) : 1.0;
      s += v * ((1.0 - t) * double(xp[i]) + (1.0 + (w - 1.0) * t) * softplus_neg(xp[i]));
    }
    loss.data<T>()[0] = T(s / double(n));
  });
}

void bce_with_logits_backward(const Tensor& gloss, const Tensor& x, const Tensor& target, const Tensor& pos_weight,
                              const Tensor& weight, Tensor& gx) {
  const char* k = "bce_with_logits_backward";
  check_bce(k, x, target, pos_weight, weight);
  expect(gx, k, "gx", x.dtype());
  expect(gloss, k, "gloss", x.dtype());
  dispatch_float(x, k, [&](auto zero) {
    using T = decltype(zero);
    const T *xp = x.data<T>(), *tp = target.data<T>(), *wp = pos_weight.defined() ? pos_weight.data<T>() : nullptr;
    const T* vp = weight.defined() ? weight.data<T>() : nullptr;
    const int64_t n = x.numel(), C = x.dim() ? x.size(-1) : 1;
    const double g = double(gloss.data<T>()[0]) / double(n);
    T* out = gx.data<T>();
    for (int64_t i = 0; i < n; ++i) {
      const double t = double(tp[i]), w = wp ? double(wp[i % C]) : 1.0, v = vp ? double(vp[i % C]) : 1.0;
      const double sig_neg = 1.0 / (1.0 + std::exp(double(xp[i])));  // sigmoid(-x)
      out[i] = T(g * v * ((1.0 - t) - (1.0 + (w - 1.0) * t) * sig_neg));
    }
  });
}

}  // namespace ich::cpu
