// libFuzzer target: the flat weights reader (header, table, every entry,
// CRCs) on arbitrary bytes.
#include "tests/fuzz/fuzz_file.h"
#include "engine/error.h"
#include "weights/weights_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const ich::WeightsFile f = ich::WeightsFile::open(fuzz_file(data, size, ".ichw"));
    for (const auto& e : f.entries())
      if (e.nbytes < (1u << 24)) f.read(e.name);
  } catch (const ich::Error&) {
  }
  return 0;
}
