#include "engine/device_select.h"

#include "engine/error.h"
#ifdef ICH_WITH_CUDA
#include "engine/cuda/runtime.h"
#endif

namespace ich {

bool cuda_usable() {
#ifdef ICH_WITH_CUDA
  return cuda::device_count() > 0;
#else
  return false;
#endif
}

void allow_tf32(Device d, bool allow) {
#ifdef ICH_WITH_CUDA
  if (d.is_cuda()) cuda::set_allow_tf32(allow);
#endif
  (void)d;
  (void)allow;
}

Device pick_device(const std::string& flag) {
  if (flag == "cpu") return Device::cpu();
  if (flag == "auto") return cuda_usable() ? Device::cuda() : Device::cpu();
  if (flag == "cuda") {
#ifndef ICH_WITH_CUDA
    throw Error("--device cuda: this build has no CUDA backend (CUDA toolkit or cuDNN not found at configure time)");
#else
    ICH_CHECK(cuda::device_count() > 0, "--device cuda: no CUDA device found (no GPU, or no driver)");
    return Device::cuda();
#endif
  }
  throw Error("--device '" + flag + "': expected cpu, cuda or auto");
}

}  // namespace ich
