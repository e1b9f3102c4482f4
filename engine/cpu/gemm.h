// gemm.h: the matrix product under convolution and linear layers.
//
// Row-major C (M,N) = alpha * op(A) * op(B) + beta * C, with op = transpose
// when the flag says so; lda/ldb/ldc are row strides. gemm() calls OpenBLAS
// (cblas_sgemm / cblas_dgemm), single-threaded: the kernels parallelise
// over images and groups themselves, which keeps small grouped products
// efficient and the results independent of scheduling. gemm_reference() is
// the plain triple loop it must agree with (tests/test_gemm.cpp).
//
// Accuracy (float32): a sum of K products rounded in sequence is off by
// ~sqrt(K) u typically (u = 2^-24). The float32 product cuts K into blocks
// of kSumBlock terms, one BLAS call each, every block's sum added into C:
// ~(sqrt(128) + sqrt(K/128)) u, a third of the error of a 1x1 convolution's
// 1024-term sums, for 0-10% of the time on the shapes ResNeXt-101 has
// (docs/engine.md, "Float32 accuracy"). PyTorch's own float32 backward of
// such a convolution, on two threads and more, is this accurate too.
// float64 (the oracle) is one call.
#pragma once
#include <cstdint>

namespace ich::cpu {

constexpr int64_t kSumBlock = 128;

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
          int64_t ldb, T beta, T* C, int64_t ldc);

template <class T>
void gemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
                    const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

}  // namespace ich::cpu
