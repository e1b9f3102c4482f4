// window_slice.h: one DICOM file to windowed images, the per-slice half of
// ich-window (dicom/window_job.h runs it over a folder): read (directly
// when the file is uncompressed little endian, else with DCMTK / OpenJPEG),
// Hounsfield units, the RSNA fix, windows as channels, an optional resize.
// ich-predict, ich-serve and ich-inspect window their slices through it, so
// a model sees the same bytes in training and in use.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "dicom/dicom.h"
#include "dicom/hounsfield.h"
#include "dicom/window.h"

namespace ich {

// How every slice becomes an image.
struct SliceWindowing {
  std::vector<Window> windows;  // as channels; empty: each slice's own first window ("dicom")
  int size = 0;                 // resize to size x size (bilinear, on HU); 0 keeps the slice's size
  bool rsna_fix = true;         // the RSNA 12-bit fix where a slice needs it (dicom/hounsfield.h)
  bool any_modality = false;    // convert MR, CR, ... too (otherwise only CT; not-CT is an error)
};

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

// One frame of a file windowed as window_file() windows it: frame is
// 1-based, 0 takes the first (a single-frame file's only) slice. Throws
// ich::Error naming the file when it has no such frame.
struct WindowedImage {
  std::vector<uint8_t> pixels;  // h x w x channels
  int h = 0, w = 0, channels = 0;
};
WindowedImage window_frame(const std::string& path, const SliceWindowing& how, int frame = 0);

}  // namespace ich
