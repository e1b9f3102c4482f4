// batch_norm.cpp: 2-d batch normalisation on the CPU, forward and backward.
//
// Per channel c, over the M = N*H*W values x_i of that channel:
//   training:  mean = sum(x)/M,  var = sum((x-mean)^2)/M  (biased, to normalise)
//              y = gamma * (x - mean) * invstd + beta,  invstd = 1/sqrt(var + eps)
//              running_mean = (1-momentum)*running_mean + momentum*mean
//              running_var  = (1-momentum)*running_var  + momentum*var*M/(M-1)  (unbiased)
//   eval:      the same y with running_mean and running_var.
// Backward (training), with xhat = (x - mean)*invstd:
//   dbeta  = sum(dy),  dgamma = sum(dy * xhat)
//   dx     = gamma*invstd/M * (M*dy - dbeta - xhat*dgamma)
// (mean and var depend on every x, hence the two sums). In eval the
// statistics are constants and dx = gamma*invstd*dy.
// Sums run in double, per channel, in a fixed order (plane_sums below).
// bfloat16/float16
// activations (x, y, dy, dx) come with float32 parameters and statistics
// (param_dtype, as PyTorch), and y and dx are rounded to 16 bits once.
#include <array>
#include <cmath>

#include "engine/cpu/cpu_util.h"
#include "engine/kernels.h"

namespace ich::cpu {

namespace {
struct BnGeom {
  int64_t N, C, P;  // P = H*W
  int64_t M() const { return N * P; }
};
BnGeom bn_geometry(const char* k, const Tensor& x) {
  ICH_CHECK(x.dim() == 4 || x.dim() == 2, k, ": expected (N,C,H,W) or (N,C), got ", x.str());
  const int64_t P = x.dim() == 4 ? x.size(2) * x.size(3) : 1;
  return {x.size(0), x.size(1), P};
}

// K sums over the positions of one plane, in double: term(q) gives position
// q's K terms. Each sum is kept as kLanes running sums by position modulo
// kLanes, added pairwise at the end: a fixed order whatever the thread
// count, and the adds run side by side in vectors instead of waiting on one
// chain of dependent adds (a channel's sums took most of batch norm's time).
// A channel's sum is then its planes' sums added in image order.
constexpr int kLanes = 8;
template <int K, class F> std::array<double, K> plane_sums(int64_t P, F&& term) {
  double acc[K][kLanes] = {};
  int64_t q = 0;
  for (; q + kLanes <= P; q += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      const std::array<double, K> t = term(q + l);
      for (int k = 0; k < K; ++k) acc[k][l] += t[k];
    }
  for (int l = 0; q < P; ++q, ++l) {
    const std::array<double, K> t = term(q);
    for (int k = 0; k < K; ++k) acc[k][l] += t[k];
  }
  std::array<double, K> out;
  for (int k = 0; k < K; ++k) {
    for (int w = kLanes / 2; w >= 1; w /= 2)
      for (int l = 0; l < w; ++l) acc[k][l] += acc[k][l + w];
    out[k] = acc[k][0];
  }
  return out;
}
}  // namespace

void batch_norm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& running_mean,
                              Tensor& running_var, double momentum, double eps, Tensor& y, Tensor& save_mean,
                              Tensor& save_invstd) {
  const char* k = "batch_norm_forward_train";
  const BnGeom g = bn_geometry(k, x);
  ICH_CHECK(g.M() > 1, k, ": needs more than one value per channel in training, got ", x.str());
  for (const Tensor* t : TensorList{&x, &y}) expect(*t, k, "x/y", x.dtype());
  for (const Tensor* t : TensorList{&gamma, &beta, &running_mean, &running_var, &save_mean, &save_invstd}) {
    expect(*t, k, "per-channel tensor", param_dtype(x.dtype()));
    ICH_CHECK(t->numel() == g.C, k, ": per-channel tensor ", t->str(), " for ", g.C, " channels");
  }
  dispatch_activation(x, k, [&](auto zero) {
    using T = decltype(zero);
    using P = wide_t<T>;  // the per-channel tensors
    const T* xp = x.data<T>();
    const P *gp = gamma.data<P>(), *bp = beta.data<P>();
    T* yp = y.data<T>();
    P *rm = running_mean.data<P>(), *rv = running_var.data<P>();
    P *sm = save_mean.data<P>(), *si = save_invstd.data<P>();
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < g.C; ++c) {
      double sum = 0;
      for (int64_t n = 0; n < g.N; ++n) {
        const T* xc = xp + (n * g.C + c) * g.P;
        sum += plane_sums<1>(g.P, [&](int64_t q) { return std::array<double, 1>{double(xc[q])}; })[0];
      }
      const double mean = sum / double(g.M());
      double ss = 0;
      for (int64_t n = 0; n < g.N; ++n) {
        const T* xc = xp + (n * g.C + c) * g.P;
        ss += plane_sums<1>(g.P, [&](int64_t q) {
          const double d = double(xc[q]) - mean;
          return std::array<double, 1>{d * d};
        })[0];
      }
      const double var = ss / double(g.M());
      const double invstd = 1.0 / std::sqrt(var + eps);
      const double scale = double(gp[c]) * invstd, shift = double(bp[c]) - mean * scale;
      for (int64_t n = 0; n < g.N; ++n)
        for (int64_t q = 0; q < g.P; ++q) {
          const int64_t i = (n * g.C + c) * g.P + q;
          yp[i] = T(double(xp[i]) * scale + shift);
        }
      sm[c] = P(mean);
      si[c] = P(invstd);
      const double unbiased = var * double(g.M()) / double(g.M() - 1);
      rm[c] = P((1.0 - momentum) * double(rm[c]) + momentum * mean);
      rv[c] = P((1.0 - momentum) * double(rv[c]) + momentum * unbiased);
    }
  });
}

