#include "dicom/hounsfield.h"

#include "dicom/dicom_direct.h"

namespace ich {

bool rsna_fix_candidate(const DicomSlice& s) {
  return s.modality == "CT" && !s.lut && s.bits_stored == 12 && s.pixel_representation == 0 && s.intercept > -100;
}

bool needs_rsna_fix(const DicomSlice& s, const uint8_t* stored, size_t n) {
  if (!rsna_fix_candidate(s) || n == 0) return false;
  size_t wrapped = 0;  // stored values the fix maps to [-1000, -1] HU
  for_each_stored(s, stored, n, [&](size_t, int32_t v) { wrapped += v >= 3096; });
  return wrapped * 100 >= n;
}

bool needs_rsna_fix(const DicomSlice& s) { return needs_rsna_fix(s, nullptr, s.raw.size()); }

ModalityTransform::ModalityTransform(const DicomSlice& s, bool fix)
    : lut_(s.lut), fix_(fix && !s.lut), slope_(s.slope), intercept_(fix_ ? -1000.0 : s.intercept) {
  if (lut_) {
    first_ = lut_->first;
    last_ = int64_t(lut_->data.size()) - 1;
  }
}

bool ModalityTransform::same_as(const ModalityTransform& o) const {
  if (bool(lut_) != bool(o.lut_)) return false;
  if (lut_) return first_ == o.first_ && (lut_ == o.lut_ || lut_->data == o.lut_->data);
  return fix_ == o.fix_ && slope_ == o.slope_ && intercept_ == o.intercept_;
}

std::vector<float> hounsfield(const DicomSlice& s, bool rsna_fix) {
  const ModalityTransform hu_of(s, rsna_fix && needs_rsna_fix(s));
  std::vector<float> hu(s.raw.size());
  for (size_t i = 0; i < hu.size(); ++i) hu[i] = hu_of(s.raw[i]);
  return hu;
}

}  // namespace ich
