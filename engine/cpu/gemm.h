// gemm.h: the matrix product under convolution and linear layers.
//
// Row-major C (M,N) = alpha * op(A) * op(B) + beta * C, with op = transpose
// when the flag says so; lda/ldb/ldc are row strides. gemm() calls OpenBLAS
// (cblas_sgemm / cblas_dgemm), single-threaded: the kernels parallelise
// over images and groups themselves, which keeps small grouped products
// efficient and the results independent of scheduling. gemm_reference() is
// the plain triple loop it must agree with (tests/test_gemm.cpp).
#pragma once
#include <cstdint>

namespace ich::cpu {

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
          int64_t ldb, T beta, T* C, int64_t ldc);

template <class T>
void gemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
                    const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

}  // namespace ich::cpu
