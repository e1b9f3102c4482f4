// graph.h: capture a training step once, replay it (CUDA Graphs).
//
// A training step of ResNeXt-101 launches some two thousand kernels; at
// batch 8 most of them finish in microseconds, so the host's launch cost and
// the gaps between kernels are a large part of the step. A CUDA graph
// records the step's device work once and replays all of it with one launch.
// What that asks of the step, and how this engine meets it:
//   - Nothing runs on the host between kernels in a replay: no reads back
//     (the loss is read after the replay; a NaN is caught on the device,
//     train/graph_step.h), no host-computed values that change per step
//     (Adam's step count lives on the device, engine/ops/optim.h).
//   - Every address the graph recorded stays valid and is not handed to
//     anyone else: the step allocates from a private pool
//     (engine/allocator.h) that lives as long as the graph; inside the step
//     a freed activation's block is reused by a later one, as eagerly, so
//     the graph's memory is the eager step's peak, planned once.
//   - Inputs are copied into the same buffers before each replay.
//   - Shapes are fixed; anything first met during capture (a cuDNN
//     algorithm search) has run in eager warm-up steps before.
//
// On the CPU there are no graphs. StepGraph there runs the step's host code
// again at each replay under the same rules (private pool, no host reads),
// and checks that it asks for the same memory in the same order as the
// capture did: that is the part of "capturable" the CPU can test. The CUDA
// capture itself is only exercised on a GPU (tests/test_cuda.cpp).
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "engine/allocator.h"
#include "engine/device.h"

namespace ich {

// True while this thread captures (or, on the CPU, replays) a step: reading a
// value back to the host (item(), to_vector(), a copy between host and
// device) is then an error, because a replay would not read it again.
bool capturing();

// Sets capturing() for its lifetime (StepGraph uses it; tests may too).
class CaptureGuard {
 public:
  CaptureGuard();
  ~CaptureGuard();
  CaptureGuard(const CaptureGuard&) = delete;
  CaptureGuard& operator=(const CaptureGuard&) = delete;

 private:
  bool previous_;
};

class StepGraph {
 public:
  explicit StepGraph(Device d);
  ~StepGraph();
  StepGraph(const StepGraph&) = delete;
  StepGraph& operator=(const StepGraph&) = delete;

  // Runs `step` once, capturing it: on CUDA the device work is recorded (not
  // run), instantiated, and then launched once; on the CPU it runs. Either
  // way the step happened once when this returns. Throws (and leaves nothing
  // captured) if the step reads back, or fails.
  void capture(std::function<void()> step);
  // The captured step again: on CUDA one graph launch, no host code.
  void replay();

  bool captured() const { return captured_; }
  int64_t replays() const { return replays_; }
  // The private pool the step's memory comes from (its stats: the graph's memory).
  const std::shared_ptr<Allocator>& pool() const { return pool_; }
  // The sizes the capture allocated, in order (the memory plan).
  const std::vector<size_t>& plan() const { return plan_; }

 private:
  void run_traced(std::vector<size_t>& trace);

  Device device_;
  std::shared_ptr<Allocator> pool_;
  std::function<void()> step_;
  std::vector<size_t> plan_;
  void* exec_ = nullptr;  // cudaGraphExec_t
  bool captured_ = false;
  int64_t replays_ = 0;
};

}  // namespace ich
