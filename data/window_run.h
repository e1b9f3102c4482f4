// window_run.h: what ich-window does: DICOM files in, windowed uint8 images
// out, one DIR/<image_id>.npy (H x W x C) per slice (per frame of a
// multi-frame file), plus DIR/meta.csv (one row per slice, and one per file
// that failed) and DIR/errors.csv (path, reason) for files that could not be
// converted. A bad file is reported and skipped; the run goes on. A run
// killed at any moment resumes with `resume` (data/journal.h): it converts
// only what is missing, and its outputs are byte for byte an uninterrupted
// run's.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/dicom.h"
#include "data/hounsfield.h"
#include "data/window.h"

namespace ich {

// How every slice becomes an image.
struct SliceWindowing {
  std::vector<Window> windows;  // as channels; empty: each slice's own first window ("dicom")
  int size = 0;                 // resize to size x size (bilinear, on HU); 0 keeps the slice's size
  bool rsna_fix = true;         // the RSNA 12-bit fix where a slice needs it (data/hounsfield.h)
  bool any_modality = false;    // convert MR, CR, ... too (otherwise only CT; not-CT is an error)
};

struct WindowOptions {
  std::string input;  // a file, or a folder: every regular file under it
  std::string out;
  std::string windows = "brain,subdural,soft";  // see parse_windows(); "dicom": the file's first window
  int size = 0;
  int threads = 0;     // 0: all cores
  bool rsna_fix = true;
  bool any_modality = false;
  bool resume = false;  // go on with an interrupted run into the same folder
  int64_t chunk = 2048;  // files converted between two journal records
};

struct WindowReport {
  int64_t files = 0, converted = 0, failed = 0, slices = 0;
  int64_t resumed = 0;  // files an earlier run had done
};

// Every regular file under `input` (or `input` itself), sorted, skipping
// anything under `exclude` (the output folder when it lies inside).
std::vector<std::string> list_files(const std::string& input, const std::string& exclude = "");

// The error a slice of another modality than CT gets, unless any_modality.
void check_modality(const DicomSlice& s, bool any_modality);

// The windowed image of a decoded slice: size x size (or rows x cols) x C.
std::vector<uint8_t> windowed_pixels(const DicomSlice& s, const std::vector<Window>& windows, int size, bool rsna_fix,
                                     int* out_h, int* out_w);

// Stored value -> the bytes of every channel (exact formula, RSNA fix,
// MONOCHROME1), one entry per value in a range. Slices that share rescale and
// windows (a whole RSNA series does) share the table: it is built once per
// run and thread, not per file.
class WindowTable {
 public:
  // Makes the table hold [lo, hi] for slices like s (`fix`: the RSNA fix,
  // decided for this slice).
  void prepare(const DicomSlice& s, const std::vector<Window>& ws, bool fix, int32_t lo, int32_t hi);
  // out[i*C + c] for n pixels: `stored` as read_dicom_direct() gives them, or
  // nullptr for s.raw.
  void apply(const DicomSlice& s, const uint8_t* stored, size_t n, uint8_t* out) const;  // out: n*C + 3 bytes

 private:
  ModalityTransform hu_{DicomSlice(), false};
  bool invert_ = false;
  std::vector<Window> windows_;
  int32_t lo_ = 0, hi_ = -1;
  size_t channels_ = 0, stride_ = 0;
  std::vector<uint8_t> table_;
};

// The windowed image (rows x cols x C) of a slice's stored values.
void window_stored(const DicomSlice& s, const uint8_t* stored, const std::vector<Window>& windows, bool fix,
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
  bool rsna_fixed = false;          // the RSNA fix was applied
};

// One file: read (directly when it is uncompressed little endian, else with
// DCMTK / OpenJPEG) and windowed, f(slice) for each of its frames in order.
// Throws ich::Error with the reason for a bad file (before any call of f
// when the header is bad; a frame that fails to decode after earlier ones
// were given throws then).
void window_file(const std::string& path, const SliceWindowing& how, WindowScratch& scratch,
                 const std::function<void(const WindowedFile&)>& f);

// The meta.csv columns, in order.
const std::vector<std::string>& meta_columns();

WindowReport window_dicoms(const WindowOptions& o, const std::function<void(int64_t, int64_t)>& progress = nullptr);

}  // namespace ich
