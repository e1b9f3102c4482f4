// libFuzzer target: the .npy reader (io/npy.cpp) on arbitrary bytes.
#include <cstdint>
#include <string>

#include "engine/error.h"
#include "io/npy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    ich::parse_npy(std::string(reinterpret_cast<const char*>(data), size), "fuzz.npy");
  } catch (const ich::Error&) {
  }
  return 0;
}
