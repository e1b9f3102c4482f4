// input.h: batches from the loader onto the device as the network's input
// (engine/ops/input.cpp; kernels engine/cpu/input.cpp, engine/cuda/input.cu;
// docs/layers/input.md).
#pragma once
#include "engine/kernels.h"
#include "engine/tensor.h"

namespace ich {

// A batch from the loader onto the device, as network input: float32
// batches are copied; uint8 ones (BatchLoader bytes mode) are uploaded as
// bytes (a quarter of the traffic; asynchronously on a GPU) and normalised
// there by normalize_u8.
Tensor to_device_input(const Tensor& batch, Device d);
// A batch into an existing dense tensor of the same shape and dtype on a
// device (a captured step's input buffer): from the host on a GPU through
// the pinned staging buffer on the copy stream, the host not waiting; from
// the same device, a copy there.
void load_input_(Tensor& dst, const Tensor& host);
// uint8 images (B,C,S,S) on their device -> the network's float32 input.
Tensor normalize_input(const Tensor& bytes);

}  // namespace ich
