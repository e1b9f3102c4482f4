#include <atomic>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/cuda/context.h"
#include "engine/cuda/runtime.h"
#include "engine/error.h"

namespace ich::cuda {

void fail(const char* library, const char* call, const char* status, const char* file, int line) {
  throw Error(std::string(library) + " call " + call + " failed at " + file + ":" + std::to_string(line) + ": " +
              status);
}

const char* cublas_status_string(cublasStatus_t s) { return cublasGetStatusString(s); }

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

namespace {
bool g_allow_tf32 = false;
std::mutex g_mutex;
std::vector<std::unique_ptr<Context>> g_contexts;
// context() runs for every kernel launch and allocation. Once a device's
// context exists it is published here (never destroyed), and a thread that
// has made that device current through context() gets it back with no lock
// and no driver call; every cudaSetDevice of the backend goes through here.
constexpr int kMaxDevices = 64;
std::atomic<Context*> g_ready[kMaxDevices] = {};
thread_local int t_current = -1;
}  // namespace

void set_allow_tf32(bool allow) {
  g_allow_tf32 = allow;
  std::lock_guard<std::mutex> lock(g_mutex);
  for (auto& c : g_contexts)
    if (c) ICH_CUBLAS_CHECK(cublasSetMathMode(c->cublas, allow ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
}
bool allow_tf32() { return g_allow_tf32; }

Context& context(int device) {
  if (device == t_current && device >= 0 && device < kMaxDevices)
    if (Context* ready = g_ready[device].load(std::memory_order_acquire)) return *ready;
  std::lock_guard<std::mutex> lock(g_mutex);
  const int n = device_count();
  ICH_CHECK(n > 0, "no CUDA device is available (no GPU, or no driver): run with --device cpu");
  ICH_CHECK(device >= 0 && device < n, "CUDA device ", device, " requested, but only ", n, " present");
  if (g_contexts.size() < size_t(n)) g_contexts.resize(size_t(n));
  ICH_CUDA_CHECK(cudaSetDevice(device));
  auto& c = g_contexts[size_t(device)];
  if (!c) {
    auto ctx = std::make_unique<Context>();
    ctx->device = device;
    ICH_CUDA_CHECK(cudaDeviceGetAttribute(&ctx->major, cudaDevAttrComputeCapabilityMajor, device));
    ICH_CUDA_CHECK(cudaDeviceGetAttribute(&ctx->minor, cudaDevAttrComputeCapabilityMinor, device));
    ICH_CUDA_CHECK(cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking));
    ICH_CUDNN_CHECK(cudnnCreate(&ctx->cudnn));
    ICH_CUDNN_CHECK(cudnnSetStream(ctx->cudnn, ctx->stream));
    ICH_CUBLAS_CHECK(cublasCreate(&ctx->cublas));
    ICH_CUBLAS_CHECK(cublasSetStream(ctx->cublas, ctx->stream));
    ICH_CUBLAS_CHECK(cublasSetMathMode(ctx->cublas, g_allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
    c = std::move(ctx);
    if (device < kMaxDevices) g_ready[device].store(c.get(), std::memory_order_release);
  }
  t_current = device;
  return *c;
}

void synchronize(int device) { ICH_CUDA_CHECK(cudaStreamSynchronize(context(device).stream)); }

}  // namespace ich::cuda
