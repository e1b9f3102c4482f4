// loss.cu: binary cross-entropy with logits (the math is in
// engine/cpu/loss.cpp). The batch of logits is small (N x 6): the forward is
// one block that reduces in a fixed order; the backward is pointwise.
#include "engine/cuda/cuda_util.h"
#include "engine/kernels.h"

namespace ich::cuda {

namespace {

constexpr int kThreads = 256;

template <class T>
__global__ void bce_forward_kernel(const T* x, const T* t, const T* pw, const T* cw, int64_t n, int64_t C, T* loss) {
  __shared__ double s[kThreads];
  double a = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const double xi = double(x[i]), ti = double(t[i]), w = pw ? double(pw[i % C]) : 1.0, v = cw ? double(cw[i % C]) : 1.0;
    const double softplus_neg = log1p(exp(-fabs(xi))) + fmax(-xi, 0.0);
    a += v * ((1.0 - ti) * xi + (1.0 + (w - 1.0) * ti) * softplus_neg);
  }
  s[threadIdx.x] = a;
  __syncthreads();
  for (int k = blockDim.x / 2; k > 0; k >>= 1) {
    if (threadIdx.x < k) s[threadIdx.x] += s[threadIdx.x + k];
    __syncthreads();
  }
  if (threadIdx.x == 0) *loss = T(s[0] / double(n));
}

template <class T>
__global__ void bce_backward_kernel(const T* gl, const T* x, const T* t, const T* pw, const T* cw, int64_t n, int64_t C,
                                    T* gx) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const double g = double(*gl) / double(n), ti = double(t[i]), w = pw ? double(pw[i % C]) : 1.0;
    const double v = cw ? double(cw[i % C]) : 1.0;
    const double sig_neg = 1.0 / (1.0 + exp(double(x[i])));
    gx[i] = T(g * v * ((1.0 - ti) - (1.0 + (w - 1.0) * ti) * sig_neg));
  }
}

void check(const char* k, const Tensor& x, const Tensor& t, const Tensor& pw, const Tensor& cw) {
  expect(x, k, "logits", x.dtype());
  expect(t, k, "target", x.dtype());
  ICH_CHECK(x.shape() == t.shape(), k, ": logits ", x.str(), " and target ", t.str(), " differ in shape");
  for (const Tensor* w : {&pw, &cw}) {
    if (!w->defined()) continue;
    expect(*w, k, "pos_weight/weight", x.dtype());
    ICH_CHECK(w->numel() == x.size(-1), k, ": pos_weight/weight ", w->str(), " must have one value per class");
  }
}
template <class T> const T* ptr_or_null(const Tensor& t) { return t.defined() ? ptr<T>(t) : nullptr; }

}  // namespace

void bce_with_logits_forward(const Tensor& x, const Tensor& target, const Tensor& pos_weight, const Tensor& weight,
                             Tensor& loss) {
  const char* k = "bce_with_logits_forward";
  check(k, x, target, pos_weight, weight);
  expect(loss, k, "loss", x.dtype());
  Context& c = context_of(x);
  dispatch_float(x, k, [&](auto z) {
    using T = decltype(z);
    bce_forward_kernel<T><<<1, kThreads, 0, c.stream>>>(ptr<T>(x), ptr<T>(target), ptr_or_null<T>(pos_weight),
                                                        ptr_or_null<T>(weight), x.numel(), x.size(-1), ptr<T>(loss));
    ICH_CUDA_LAUNCH_CHECK();
  });
}

void bce_with_logits_backward(const Tensor& gloss, const Tensor& x, const Tensor& target, const Tensor& pos_weight,
                              const Tensor& weight, Tensor& gx) {
  const char* k = "bce_with_logits_backward";
  check(k, x, target, pos_weight, weight);
  expect(gx, k, "gx", x.dtype());
  expect(gloss, k, "gloss", x.dtype());
  Context& c = context_of(x);
  dispatch_float(x, k, [&](auto z) {
    using T = decltype(z);
    bce_backward_kernel<T><<<blocks_for(x.numel()), 256, 0, c.stream>>>(
        ptr<T>(gloss), ptr<T>(x), ptr<T>(target), ptr_or_null<T>(pos_weight), ptr_or_null<T>(weight), x.numel(),
        x.size(-1), ptr<T>(gx));
    ICH_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace ich::cuda
