// device_select.h: turns a --device flag (cpu, cuda, auto) into a Device.
// "auto" is the GPU when the build has the CUDA backend and a device is
// present, else the CPU; "cuda" without either is a clear error.
#pragma once
#include <string>

#include "engine/device.h"

namespace ich {

Device pick_device(const std::string& flag);
bool cuda_usable();  // CUDA backend built and at least one GPU present
// TF32 tensor cores for float32 convolutions and GEMMs on a GPU (PyTorch
// runs its cuDNN convolutions so by default; ours are strict float32 unless
// asked, so that they compare with the CPU at 1e-5). No effect on the CPU.
void allow_tf32(Device d, bool allow);

}  // namespace ich
