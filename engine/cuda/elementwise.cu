// elementwise.cu: pointwise kernels and the full sum (the math is in
// engine/cpu/elementwise.cpp). Grid-stride loops; the sum reduces a fixed
// grid of blocks, then the block sums in order, so it is deterministic.
// relu, add and add_relu_ also take bfloat16/float16 tensors (cuda_util.h:
// computed in float32, rounded once, as the CPU's).
#include "engine/cuda/cuda_util.h"
#include "engine/kernels.h"

namespace ich::cuda {

namespace {

template <class T, class F> __global__ void map_kernel(int64_t n, T* y, F f) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = f(i);
}

template <class T, class F> void map(const Tensor& out, F f) {
  const int64_t n = out.numel();
  if (n == 0) return;
  map_kernel<T><<<blocks_for(n), 256, 0, context_of(out).stream>>>(n, ptr<T>(out), f);
  ICH_CUDA_LAUNCH_CHECK();
}

void same_shape(const char* k, const Tensor& a, const Tensor& b) {
  ICH_CHECK(a.shape() == b.shape(), k, ": shapes differ: ", a.str(), " and ", b.str());
}

// The pointwise bodies, as functors (nvcc allows no device lambdas inside
// the generic lambdas of dispatch_float).
template <class T> struct ReluFwd {
  const T* x;
  __device__ T operator()(int64_t i) const {
    return widen(x[i]) <= wide_t<T>(0) ? narrow<T>(0) : x[i];  // NaN stays NaN
  }
};
template <class T> struct ReluBwd {
  const T *g, *y;
  __device__ T operator()(int64_t i) const { return widen(y[i]) > wide_t<T>(0) ? g[i] : narrow<T>(0); }
};
template <class T> struct SigmoidFwd {
  const T* x;
  __device__ T operator()(int64_t i) const { return T(1) / (T(1) + exp(-x[i])); }
};
template <class T> struct SigmoidBwd {
  const T *g, *y;
  __device__ T operator()(int64_t i) const { return g[i] * y[i] * (T(1) - y[i]); }
};
template <class T> struct Add {
  const T *a, *b;
  __device__ T operator()(int64_t i) const { return narrow<T>(widen(a[i]) + widen(b[i])); }
};
template <class T> struct Mul {
  const T *a, *b;
  __device__ T operator()(int64_t i) const { return a[i] * b[i]; }
};
template <class T> struct Scale {
  const T* x;
  T s;
  __device__ T operator()(int64_t i) const { return s * x[i]; }
};
template <class T> struct Broadcast {
  const T* g;
  T s;
  __device__ T operator()(int64_t) const { return g[0] * s; }
};

constexpr int kSumBlocks = 256, kSumThreads = 256;

template <class T> __global__ void partial_sums(const T* x, int64_t n, double* part) {
  __shared__ double s[kSumThreads];
  double a = 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    a += double(x[i]);
  s[threadIdx.x] = a;
  __syncthreads();
  for (int k = blockDim.x / 2; k > 0; k >>= 1) {
    if (threadIdx.x < k) s[threadIdx.x] += s[threadIdx.x + k];
    __syncthreads();
  }
  if (threadIdx.x == 0) part[blockIdx.x] = s[0];
}

template <class T> __global__ void final_sum(const double* part, int blocks, T* y) {
  double t = 0;
  for (int b = 0; b < blocks; ++b) t += part[b];
  *y = T(t);
}

}  // namespace

void relu_forward(const Tensor& x, Tensor& y) {
  expect_dense(x, x, "relu_forward", "x", x.dtype());
  expect_dense(y, x, "relu_forward", "y", x.dtype());
  dispatch_activation(x, "relu_forward", [&](auto z) {
    using T = decltype(z);
    const T* xp = ptr<T>(x);
    map<T>(y, ReluFwd<T>{xp});
  });
}

void relu_backward(const Tensor& gy, const Tensor& y, Tensor& gx) {
  for (const Tensor* t : TensorList{&gy, &y, &gx}) expect_dense(*t, y, "relu_backward", "gy/y/gx", y.dtype());
  dispatch_activation(y, "relu_backward", [&](auto z) {
    using T = decltype(z);
    const T *g = ptr<T>(gy), *yp = ptr<T>(y);
    map<T>(gx, ReluBwd<T>{g, yp});
  });
}

void sigmoid_forward(const Tensor& x, Tensor& y) {
  expect_dense(x, x, "sigmoid_forward", "x", x.dtype());
  expect_dense(y, x, "sigmoid_forward", "y", x.dtype());
  dispatch_float(x, "sigmoid_forward", [&](auto z) {
    using T = decltype(z);
    const T* xp = ptr<T>(x);
    map<T>(y, SigmoidFwd<T>{xp});
  });
}

