// libFuzzer target: the CSV parser and the RSNA label reader on arbitrary text.
#include <cstdint>
#include <string>

#include "data/labels.h"
#include "engine/error.h"
#include "io/csv.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    ich::parse_rsna_labels(text, "fuzz.csv");
  } catch (const ich::Error&) {
  }
  return 0;
}
