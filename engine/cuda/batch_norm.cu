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
//
// bfloat16/float16 activations (engine/ops/amp.h) with float32 parameters and
// statistics run our own kernels, with the CPU's arithmetic (sums in float64
// per channel, the result rounded once: engine/cpu/batch_norm.cpp), one
// block per channel, any layout (the tensor's strides): the CPU emulation is
// their oracle, and cuDNN's legacy batch norm does not take bfloat16 data.
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

// Element i of channel c (i over N*H*W, N-major) at its strided offset.
struct ChannelWalk {
  int64_t N, P, W, sn, sc, sh, sw;
  __device__ int64_t at(int64_t c, int64_t i) const {
    const int64_t n = i / P, q = i % P;
    return n * sn + c * sc + (q / W) * sh + (q % W) * sw;
  }
};
ChannelWalk walk_of(const Tensor& x) {
  const bool four = x.dim() == 4;
  const int64_t H = four ? x.size(2) : 1, W = four ? x.size(3) : 1;
  return {x.size(0), H * W, W, x.strides()[0], x.strides()[1], four ? x.strides()[2] : 0, four ? x.strides()[3] : 0};
}

constexpr int kBnThreads = 256;

// The sum of v over the block, in a fixed tree (deterministic), to every thread.
__device__ double block_sum(double v, double* s) {
  s[threadIdx.x] = v;
  __syncthreads();
  for (int k = blockDim.x / 2; k > 0; k >>= 1) {
    if (threadIdx.x < k) s[threadIdx.x] += s[threadIdx.x + k];
    __syncthreads();
  }
  const double r = s[0];
  __syncthreads();
  return r;
}

template <class T>
__global__ void bn16_forward_kernel(const T* x, T* y, const float* gamma, const float* beta, float* rm, float* rv,
                                    float* save_mean, float* save_invstd, ChannelWalk g, bool training,
                                    double momentum, double eps) {
  __shared__ double s[kBnThreads];
  const int64_t c = blockIdx.x, M = g.N * g.P;
  double mean, invstd;
  if (training) {
    double a = 0;
    for (int64_t i = threadIdx.x; i < M; i += blockDim.x) a += double(widen(x[g.at(c, i)]));
    mean = block_sum(a, s) / double(M);
    double b = 0;
    for (int64_t i = threadIdx.x; i < M; i += blockDim.x) {
      const double d = double(widen(x[g.at(c, i)])) - mean;
      b += d * d;
    }
    const double var = block_sum(b, s) / double(M);
    invstd = 1.0 / sqrt(var + eps);
    if (threadIdx.x == 0) {
      save_mean[c] = float(mean);
      save_invstd[c] = float(invstd);
      rm[c] = float((1.0 - momentum) * double(rm[c]) + momentum * mean);
      rv[c] = float((1.0 - momentum) * double(rv[c]) + momentum * var * double(M) / double(M - 1));
    }
  } else {
    mean = double(rm[c]);
    invstd = 1.0 / sqrt(double(rv[c]) + eps);
  }
  const double scale = double(gamma[c]) * invstd, shift = double(beta[c]) - mean * scale;
  for (int64_t i = threadIdx.x; i < M; i += blockDim.x) {
    const int64_t o = g.at(c, i);
    y[o] = narrow_from_double<T>(double(widen(x[o])) * scale + shift);
  }
}

