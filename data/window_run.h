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

// Stored value -> the bytes of every channel (exact formula, RSNA fix,
// MONOCHROME1), one entry per value in a range. Slices that share rescale and
// windows (a whole RSNA series does) share the table: it is built once per
// run and thread, not per file.
class WindowTable {
 public:
  // Makes the table hold [lo, hi] for slices like s.
  void prepare(const DicomSlice& s, const std::vector<Window>& ws, bool rsna_fix, int32_t lo, int32_t hi);
  // out[i*C + c] for n pixels: `stored` as read_dicom_direct() gives them, or
  // nullptr for s.raw.
  void apply(const DicomSlice& s, const uint8_t* stored, size_t n, uint8_t* out) const;  // out: n*C + 3 bytes

 private:
  double slope_ = 0, intercept_ = 0;
  bool fix_ = false, invert_ = false;
  std::vector<Window> windows_;
  int32_t lo_ = 0, hi_ = -1;
  size_t channels_ = 0, stride_ = 0;
  std::vector<uint8_t> table_;
};

// The windowed image (rows x cols x C) of a slice's stored values.
void window_stored(const DicomSlice& s, const uint8_t* stored, const std::vector<Window>& windows, bool rsna_fix,
                   WindowTable& table, std::vector<uint8_t>& out);

// What one worker keeps from file to file.
struct WindowScratch {
  std::vector<uint8_t> file, out;
  WindowTable table;
};

struct WindowedFile {
  DicomSlice slice;  // the header (raw is empty when read directly)
  int h = 0, w = 0, channels = 0;
  const uint8_t* pixels = nullptr;  // h*w*channels bytes in scratch.out
  bool direct = false;              // read by read_dicom_direct(), not DCMTK
};

// One file: read (directly when it is uncompressed little endian, else with
// DCMTK) and windowed. Throws ich::Error with the reason for a bad file.
WindowedFile window_file(const std::string& path, const std::vector<Window>& windows, int size, bool rsna_fix,
                         WindowScratch& scratch);

WindowReport window_dicoms(const WindowOptions& o, const std::function<void(int64_t, int64_t)>& progress = nullptr);

}  // namespace ich