void sigmoid_backward(const Tensor& gy, const Tensor& y, Tensor& gx) {
  for (const Tensor* t : TensorList{&gy, &y, &gx}) expect_dense(*t, y, "sigmoid_backward", "gy/y/gx", y.dtype());
  dispatch_float(y, "sigmoid_backward", [&](auto z) {
    using T = decltype(z);
    const T *g = ptr<T>(gy), *yp = ptr<T>(y);
    map<T>(gx, SigmoidBwd<T>{g, yp});
  });
}

void add_forward(const Tensor& a, const Tensor& b, Tensor& y) {
  same_shape("add_forward", a, b);
  for (const Tensor* t : TensorList{&a, &b, &y}) expect_dense(*t, a, "add_forward", "a/b/y", a.dtype());
  dispatch_activation(a, "add_forward", [&](auto z) {
    using T = decltype(z);
    const T *ap = ptr<T>(a), *bp = ptr<T>(b);
    map<T>(y, Add<T>{ap, bp});
  });
}

void add_inplace(Tensor& dst, const Tensor& src) {
  same_shape("add_inplace", dst, src);
  for (const Tensor* t : TensorList{&dst, &src}) expect_dense(*t, dst, "add_inplace", "dst/src", dst.dtype());
  dispatch_activation(dst, "add_inplace", [&](auto z) {
    using T = decltype(z);
    T* d = ptr<T>(dst);
    const T* s = ptr<T>(src);
    map<T>(dst, Add<T>{d, s});
  });
}

void mul_forward(const Tensor& a, const Tensor& b, Tensor& y) {
  same_shape("mul_forward", a, b);
  for (const Tensor* t : TensorList{&a, &b, &y}) expect_dense(*t, a, "mul_forward", "a/b/y", a.dtype());
  dispatch_float(a, "mul_forward", [&](auto z) {
    using T = decltype(z);
    const T *ap = ptr<T>(a), *bp = ptr<T>(b);
    map<T>(y, Mul<T>{ap, bp});
  });
}

void scale_forward(const Tensor& x, double s, Tensor& y) {
  for (const Tensor* t : TensorList{&x, &y}) expect_dense(*t, x, "scale_forward", "x/y", x.dtype());
  dispatch_float(x, "scale_forward", [&](auto z) {
    using T = decltype(z);
    const T* xp = ptr<T>(x);
    const T sc = T(s);
    map<T>(y, Scale<T>{xp, sc});
  });
}

void sum_forward(const Tensor& x, Tensor& y) {
  expect(x, "sum_forward", "x", x.dtype());
  expect(y, "sum_forward", "y", x.dtype());
  Context& c = context_of(x);
  Tensor part = Tensor::empty({kSumBlocks}, DType::Float64, x.device());
  dispatch_float(x, "sum_forward", [&](auto z) {
    using T = decltype(z);
    partial_sums<T><<<kSumBlocks, kSumThreads, 0, c.stream>>>(ptr<T>(x), x.numel(), ptr<double>(part));
    ICH_CUDA_LAUNCH_CHECK();
    final_sum<T><<<1, 1, 0, c.stream>>>(ptr<double>(part), kSumBlocks, ptr<T>(y));
    ICH_CUDA_LAUNCH_CHECK();
  });
}

void fill_like_scalar(const Tensor& gy, double s, Tensor& gx) {
  expect(gy, "fill_like_scalar", "gy", gy.dtype());
  expect(gx, "fill_like_scalar", "gx", gy.dtype());
  dispatch_float(gy, "fill_like_scalar", [&](auto z) {
    using T = decltype(z);
    const T* g = ptr<T>(gy);
    const T sc = T(s);
    map<T>(gx, Broadcast<T>{g, sc});
  });
}

namespace {
template <class T> __global__ void add_relu_kernel(T* y, const T* r, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const wide_t<T> v = r ? widen(y[i]) + widen(r[i]) : widen(y[i]);
    y[i] = narrow<T>(v <= wide_t<T>(0) ? wide_t<T>(0) : v);  // NaN stays NaN
  }
}
}  // namespace

void add_relu_(Tensor& y, const Tensor& r) {
  const char* k = "add_relu_";
  expect_dense(y, y, k, "y", y.dtype());
  if (r.defined()) expect_dense(r, y, k, "residual", y.dtype());
  const int64_t n = y.numel();
  if (n == 0) return;
  dispatch_activation(y, k, [&](auto z) {
    using T = decltype(z);
    add_relu_kernel<T><<<blocks_for(n), 256, 0, context_of(y).stream>>>(ptr<T>(y), r.defined() ? ptr<T>(r) : nullptr, n);
    ICH_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace ich::cuda
