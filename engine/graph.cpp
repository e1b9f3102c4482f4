#include "engine/graph.h"

#include <string>

#include "engine/block_cache.h"
#include "engine/error.h"
#include "engine/profile.h"
#ifdef ICH_WITH_CUDA
#include "engine/cuda/runtime.h"
#endif

namespace ich {

namespace {
thread_local bool t_capturing = false;
}

bool capturing() { return t_capturing; }

CaptureGuard::CaptureGuard() : previous_(t_capturing) { t_capturing = true; }
CaptureGuard::~CaptureGuard() { t_capturing = previous_; }

StepGraph::StepGraph(Device d) : device_(d), pool_(make_private_pool(d)) {}

StepGraph::~StepGraph() {
#ifdef ICH_WITH_CUDA
  if (exec_) cuda::graph_destroy(exec_);
#endif
}

void StepGraph::run_traced(std::vector<size_t>& trace) {
  auto& cache = dynamic_cast<BlockCache&>(*pool_);
  PoolScope scope(device_, pool_);
  CaptureGuard guard;
  cache.set_trace(true);
  try {
    step_();
  } catch (...) {
    cache.set_trace(false);
    throw;
  }
  trace = cache.trace();
  cache.set_trace(false);
}

void StepGraph::capture(std::function<void()> step) {
  ICH_CHECK(!captured_, "StepGraph: already captured (make a new one for a new step)");
  ICH_CHECK(!profile::enabled(),
            "a step cannot be captured while the kernel profiler synchronises around every kernel");
  step_ = std::move(step);
  if (device_.is_cpu()) {
    run_traced(plan_);
  } else {
#ifdef ICH_WITH_CUDA
    cuda::graph_capture_begin(device_.index);
    try {
      run_traced(plan_);
    } catch (...) {
      cuda::graph_capture_abort(device_.index);
      throw;
    }
    exec_ = cuda::graph_capture_end(device_.index);
    cuda::graph_launch(exec_, device_.index);
#else
    throw Error("StepGraph on " + device_.str() + ": this build has no CUDA backend");
#endif
  }
  captured_ = true;
}

void StepGraph::replay() {
  ICH_CHECK(captured_, "StepGraph: replay() before capture()");
  ++replays_;
  if (device_.is_cpu()) {
    std::vector<size_t> trace;
    run_traced(trace);
    ICH_CHECK(trace == plan_, "replay ", replays_, " of the captured step allocated ", trace.size(),
              " blocks where the capture allocated ", plan_.size(),
              " (or other sizes): its shapes or its path changed, which a graph could not follow");
    return;
  }
#ifdef ICH_WITH_CUDA
  cuda::graph_launch(exec_, device_.index);
#endif
}

}  // namespace ich
