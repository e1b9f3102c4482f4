#include "engine/kernels.h"

namespace ich {

void missing_kernel(const char* kernel, Device d) {
  throw Error(std::string("kernel ") + kernel + " is not available on " + d.str() +
              (d.is_cuda() ? ": this build has no CUDA backend (CUDA toolkit or cuDNN not found at configure time)"
                           : ""));
}

}  // namespace ich