template <class T>
__global__ void bn16_backward_kernel(const T* gy, const T* x, const float* gamma, const float* mean,
                                     const float* invstd, T* gx, float* ggamma, float* gbeta, ChannelWalk g,
                                     bool training) {
  __shared__ double s[kBnThreads];
  const int64_t c = blockIdx.x, M = g.N * g.P;
  const double m = double(mean[c]), is = double(invstd[c]);
  double a = 0, b = 0;
  for (int64_t i = threadIdx.x; i < M; i += blockDim.x) {
    const int64_t o = g.at(c, i);
    const double d = double(widen(gy[o]));
    a += d;
    b += d * (double(widen(x[o])) - m) * is;
  }
  const double sum_dy = block_sum(a, s), sum_dy_xhat = block_sum(b, s);
  if (threadIdx.x == 0) {
    ggamma[c] = float(sum_dy_xhat);
    gbeta[c] = float(sum_dy);
  }
  if (!gx) return;
  const double Md = double(M), k1 = double(gamma[c]) * is;
  for (int64_t i = threadIdx.x; i < M; i += blockDim.x) {
    const int64_t o = g.at(c, i);
    const double d = double(widen(gy[o]));
    if (training) {
      const double xhat = (double(widen(x[o])) - m) * is;
      gx[o] = narrow_from_double<T>(k1 / Md * (Md * d - sum_dy - xhat * sum_dy_xhat));
    } else {
      gx[o] = narrow_from_double<T>(k1 * d);
    }
  }
}

// Runs f(T{}) for a 16-bit x; false for float32/float64 (cuDNN's path).
template <class F> bool dispatch_16bit(const Tensor& x, F&& f) {
  if (x.dtype() == DType::BFloat16) f(__nv_bfloat16{});
  else if (x.dtype() == DType::Float16) f(__half{});
  else return false;
  return true;
}

}  // namespace

void batch_norm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& running_mean,
                              Tensor& running_var, double momentum, double eps, Tensor& y, Tensor& save_mean,
                              Tensor& save_invstd) {
  const char* k = "batch_norm_forward_train";
  for (const Tensor* t : TensorList{&x, &y}) expect_dense(*t, x, k, "x/y", x.dtype());
  for (const Tensor* t : TensorList{&gamma, &beta, &running_mean, &running_var, &save_mean, &save_invstd})
    expect(*t, k, "per-channel argument", param_dtype(x.dtype()));
  Context& c = context_of(x);
  if (dispatch_16bit(x, [&](auto z) {
        using T = decltype(z);
        bn16_forward_kernel<T><<<int(x.size(1)), kBnThreads, 0, c.stream>>>(
            ptr<T>(x), ptr<T>(y), ptr<float>(gamma), ptr<float>(beta), ptr<float>(running_mean),
            ptr<float>(running_var), ptr<float>(save_mean), ptr<float>(save_invstd), walk_of(x), true, momentum, eps);
        ICH_CUDA_LAUNCH_CHECK();
      }))
    return;
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
    expect(*t, k, "per-channel argument", param_dtype(x.dtype()));
  Context& c = context_of(x);
  if (dispatch_16bit(x, [&](auto z) {
        using T = decltype(z);
        bn16_forward_kernel<T><<<int(x.size(1)), kBnThreads, 0, c.stream>>>(
            ptr<T>(x), ptr<T>(y), ptr<float>(gamma), ptr<float>(beta), ptr<float>(running_mean),
            ptr<float>(running_var), nullptr, nullptr, walk_of(x), false, 0.0, eps);
        ICH_CUDA_LAUNCH_CHECK();
      }))
    return;
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
    expect(*t, k, "per-channel argument", param_dtype(x.dtype()));
  if (gx.defined()) expect_dense(gx, x, k, "gx", x.dtype());
  Context& c = context_of(x);
  if (dispatch_16bit(x, [&](auto z) {
        using T = decltype(z);
        bn16_backward_kernel<T><<<int(x.size(1)), kBnThreads, 0, c.stream>>>(
            ptr<T>(gy), ptr<T>(x), ptr<float>(gamma), ptr<float>(mean), ptr<float>(invstd),
            gx.defined() ? ptr<T>(gx) : nullptr, ptr<float>(ggamma), ptr<float>(gbeta), walk_of(x), training);
        ICH_CUDA_LAUNCH_CHECK();
      }))
    return;
  ICH_CHECK(training || x.is_contiguous(), k, ": the evaluation backward takes N,C,H,W tensors, got ", x.str());
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
