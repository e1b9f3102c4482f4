// check.h: every CUDA, cuDNN and cuBLAS call goes through one of these, so
// that a failure is one ich::Error naming the call, the file and line, and
// the library's status string.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

namespace ich::cuda {

[[noreturn]] void fail(const char* library, const char* call, const char* status, const char* file, int line);
const char* cublas_status_string(cublasStatus_t s);

}  // namespace ich::cuda

#define ICH_CUDA_CHECK(call)                                                                  \
  do {                                                                                        \
    const cudaError_t e_ = (call);                                                            \
    if (e_ != cudaSuccess) ::ich::cuda::fail("CUDA", #call, cudaGetErrorString(e_), __FILE__, __LINE__); \
  } while (0)

#define ICH_CUDNN_CHECK(call)                                                                       \
  do {                                                                                              \
    const cudnnStatus_t s_ = (call);                                                                \
    if (s_ != CUDNN_STATUS_SUCCESS) ::ich::cuda::fail("cuDNN", #call, cudnnGetErrorString(s_), __FILE__, __LINE__); \
  } while (0)

#define ICH_CUBLAS_CHECK(call)                                                                     \
  do {                                                                                             \
    const cublasStatus_t s_ = (call);                                                              \
    if (s_ != CUBLAS_STATUS_SUCCESS)                                                               \
      ::ich::cuda::fail("cuBLAS", #call, ::ich::cuda::cublas_status_string(s_), __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: launch errors are reported where they happen.
#define ICH_CUDA_LAUNCH_CHECK() ICH_CUDA_CHECK(cudaGetLastError())
