#include "train/data_parallel.h"

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops.h"
#ifdef ICH_WITH_CUDA
#include "engine/cuda/runtime.h"
#endif

namespace ich {

namespace {

constexpr size_t kBucketBytes = 25u << 20;  // DDP's bucket_cap_mb

// Bytes between tensors of one device (a gradient into its bucket and back):
// on a GPU queued on the compute stream, in order with the kernels around it,
// with no wait (a bucket of 25 MB holds dozens of gradients, hundreds a step).
void copy_raw(void* dst, const void* src, size_t bytes, Device d) {
  if (bytes == 0) return;
  if (d.is_cpu()) {
    std::memcpy(dst, src, bytes);
    return;
  }
#ifdef ICH_WITH_CUDA
  cuda::copy_device_async(dst, src, bytes, d.index);
#else
  throw Error("data-parallel: " + d.str() + " in a build without CUDA");
#endif
}

}  // namespace

// The communication thread and one step's buckets (start_overlap ..
// finish_overlap).
struct DataParallel::Overlap {
  // ---- the thread: runs queued calls in order; the first error is kept
  std::thread worker;
  std::mutex mu;
  std::condition_variable wake, idle;
  std::deque<std::function<void()>> queue;
  bool stop = false, busy = false;
  std::exception_ptr error;

  Overlap() {
    worker = std::thread([this] {
      for (;;) {
        std::function<void()> f;
        {
          std::unique_lock<std::mutex> l(mu);
          wake.wait(l, [&] { return stop || !queue.empty(); });
          if (queue.empty()) return;  // stopping, nothing left
          f = std::move(queue.front());
          queue.pop_front();
          busy = true;
        }
        try {
          if (!error) f();  // after an error the rest is skipped (the step fails anyway)
        } catch (...) {
          std::lock_guard<std::mutex> l(mu);
          error = std::current_exception();
        }
        {
          std::lock_guard<std::mutex> l(mu);
          busy = false;
        }
        idle.notify_all();
      }
    });
  }
  ~Overlap() {
    {
      std::lock_guard<std::mutex> l(mu);
      stop = true;
    }
    wake.notify_all();
    worker.join();
  }
  void submit(std::function<void()> f) {
    {
      std::lock_guard<std::mutex> l(mu);
      queue.push_back(std::move(f));
    }
    wake.notify_all();
  }
  // Until everything queued has run; rethrows the first error.
  void drain() {
    std::unique_lock<std::mutex> l(mu);
    idle.wait(l, [&] { return queue.empty() && !busy; });
    if (error) std::rethrow_exception(error);
  }

