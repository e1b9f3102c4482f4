// libFuzzer target: the .npy reader (data/npy.cpp) on arbitrary bytes.
#include <cstdint>
#include <string>

#include "data/npy.h"
#include "engine/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    ich::parse_npy(std::string(reinterpret_cast<const char*>(data), size), "fuzz.npy");
  } catch (const ich::Error&) {
  }
  return 0;
}
