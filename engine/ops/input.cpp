// to_device_input, load_input_, normalize_input: batches from the loader
// onto the device (bytes uploaded as bytes, normalised there). Not
// differentiated: the input is a leaf.
#include "engine/graph.h"
#include "engine/ops/input.h"
#include "engine/ops/op_util.h"
#ifdef ICH_WITH_CUDA
#include "engine/cuda/runtime.h"
#endif

namespace ich {

Tensor to_device_input(const Tensor& batch, Device d) {
  if (batch.dtype() != DType::UInt8) return batch.to(d);
  if (batch.device() == d) return normalize_input(batch.contiguous());
  const Tensor host = batch.to(Device::cpu()).contiguous();
  Tensor bytes = Tensor::empty(host.shape(), DType::UInt8, d);
  load_input_(bytes, host);
  return normalize_input(bytes);
}

void load_input_(Tensor& dst, const Tensor& host) {
  ICH_CHECK((host.device().is_cpu() || host.device() == dst.device()) && host.shape() == dst.shape() &&
                host.dtype() == dst.dtype(),
            "load_input_: ", host.str(), " does not fit the input buffer ", dst.str());
  ICH_CHECK(!capturing(), "load_input_ inside a captured step: inputs are loaded before the replay");
  if (dst.device() == host.device()) return dst.copy_(host);  // on the CPU, or already on the device
  const MemoryFormat f = memory_format_of(dst);
  ICH_CHECK(dst.is_contiguous(f), "load_input_: the buffer ", dst.str(), " is not dense");
  const Tensor h = host.contiguous(f);
#ifdef ICH_WITH_CUDA
  cuda::upload_async(dst.raw_data(), h.raw_data(), size_t(h.numel()) * dtype_size(h.dtype()), dst.device());
#else
  missing_kernel("upload_async", dst.device());
#endif
}

Tensor normalize_input(const Tensor& bytes) {
  Tensor y = Tensor::empty(bytes.shape(), DType::Float32, bytes.device());
  ICH_DISPATCH(bytes.device(), normalize_u8, bytes, y);
  return y;
}

}  // namespace ich