void batch_norm_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                             const Tensor& running_var, double eps, Tensor& y) {
  const char* k = "batch_norm_forward_eval";
  const BnGeom g = bn_geometry(k, x);
  for (const Tensor* t : TensorList{&x, &y}) expect(*t, k, "x/y", x.dtype());
  for (const Tensor* t : TensorList{&gamma, &beta, &running_mean, &running_var}) {
    expect(*t, k, "per-channel tensor", param_dtype(x.dtype()));
    ICH_CHECK(t->numel() == g.C, k, ": per-channel tensor ", t->str(), " for ", g.C, " channels");
  }
  dispatch_activation(x, k, [&](auto zero) {
    using T = decltype(zero);
    using P = wide_t<T>;  // the per-channel tensors
    const T* xp = x.data<T>();
    const P *gp = gamma.data<P>(), *bp = beta.data<P>();
    const P *rm = running_mean.data<P>(), *rv = running_var.data<P>();
    T* yp = y.data<T>();
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t c = 0; c < g.C; ++c) {
        const double invstd = 1.0 / std::sqrt(double(rv[c]) + eps);
        const double scale = double(gp[c]) * invstd, shift = double(bp[c]) - double(rm[c]) * scale;
        for (int64_t q = 0; q < g.P; ++q) {
          const int64_t i = (n * g.C + c) * g.P + q;
          yp[i] = T(double(xp[i]) * scale + shift);
        }
      }
  });
}

void batch_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& gamma, const Tensor& mean,
                         const Tensor& invstd, double eps, bool training, Tensor& gx, Tensor& ggamma, Tensor& gbeta) {
  const char* k = "batch_norm_backward";
  (void)eps;  // invstd already holds it
  const BnGeom g = bn_geometry(k, x);
  for (const Tensor* t : TensorList{&gy, &x}) expect(*t, k, "gy/x", x.dtype());
  if (gx.defined()) expect(gx, k, "gx", x.dtype());
  for (const Tensor* t : TensorList{&gamma, &mean, &invstd, &ggamma, &gbeta}) expect(*t, k, "per-channel tensor", param_dtype(x.dtype()));
  dispatch_activation(x, k, [&](auto zero) {
    using T = decltype(zero);
    using P = wide_t<T>;  // the per-channel tensors
    const T *gyp = gy.data<T>(), *xp = x.data<T>();
    const P *gp = gamma.data<P>(), *mp = mean.data<P>(), *ip = invstd.data<P>();
    T* gxp = gx.defined() ? gx.data<T>() : nullptr;
    P *ggp = ggamma.data<P>(), *gbp = gbeta.data<P>();
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < g.C; ++c) {
      const double m = double(mp[c]), is = double(ip[c]);
      double sum_dy = 0, sum_dy_xhat = 0;
      for (int64_t n = 0; n < g.N; ++n) {
        const T *gc = gyp + (n * g.C + c) * g.P, *xc = xp + (n * g.C + c) * g.P;
        // two passes of one sum each: they vectorise where one pass of two did not
        sum_dy += plane_sums<1>(g.P, [&](int64_t q) { return std::array<double, 1>{double(gc[q])}; })[0];
        sum_dy_xhat += plane_sums<1>(g.P, [&](int64_t q) {
          return std::array<double, 1>{double(gc[q]) * (double(xc[q]) - m) * is};
        })[0];
      }
      ggp[c] = P(sum_dy_xhat);
      gbp[c] = P(sum_dy);
      if (!gxp) continue;
      const double M = double(g.M()), k1 = double(gp[c]) * is, k1_M = k1 / M;
      for (int64_t n = 0; n < g.N; ++n) {
        const int64_t i0 = (n * g.C + c) * g.P;
        if (training) {
          for (int64_t i = i0; i < i0 + g.P; ++i) {
            const double xhat = (double(xp[i]) - m) * is;
            gxp[i] = T(k1_M * (M * double(gyp[i]) - sum_dy - xhat * sum_dy_xhat));
          }
        } else {
          for (int64_t i = i0; i < i0 + g.P; ++i) gxp[i] = T(k1 * double(gyp[i]));
        }
      }
    }
  });
}

}  // namespace ich::cpu
