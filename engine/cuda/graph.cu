// graph.cu: stream capture into a CUDA graph, and its launch (engine/graph.h).
//
// The capture is of the device's one stream, in thread-local mode: calls
// from this thread that are illegal in a capture (a synchronisation, a
// pageable copy) fail the capture instead of silently running outside it;
// other threads (the data loader) are not affected. cudaMalloc is allowed
// for the duration of the call by the allocator itself (allocator.cu).
#include <cstdio>

#include "engine/cuda/context.h"
#include "engine/cuda/runtime.h"

namespace ich::cuda {

void graph_capture_begin(int device) {
  Context& c = context(device);
  ICH_CUDA_CHECK(cudaStreamBeginCapture(c.stream, cudaStreamCaptureModeThreadLocal));
}

void graph_capture_abort(int device) noexcept {
  cudaGraph_t g = nullptr;
  cudaStreamEndCapture(context(device).stream, &g);  // ends it however it went
  if (g) cudaGraphDestroy(g);
  cudaGetLastError();  // the capture's error was the one reported
}

void* graph_capture_end(int device) {
  Context& c = context(device);
  cudaGraph_t g = nullptr;
  ICH_CUDA_CHECK(cudaStreamEndCapture(c.stream, &g));
  cudaGraphExec_t exec = nullptr;
  const cudaError_t e = cudaGraphInstantiate(&exec, g, 0);
  cudaGraphDestroy(g);
  ICH_CUDA_CHECK(e);
  return exec;
}

void graph_launch(void* exec, int device) {
  ICH_CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec), context(device).stream));
}

void graph_destroy(void* exec) noexcept {
  // The graph may still be running: its memory (the private pool) outlives
  // it by ownership, but wait so the exec is not destroyed under a launch.
  cudaDeviceSynchronize();
  if (cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec)) != cudaSuccess)
    std::fprintf(stderr, "warning: destroying a CUDA graph failed\n");
}

}  // namespace ich::cuda
