// The NCCL backend: GPU tensors, one GPU per rank, NCCL's unique id published
// by rank 0 through the TcpStore. Calls run on a stream of their own that
// first waits (an event) for the work queued so far on the device's compute
// stream, so a collective is ordered after the work that made its input,
// and the compute stream can go on with backward meanwhile (the overlap of
// train/data_parallel.h); the call returns when its stream is done. NCCL blocks forever on a dead peer, so the
// communicator is made non-blocking (ncclConfig_t.blocking = 0) and every
// call waits for its completion with a deadline, polling the stream and
// ncclCommGetAsyncError; past the deadline the communicator is aborted
// (ncclCommAbort) and the call throws one line.
// Compiled here; not run on a GPU yet (scripts/gpu-check.sh runs it).
#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "engine/cuda/context.h"
#include "engine/dist/communicator.h"
#include "engine/dist/store.h"
#include "engine/error.h"

namespace ich::dist {

namespace {

using Clock = std::chrono::steady_clock;

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(const DistEnv& env, int device) : env_(env), device_(device) {
    store_ = std::make_unique<TcpStore>(env.master_addr, env.master_port, env.rank == 0, env.timeout);
    ncclUniqueId id;
    if (env.rank == 0) {
      nccl(ncclGetUniqueId(&id), "making NCCL's unique id");
      store_->set("nccl/id", std::vector<char>(id.internal, id.internal + sizeof id.internal));
    } else {
      const std::vector<char> v = store_->get("nccl/id");
      ICH_CHECK(v.size() == sizeof id.internal, where("rendezvous"), "NCCL id of ", v.size(), " bytes");
      std::memcpy(id.internal, v.data(), v.size());
    }
    ICH_CUDA_CHECK(cudaSetDevice(device));
    ICH_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    ICH_CUDA_CHECK(cudaEventCreateWithFlags(&inputs_ready_, cudaEventDisableTiming));
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    const ncclResult_t r = ncclCommInitRankConfig(&comm_, env.world, id, env.rank, &config);
    if (r != ncclInProgress) nccl(r, "joining the NCCL communicator");
    wait_comm("joining the NCCL communicator");
  }
  ~NcclCommunicator() override {
    if (comm_) ncclCommDestroy(comm_);
    if (inputs_ready_) cudaEventDestroy(inputs_ready_);
    if (stream_) cudaStreamDestroy(stream_);
  }
  int rank() const override { return env_.rank; }
  int size() const override { return env_.world; }
  std::string backend() const override { return "nccl"; }

  void all_reduce_sum(Tensor& t, const std::string& what) override {
    check(t, what);
    ICH_CHECK(t.dtype() == DType::Float32 || t.dtype() == DType::Float64, where(what), "float32 or float64, not ",
              dtype_name(t.dtype()));
    const ncclDataType_t type = t.dtype() == DType::Float32 ? ncclFloat32 : ncclFloat64;
    cudaStream_t s = after_compute();
    const ncclResult_t r = ncclAllReduce(t.raw_data(), t.raw_data(), size_t(t.numel()), type, ncclSum, comm_, s);
    if (r != ncclInProgress) nccl(r, what);
    wait_stream(what);
  }
  void broadcast(Tensor& t, int root, const std::string& what) override {
    check(t, what);
    cudaStream_t s = after_compute();
    const ncclResult_t r = ncclBroadcast(t.raw_data(), t.raw_data(), size_t(t.numel()) * dtype_size(t.dtype()),
                                         ncclChar, root, comm_, s);
    if (r != ncclInProgress) nccl(r, what);
    wait_stream(what);
  }
  void barrier(const std::string& what) override {
    Tensor one = Tensor::zeros({1}, DType::Float32, Device::cuda(device_));
    all_reduce_sum(one, what);
  }

 private:
  std::string where(const std::string& what) const {
    return "rank " + std::to_string(env_.rank) + " of " + std::to_string(env_.world) + ": " + what + " failed: ";
  }
  void check(const Tensor& t, const std::string& what) const {
    ICH_CHECK(t.device() == Device::cuda(device_) && t.is_contiguous(), where(what), "NCCL takes contiguous tensors on ",
              Device::cuda(device_).str(), ", got ", t.str());
  }
  void nccl(ncclResult_t r, const std::string& what) {
    if (r == ncclSuccess) return;
    throw Error(where(what) + ncclGetErrorString(r) + (comm_ ? std::string(" (") + ncclGetLastError(comm_) + ")" : ""));
  }
  [[noreturn]] void timed_out(const std::string& what) {
    if (comm_) ncclCommAbort(comm_);  // frees the stream's stuck kernels
    comm_ = nullptr;
    throw Error(where(what) + "another rank stopped, hangs or cannot be reached within " +
                std::to_string(env_.timeout.count() / 1000) + " s (NCCL communicator aborted)");
  }
  void wait_comm(const std::string& what) {
    const auto deadline = Clock::now() + env_.timeout;
    for (;;) {
      ncclResult_t state = ncclSuccess;
      nccl(ncclCommGetAsyncError(comm_, &state), what);
      if (state == ncclSuccess) return;
      if (state != ncclInProgress) nccl(state, what);
      if (Clock::now() > deadline) timed_out(what);
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }
  // The communication stream, made to wait for what the compute stream has queued so far.
  cudaStream_t after_compute() {
    ICH_CUDA_CHECK(cudaSetDevice(device_));  // this thread may be the communication thread
    ICH_CUDA_CHECK(cudaEventRecord(inputs_ready_, cuda::context(device_).stream));
    ICH_CUDA_CHECK(cudaStreamWaitEvent(stream_, inputs_ready_, 0));
    return stream_;
  }
  void wait_stream(const std::string& what) {
    wait_comm(what);  // the call itself was enqueued
    const auto deadline = Clock::now() + env_.timeout;
    cudaStream_t s = stream_;
    for (;;) {
      const cudaError_t q = cudaStreamQuery(s);
      if (q == cudaSuccess) return;
      if (q != cudaErrorNotReady) ICH_CUDA_CHECK(q);
      ncclResult_t state = ncclSuccess;
      nccl(ncclCommGetAsyncError(comm_, &state), what);
      if (state != ncclSuccess && state != ncclInProgress) nccl(state, what);
      if (Clock::now() > deadline) timed_out(what);
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }
  DistEnv env_;
  int device_ = 0;
  std::unique_ptr<TcpStore> store_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t inputs_ready_ = nullptr;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl(const DistEnv& env, int device) {
  return std::make_unique<NcclCommunicator>(env, device);
}

}  // namespace ich::dist
