#include "train/data_parallel.h"

#include <cstring>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops.h"
#ifdef ICH_WITH_CUDA
#include "engine/cuda/runtime.h"
#endif

namespace ich {

namespace {

constexpr size_t kBucketBytes = 25u << 20;  // DDP's bucket_cap_mb

// Bytes between tensors of one device (a gradient into its bucket and back).
void copy_raw(void* dst, const void* src, size_t bytes, Device d) {
  if (bytes == 0) return;
  if (d.is_cpu()) {
    std::memcpy(dst, src, bytes);
    return;
  }
#ifdef ICH_WITH_CUDA
  cuda::copy_bytes(dst, d, src, d, bytes);
#else
  throw Error("data-parallel: " + d.str() + " in a build without CUDA");
#endif
}

}  // namespace

DataParallel::DataParallel(const dist::DistEnv& env, int accumulate, Device device)
    : env_(env), accumulate_(accumulate), device_(device) {
  ICH_CHECK(accumulate >= 1, "--accumulate ", accumulate, ": at least 1 micro-batch per step");
  if (env.distributed()) comm_ = dist::make_communicator(env, device);
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
      if (g.dtype() != dt || (!grads.empty() && bytes + size_t(g.numel()) * dtype_size(dt) > kBucketBytes)) break;
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
  comm_->all_reduce_sum(t, what);
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
