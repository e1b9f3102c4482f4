// hounsfield.h: stored pixel values to Hounsfield units, the standard's
// Modality LUT stage (DICOM PS3.3 C.11.1), and the RSNA 2019 12-bit quirk.
//
// A frame's stored values become its modality's units (HU for CT) in one of
// two ways, and never both (C.11.1: the two "shall not both be present"):
// - a Modality LUT Sequence (0028,3000): a table of LUT Data indexed by the
//   stored value minus the first value mapped; values below it take the
//   first entry, values past the end the last (C.11.1.1);
// - otherwise HU = stored * RescaleSlope + RescaleIntercept (1 and 0 when
//   absent). Enhanced CT gives them per frame (Pixel Value Transformation,
//   C.7.6.16.2.9); read_dicom puts each frame's own into its DicomSlice.
//
// The RSNA quirk (docs/data.md): some RSNA 2019 CT files store HU modulo
// 4096 in 12 unsigned bits with an intercept near 0, so air (-1000 HU) is
// stored as 3096 and every negative HU as 4096 + HU. Their true HU are
// ((stored + 1000) mod 4096) - 1000. The fix is made only where both the
// header and the values say so: a CT file, BitsStored 12, unsigned, intercept
// above -100, no Modality LUT, and at least 1% of the pixels at 3096 or above
// (taken at face value they would be denser than any bone; wrapped, they are
// the air and fat that every head CT shows). An MR or CR file with the same
// header is left alone.
#pragma once
#include <cstdint>
#include <vector>

#include "dicom/dicom.h"

namespace ich {

// The header half of the RSNA test: CT, BitsStored 12, unsigned, intercept >
// -100, no Modality LUT.
bool rsna_fix_candidate(const DicomSlice& s);
// Both halves. `stored` as for_each_stored takes it (nullptr: s.raw); n pixels.
bool needs_rsna_fix(const DicomSlice& s, const uint8_t* stored, size_t n);
bool needs_rsna_fix(const DicomSlice& s);  // from s.raw

// Stored value -> HU for one frame: its Modality LUT or its rescale, after
// the RSNA fix when `fix` (decided by needs_rsna_fix).
class ModalityTransform {
 public:
  ModalityTransform(const DicomSlice& s, bool fix);
  float operator()(int32_t stored) const {
    if (lut_) {
      const int64_t k = int64_t(stored) - first_;
      return float(lut_->data[size_t(k < 0 ? 0 : k >= last_ ? last_ : k)]);
    }
    if (fix_) {
      stored += 1000;
      if (stored >= 4096) stored -= 4096;
    }
    return float(double(stored) * slope_ + intercept_);
  }
  bool fix() const { return fix_; }
  // Whether two slices' transforms give the same HU for every stored value
  // (a window table built for one serves the other).
  bool same_as(const ModalityTransform& o) const;

 private:
  std::shared_ptr<const ModalityLut> lut_;
  int64_t first_ = 0, last_ = 0;  // last_: index of the last entry
  bool fix_ = false;
  double slope_ = 1, intercept_ = 0;
};

// HU of every pixel of s.raw; the RSNA fix where `rsna_fix` and the slice
// needs it.
std::vector<float> hounsfield(const DicomSlice& s, bool rsna_fix = true);

}  // namespace ich
