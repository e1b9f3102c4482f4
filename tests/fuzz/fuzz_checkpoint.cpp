// libFuzzer target: the PyTorch checkpoint reader (zip and legacy, the
// unpickler) on arbitrary bytes.
#include <cstdint>
#include <string>

#include "engine/error.h"
#include "weights/torch_checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    ich::parse_torch_checkpoint(std::string(reinterpret_cast<const char*>(data), size), "fuzz.pth");
  } catch (const ich::Error&) {
  }
  return 0;
}
