// window_run.h: what ich-window does: DICOM files in, windowed uint8 images
// out, one DIR/<image_id>.npy (H x W x C) per slice, plus DIR/meta.csv (one
// row per input file) and DIR/errors.csv (path, reason) for files that could
// not be converted. A bad file is reported and skipped; the run goes on.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/dicom.h"
#include "data/window.h"

namespace ich {

struct WindowOptions {
  std::string input;  // a file, or a folder: every regular file under it
  std::string out;
  std::string windows = "brain,subdural,soft";  // see parse_windows(); "dicom": the file's first window
  int size = 0;        // resize to size x size (bilinear, on HU); 0 keeps the file's size
  int threads = 0;     // 0: all cores
  bool rsna_fix = true;
};

struct WindowReport {
  int64_t files = 0, converted = 0, failed = 0;
};

// Every regular file under `input` (or `input` itself), sorted, skipping
// anything under `exclude` (the output folder when it lies inside).
std::vector<std::string> list_files(const std::string& input, const std::string& exclude = "");

// image_id: the SOPInstanceUID when it is a safe file name (letters, digits,
// '.', '_', '-'; at most 128 characters), else the file's name without
// extension.
std::string image_id_for(const DicomSlice& s);

// The windowed image of a decoded slice: size x size (or rows x cols) x C.
std::vector<uint8_t> windowed_pixels(const DicomSlice& s, const std::vector<Window>& windows, int size, bool rsna_fix,
                                     int* out_h, int* out_w);

WindowReport window_dicoms(const WindowOptions& o, const std::function<void(int64_t, int64_t)>& progress = nullptr);

}  // namespace ich
