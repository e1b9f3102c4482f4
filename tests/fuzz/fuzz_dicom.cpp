// libFuzzer target: the DICOM path as ich-window wraps it (the direct reader,
// DCMTK reading and decoding, our header checks, windowing) on arbitrary
// bytes, and a differential check: whatever the direct reader accepts, DCMTK
// must read too, to the same header and the same stored values (abort, a
// finding, otherwise).
#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "dicom/dicom_direct.h"
#include "dicom/window_slice.h"
#include "engine/error.h"
#include "tests/fuzz/fuzz_file.h"

namespace {

void disagree(const char* what) {
  std::fprintf(stderr, "direct reader and DCMTK disagree: %s\n", what);
  std::abort();
}

void compare(const ich::DicomSlice& d, const uint8_t* px, const ich::DicomSlice& r) {
  if (d.sop_uid != r.sop_uid || d.patient_id != r.patient_id || d.study_uid != r.study_uid ||
      d.series_uid != r.series_uid || d.modality != r.modality || d.photometric != r.photometric ||
      d.transfer_syntax != r.transfer_syntax)
    disagree("strings");
  if (d.has_z != r.has_z || d.z != r.z || d.rows != r.rows || d.cols != r.cols ||
      d.bits_allocated != r.bits_allocated || d.bits_stored != r.bits_stored ||
      d.pixel_representation != r.pixel_representation || d.slope != r.slope || d.intercept != r.intercept ||
      d.window_centers != r.window_centers || d.window_widths != r.window_widths ||
      d.spacing_row != r.spacing_row || d.spacing_col != r.spacing_col || d.has_orientation != r.has_orientation ||
      !std::equal(d.orientation, d.orientation + 6, r.orientation) || d.frames != r.frames)
    disagree("numbers");
  bool same = true;
  ich::for_each_stored(d, px, r.raw.size(), [&](size_t i, int32_t v) { same &= v == r.raw[i]; });
  if (!same) disagree("pixels");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz_file(data, size, ".dcm");
  std::vector<uint8_t> buf;
  ich::DicomSlice direct;
  const uint8_t* px = nullptr;
  const bool accepted = ich::read_dicom_direct(path, buf, direct, px);
  try {
    const ich::DicomSlice s = ich::read_dicom(path);
    if (accepted) compare(direct, px, s);
  } catch (const ich::Error&) {
    if (accepted) disagree("DCMTK fails on a file the direct reader accepted");
  }
  // The whole path, multi-frame files too, where the pixels are few enough
  // to decode in the fuzzer's memory limit.
  try {
    size_t pixels = 0;
    ich::read_dicom_frames(path, [&](ich::DicomSlice& f) { pixels += size_t(f.rows) * size_t(f.cols); }, false);
    if (pixels <= (1u << 22)) {
      ich::WindowScratch scratch;
      ich::SliceWindowing how;
      how.windows = ich::parse_windows("brain,subdural,soft");
      how.any_modality = true;
      ich::window_file(path, how, scratch, [](const ich::WindowedFile&) {});
    }
  } catch (const ich::Error&) {
  }
  return 0;
}
