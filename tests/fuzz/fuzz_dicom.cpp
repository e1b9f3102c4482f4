// libFuzzer target: the DICOM path as ich-window wraps it (DCMTK reading and
// decoding, our header checks, Hounsfield units, windowing) on arbitrary bytes.
#include "data/window_run.h"
#include "engine/error.h"
#include "tests/fuzz/fuzz_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const ich::DicomSlice s = ich::read_dicom(fuzz_file(data, size, ".dcm"));
    int h, w;
    if (size_t(s.rows) * size_t(s.cols) <= (1u << 22))
      ich::windowed_pixels(s, ich::parse_windows("brain,subdural,soft"), 0, true, &h, &w);
  } catch (const ich::Error&) {
  }
  return 0;
}