  // ---- the step
  struct Bucket {
    std::vector<size_t> members;  // parameter indices, in reverse order
    size_t remaining = 0;
    Tensor flat;
    bool launched = false;
  };
  bool active = false;
  int64_t step = 0;
  std::vector<Tensor> params;
  std::unordered_map<TensorImpl*, size_t> index;
  std::vector<size_t> bucket_of;
  std::vector<Bucket> buckets;
  size_t next_launch = 0;
  std::atomic<int64_t> done{0};  // buckets whose all-reduce has finished
  std::unique_ptr<LeafReadyScope> scope;
};

DataParallel::DataParallel(const dist::DistEnv& env, int accumulate, Device device)
    : env_(env), accumulate_(accumulate), device_(device) {
  ICH_CHECK(accumulate >= 1, "--accumulate ", accumulate, ": at least 1 micro-batch per step");
  if (env.distributed()) comm_ = dist::make_communicator(env, device);
  // Overlap by default on GPUs, where NCCL works on its own stream while the
  // host queues backward; not on CPUs, where the communication thread takes
  // cores from the compute threads (measured 0.93x on 2 cores: docs/distributed.md).
  overlap_enabled_ = device.is_cuda();
  if (const char* v = std::getenv("ICH_DDP_OVERLAP"); v && *v) overlap_enabled_ = std::string(v) != "0";
  bucket_bytes_ = kBucketBytes;
  if (const char* v = std::getenv("ICH_DDP_BUCKET_MB"); v && *v) {
    const double mb = std::atof(v);
    ICH_CHECK(mb > 0, "environment ICH_DDP_BUCKET_MB='", v, "': a positive number of megabytes");
    bucket_bytes_ = size_t(mb * 1048576.0);
  }
}

DataParallel::~DataParallel() = default;

void DataParallel::start_overlap(const std::vector<Tensor>& params, int64_t step) {
  if (!comm_ || !overlap_enabled_) return;
  if (!overlap_) overlap_ = std::make_shared<Overlap>();
  Overlap& o = *overlap_;
  ICH_CHECK(!o.active, "data-parallel: a step's overlap started twice");
  o.active = true;
  o.step = step;
  o.next_launch = 0;
  o.done = 0;
  if (o.params.size() != params.size() || o.index.size() != params.size() ||
      (!params.empty() && !o.params[0].same(params[0]))) {  // buckets: built once per parameter list
    o.params = params;
    o.index.clear();
    o.buckets.clear();
    o.bucket_of.assign(params.size(), 0);
    size_t bytes = 0;
    for (size_t r = params.size(); r-- > 0;) {
      const Tensor& p = params[r];
      o.index[p.impl_ptr().get()] = r;
      const size_t b = size_t(p.numel()) * dtype_size(p.dtype());
      if (o.buckets.empty() || bytes + b > bucket_bytes_ ||
          o.params[o.buckets.back().members.front()].dtype() != p.dtype()) {
        o.buckets.emplace_back();
        bytes = 0;
      }
      o.buckets.back().members.push_back(r);
      o.bucket_of[r] = o.buckets.size() - 1;
      bytes += b;
    }
  }
  for (auto& b : o.buckets) {
    b.remaining = b.members.size();
    b.launched = false;
    b.flat = Tensor();
  }
  // Launches every complete bucket whose predecessors are launched: its
  // gradients copied out here, on the thread that owns them, its all-reduce
  // on the communication thread.
  auto launch = [this, &o] {
    while (o.next_launch < o.buckets.size() && o.buckets[o.next_launch].remaining == 0) {
      Overlap::Bucket& b = o.buckets[o.next_launch];
      const Tensor& first = o.params[b.members.front()];
      size_t elems = 0;
      for (size_t m : b.members) elems += size_t(o.params[m].numel());
      b.flat = Tensor::empty({int64_t(elems)}, first.dtype(), first.device());
      size_t at = 0;
      for (size_t m : b.members) {
        const Tensor g = o.params[m].grad();
        const size_t n = size_t(g.numel()) * dtype_size(g.dtype());
        ICH_CHECK(g.is_contiguous(), "data-parallel: gradient ", m, " is not contiguous");
        copy_raw(static_cast<char*>(b.flat.raw_data()) + at, g.raw_data(), n, g.device());
        at += n;
      }
      b.launched = true;
      Tensor flat = b.flat;
      const std::string what = "gradient all-reduce (step " + std::to_string(o.step) + ", bucket " +
                               std::to_string(o.next_launch) + ", overlapped)";
      o.submit([this, &o, flat, what]() mutable {
        comm_->all_reduce_sum(flat, what);
        ++o.done;
      });
      ++o.next_launch;
    }
  };
  o.scope = std::make_unique<LeafReadyScope>([&o, launch](TensorImpl* leaf) {
    const auto it = o.index.find(leaf);
    if (it == o.index.end()) return;
    Overlap::Bucket& b = o.buckets[o.bucket_of[it->second]];
    if (b.remaining > 0 && --b.remaining == 0) launch();
  });
}

void DataParallel::backward_done() {
  if (overlap_ && overlap_->active) stats_ = {int64_t(overlap_->buckets.size()), overlap_->done.load()};
}

void DataParallel::finish_overlap(const std::vector<Tensor>& params, int64_t step) {
  if (!overlap_ || !overlap_->active) return average_gradients(params, step);
  Overlap& o = *overlap_;
  o.scope.reset();
  o.active = false;
  for (size_t i = 0; i < o.buckets.size(); ++i)
    for (size_t m : o.buckets[i].members)
      ICH_CHECK(o.params[m].grad().defined(), "data-parallel: parameter ", m,
                " got no gradient in backward: every parameter must take part in the loss on every rank");
  ICH_CHECK(o.next_launch == o.buckets.size(), "data-parallel: backward did not finish bucket ", o.next_launch);
  o.drain();
  NoGradGuard ng;
  const int parts = env_.world * accumulate_;
  for (auto& b : o.buckets) {
    const Tensor mean = scale(b.flat, 1.0 / double(parts));
    size_t at = 0;
    for (size_t m : b.members) {
      const Tensor g = o.params[m].grad();
      const size_t n = size_t(g.numel()) * dtype_size(g.dtype());
      copy_raw(g.raw_data(), static_cast<const char*>(mean.raw_data()) + at, n, g.device());
      at += n;
    }
    b.flat = Tensor();
  }
}

void DataParallel::broadcast_state(Module& m, const std::string& why) {
  if (!comm_) return;
  NoGradGuard ng;
  for (auto& [name, t] : m.state_dict()) {
    Tensor c = t.contiguous();
    comm_->broadcast(c, 0, why + " (" + name + ")");
    if (!c.same(t)) t.copy_(c);
  }
}

void DataParallel::broadcast_buffers(Module& m, const std::string& why) {
  if (!comm_) return;
  NoGradGuard ng;
  for (auto& [name, t] : m.named_buffers()) {
    Tensor c = t.contiguous();
    comm_->broadcast(c, 0, why + " (" + name + ")");
    if (!c.same(t)) t.copy_(c);
  }
}

void DataParallel::average_gradients(const std::vector<Tensor>& params, int64_t step) {
  const int parts = env_.world * accumulate_;
  if (parts == 1) return;
  NoGradGuard ng;
  // Buckets of consecutive gradients of one dtype, in parameter order (the
  // same on every rank), each one flat buffer.
  size_t i = 0;
  int bucket = 0;
  while (i < params.size()) {
    const Tensor g0 = params[i].grad();
    ICH_CHECK(g0.defined(), "data-parallel: parameter ", i, " has no gradient after backward (every rank needs one)");
    const DType dt = g0.dtype();
    const Device dev = g0.device();
    std::vector<Tensor> grads;
    size_t bytes = 0;
    for (; i < params.size(); ++i) {
      const Tensor g = params[i].grad();
      ICH_CHECK(g.defined(), "data-parallel: parameter ", i, " has no gradient after backward");
      if (g.dtype() != dt || (!grads.empty() && bytes + size_t(g.numel()) * dtype_size(dt) > bucket_bytes_)) break;
      ICH_CHECK(g.is_contiguous(), "data-parallel: gradient ", i, " is not contiguous");
      grads.push_back(g);
      bytes += size_t(g.numel()) * dtype_size(dt);
    }
    Tensor flat = Tensor::empty({int64_t(bytes / dtype_size(dt))}, dt, dev);
    size_t at = 0;
    for (const Tensor& g : grads) {
      const size_t b = size_t(g.numel()) * dtype_size(dt);
      copy_raw(static_cast<char*>(flat.raw_data()) + at, g.raw_data(), b, dev);
      at += b;
    }
    if (comm_) comm_->all_reduce_sum(flat, "gradient all-reduce (step " + std::to_string(step) + ", bucket " +
                                               std::to_string(bucket) + ")");
    const Tensor mean = scale(flat, 1.0 / double(parts));
    at = 0;
    for (const Tensor& g : grads) {
      const size_t b = size_t(g.numel()) * dtype_size(dt);
      copy_raw(g.raw_data(), static_cast<const char*>(mean.raw_data()) + at, b, dev);
      at += b;
    }
    ++bucket;
  }
}

std::vector<double> DataParallel::sum(const std::vector<double>& values, const std::string& what) {
  if (!comm_) return values;
  const Device d = comm_->backend() == "nccl" ? device_ : Device::cpu();
  Tensor t = Tensor::from_vector(values, {int64_t(values.size())}, DType::Float64).to(d);
  if (overlap_ && overlap_->active) {  // after the buckets already queued, on the communication thread
    overlap_->submit([this, t, what]() mutable { comm_->all_reduce_sum(t, what); });
    overlap_->drain();
  } else {
    comm_->all_reduce_sum(t, what);
  }
  return t.to(Device::cpu()).to_vector();
}

std::vector<std::array<double, 6>> DataParallel::gather_rows(const std::vector<std::array<double, 6>>& rows,
                                                             const std::vector<bool>& mine) {
  if (!comm_) return rows;
  std::vector<double> flat(rows.size() * 7, 0.0);
  for (size_t r = 0; r < rows.size(); ++r)
    if (mine[r]) {
      for (size_t k = 0; k < 6; ++k) flat[r * 7 + k] = rows[r][k];
      flat[r * 7 + 6] = 1;
    }
  const std::vector<double> all = sum(flat, "gathering the validation probabilities");
  std::vector<std::array<double, 6>> out(rows.size());
  for (size_t r = 0; r < rows.size(); ++r) {
    ICH_CHECK(all[r * 7 + 6] == 1, "data-parallel validation: slice ", r, " was predicted by ", all[r * 7 + 6],
              " ranks, not 1");
    for (size_t k = 0; k < 6; ++k) out[r][k] = all[r * 7 + k];
  }
  return out;
}

}  // namespace ich
