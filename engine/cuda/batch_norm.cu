// batch_norm.cu: batch normalisation through cuDNN (spatial mode: one mean
// and variance per channel over N, H, W).
//
//   training forward  cudnnBatchNormalizationForwardTraining with
//                     exponentialAverageFactor = momentum; cuDNN updates the
//                     running mean and the running variance (with the unbiased
//                     variance, as PyTorch) in place, and saves the batch mean
//                     and 1/sqrt(var + eps) for backward
//   eval forward      cudnnBatchNormalizationForwardInference
//   training backward cudnnBatchNormalizationBackward from the saved statistics
//   eval backward     a small kernel: the statistics are constants, so
//                     dx = gamma * invstd * dy (cuDNN's backward always
//                     differentiates through the batch statistics)
// The per-channel tensors use the descriptor cudnnDeriveBNTensorDescriptor
// makes: (1,C,1,1) of the data's type.
#include "engine/cuda/cuda_util.h"
#include "engine/kernels.h"

namespace ich::cuda {

namespace {


struct BnDescs {
  TensorDesc x, per_channel;
};

// x, y, dy and dx share x's layout (N,C,H,W, or channels-last in training:
// engine/ops/batch_norm.cpp); the descriptor takes it from x's strides.
template <class T> void describe(BnDescs& d, const Tensor& x) {
  set_strided(d.x, cudnn_type<T>(), x);
  ICH_CUDNN_CHECK(cudnnDeriveBNTensorDescriptor(d.per_channel, d.x, CUDNN_BATCHNORM_SPATIAL));
}

// One block per channel: sums of dy and dy*xhat over (N, P), then, if gx is
// wanted, gx = gamma * invstd * dy. Fixed block size and order: deterministic.
template <class T>
__global__ void bn_eval_backward_kernel(const T* gy, const T* x, const T* gamma, const T* mean, const T* invstd,
                                        T* gx, T* ggamma, T* gbeta, int64_t N, int64_t C, int64_t P) {
  const int64_t c = blockIdx.x;
  __shared__ double s_dy[256], s_dyx[256];
  double a = 0, b = 0;
  const double m = double(mean[c]), is = double(invstd[c]), k = double(gamma[c]) * is;
  for (int64_t i = threadIdx.x; i < N * P; i += blockDim.x) {
    const int64_t idx = ((i / P) * C + c) * P + i % P;
    const double g = double(gy[idx]);
    a += g;
    b += g * (double(x[idx]) - m) * is;
    if (gx) gx[idx] = T(k * g);
  }
  s_dy[threadIdx.x] = a;
  s_dyx[threadIdx.x] = b;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) {
      s_dy[threadIdx.x] += s_dy[threadIdx.x + s];
      s_dyx[threadIdx.x] += s_dyx[threadIdx.x + s];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    gbeta[c] = T(s_dy[0]);
    ggamma[c] = T(s_dyx[0]);
  }
}

}  // namespace

void batch_norm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& running_mean,
                              Tensor& running_var, double momentum, double eps, Tensor& y, Tensor& save_mean,
                              Tensor& save_invstd) {
  const char* k = "batch_norm_forward_train";
  for (const Tensor* t : TensorList{&x, &y}) expect_dense(*t, x, k, "x/y", x.dtype());
  for (const Tensor* t : TensorList{&gamma, &beta, &running_mean, &running_var, &save_mean, &save_invstd})
    expect(*t, k, "per-channel argument", x.dtype());
  Context& c = context_of(x);
  dispatch_float(x, k, [&](auto z) {
    using T = decltype(z);
    BnDescs d;
    describe<T>(d, x);
    ICH_CUDNN_CHECK(cudnnBatchNormalizationForwardTraining(
        c.cudnn, CUDNN_BATCHNORM_SPATIAL, one<T>(), zero<T>(), d.x, x.raw_data(), d.x, y.raw_data(), d.per_channel,
        gamma.raw_data(), beta.raw_data(), momentum, running_mean.raw_data(), running_var.raw_data(), eps,
        save_mean.raw_data(), save_invstd.raw_data()));
  });
}

void batch_norm_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                             const Tensor& running_var, double eps, Tensor& y) {
  const char* k = "batch_norm_forward_eval";
  for (const Tensor* t : TensorList{&x, &y}) expect_dense(*t, x, k, "x/y", x.dtype());
  for (const Tensor* t : TensorList{&gamma, &beta, &running_mean, &running_var})
    expect(*t, k, "per-channel argument", x.dtype());
  Context& c = context_of(x);
  dispatch_float(x, k, [&](auto z) {
    using T = decltype(z);
    BnDescs d;
    describe<T>(d, x);
    ICH_CUDNN_CHECK(cudnnBatchNormalizationForwardInference(
        c.cudnn, CUDNN_BATCHNORM_SPATIAL, one<T>(), zero<T>(), d.x, x.raw_data(), d.x, y.raw_data(), d.per_channel,
        gamma.raw_data(), beta.raw_data(), running_mean.raw_data(), running_var.raw_data(), eps));
  });
}

void batch_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& gamma, const Tensor& mean,
                         const Tensor& invstd, double eps, bool training, Tensor& gx, Tensor& ggamma, Tensor& gbeta) {
  const char* k = "batch_norm_backward";
  for (const Tensor* t : TensorList{&gy, &x}) expect_dense(*t, x, k, "gy/x", x.dtype());
  for (const Tensor* t : TensorList{&gamma, &mean, &invstd, &ggamma, &gbeta})
    expect(*t, k, "per-channel argument", x.dtype());
  if (gx.defined()) expect_dense(gx, x, k, "gx", x.dtype());
  ICH_CHECK(training || x.is_contiguous(), k, ": the evaluation backward takes N,C,H,W tensors, got ", x.str());
  Context& c = context_of(x);
  dispatch_float(x, k, [&](auto z) {
    using T = decltype(z);
    const int64_t N = x.size(0), C = x.size(1), P = x.dim() == 4 ? x.size(2) * x.size(3) : 1;
    if (!training) {
      bn_eval_backward_kernel<T><<<int(C), 256, 0, c.stream>>>(
          ptr<T>(gy), ptr<T>(x), ptr<T>(gamma), ptr<T>(mean), ptr<T>(invstd), gx.defined() ? ptr<T>(gx) : nullptr,
          ptr<T>(ggamma), ptr<T>(gbeta), N, C, P);
      ICH_CUDA_LAUNCH_CHECK();
      return;
    }
    BnDescs d;
    describe<T>(d, x);
    // cuDNN always writes dx: give it scratch space when it is not wanted.
    Tensor dx = gx.defined() ? gx : Tensor::empty(x.shape(), x.dtype(), x.device(), memory_format_of(x));
    ICH_CUDNN_CHECK(cudnnBatchNormalizationBackward(
        c.cudnn, CUDNN_BATCHNORM_SPATIAL, one<T>(), zero<T>(), one<T>(), zero<T>(), d.x, x.raw_data(), d.x,
        gy.raw_data(), d.x, dx.raw_data(), d.per_channel, gamma.raw_data(), ggamma.raw_data(), gbeta.raw_data(),
        eps, mean.raw_data(), invstd.raw_data()));
  });
}

}  // namespace ich::cuda
