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

// The same product with the reduction cut into blocks of kSumBlock terms,
// one call each, every block's sum added into C: a sum of K products rounded
// in sequence is off by ~sqrt(K) u typically (u = 2^-24); in blocks, by
// ~(sqrt(128) + sqrt(K/128)) u. Used where PyTorch's own float32 is that
// accurate and ours was not: the backward data of a convolution (a 1x1
// convolution's sums over its 256-2048 output channels; PyTorch's, on two
// threads and more, 1.7x as accurate as one long sum). Not for the forward
// products: blocked, each convolution alone gets more accurate, but the
// ill-conditioned deep gradients of a train-mode ResNeXt-101 on batch 2
// (tests/test_resnext.cpp) got 2-23x worse in the L2 norm with every block
// size tried (64, 128, 256) than with OpenBLAS's own order, which PyTorch's
// float32 shares (docs/engine.md, "Float32 accuracy"). float64: one call.
constexpr int64_t kSumBlock = 128;
template <class T>
void gemm_sum_blocked(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
                      const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

template <class T>
void gemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
                    const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

}  // namespace ich::cpu
