// linear.cu: the fully connected layer through cuBLAS.
//
// cuBLAS is column-major; a row-major (R,C) matrix is the column-major
// (C,R) matrix of the same bytes. So, with x (N,in), w (out,in), y (N,out)
// all row-major:
//   y  = x w^T   is  y^T (out,N)  = w^T... in column-major: C = op(A) op(B) with
//                    A = w as col-major (in,out) transposed, B = x as col-major (in,N)
//   dx = dy w    is  dx^T (in,N)  = [w as (in,out)] [dy as (out,N)]
//   dw = dy^T x  is  dw^T (in,out) = [x as (in,N)] [dy as (out,N)]^T
// Bias add and bias gradient (column sums of dy) are small kernels.
#include "engine/cuda/cuda_util.h"
#include "engine/kernels.h"

namespace ich::cuda {

namespace {

void gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const float* A, int lda,
          const float* B, int ldb, float* C, int ldc) {
  const float one = 1, zero = 0;
  ICH_CUBLAS_CHECK(cublasSgemm(h, ta, tb, m, n, k, &one, A, lda, B, ldb, &zero, C, ldc));
}
void gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const double* A, int lda,
          const double* B, int ldb, double* C, int ldc) {
  const double one = 1, zero = 0;
  ICH_CUBLAS_CHECK(cublasDgemm(h, ta, tb, m, n, k, &one, A, lda, B, ldb, &zero, C, ldc));
}

template <class T> __global__ void add_row_bias(T* y, const T* b, int64_t N, int64_t out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < N * out; i += int64_t(gridDim.x) * blockDim.x)
    y[i] += b[i % out];
}

// One thread per column, summing rows in order: deterministic.
template <class T> __global__ void column_sums(const T* g, T* out, int64_t N, int64_t C) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < C; c += int64_t(gridDim.x) * blockDim.x) {
    double s = 0;
    for (int64_t n = 0; n < N; ++n) s += double(g[n * C + c]);
    out[c] = T(s);
  }
}

}  // namespace

void linear_forward(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y) {
  const char* k = "linear_forward";
  for (const Tensor* t : TensorList{&x, &w, &y}) expect(*t, k, "x/w/y", x.dtype());
  const int64_t N = x.size(0), in = x.size(1), out = w.size(0);
  Context& c = context_of(x);
  dispatch_float(x, k, [&](auto z) {
    using T = decltype(z);
    gemm(c.cublas, CUBLAS_OP_T, CUBLAS_OP_N, int(out), int(N), int(in), ptr<T>(w), int(in), ptr<T>(x), int(in),
         ptr<T>(y), int(out));
    if (b.defined()) {
      expect(b, k, "b", x.dtype());
      add_row_bias<T><<<blocks_for(N * out), 256, 0, c.stream>>>(ptr<T>(y), ptr<T>(b), N, out);
      ICH_CUDA_LAUNCH_CHECK();
    }
  });
}

void linear_backward_input(const Tensor& gy, const Tensor& w, Tensor& gx) {
  const char* k = "linear_backward_input";
  for (const Tensor* t : TensorList{&gy, &w, &gx}) expect(*t, k, "gy/w/gx", w.dtype());
  const int64_t N = gy.size(0), out = w.size(0), in = w.size(1);
  Context& c = context_of(w);
  dispatch_float(w, k, [&](auto z) {
    using T = decltype(z);
    gemm(c.cublas, CUBLAS_OP_N, CUBLAS_OP_N, int(in), int(N), int(out), ptr<T>(w), int(in), ptr<T>(gy), int(out),
         ptr<T>(gx), int(in));
  });
}

void linear_backward_params(const Tensor& gy, const Tensor& x, Tensor& gw, Tensor& gb) {
  const char* k = "linear_backward_params";
  expect(gy, k, "gy", x.dtype());
  expect(x, k, "x", x.dtype());
  const int64_t N = x.size(0), in = x.size(1), out = gy.size(1);
  Context& c = context_of(x);
  dispatch_float(x, k, [&](auto z) {
    using T = decltype(z);
    if (gw.defined()) {
      expect(gw, k, "gw", x.dtype());
      gemm(c.cublas, CUBLAS_OP_N, CUBLAS_OP_T, int(in), int(out), int(N), ptr<T>(x), int(in), ptr<T>(gy), int(out),
           ptr<T>(gw), int(in));
    }
    if (gb.defined()) {
      expect(gb, k, "gb", x.dtype());
      column_sums<T><<<blocks_for(out), 256, 0, c.stream>>>(ptr<T>(gy), ptr<T>(gb), N, out);
      ICH_CUDA_LAUNCH_CHECK();
    }
  });
}

}  // namespace ich::cuda
