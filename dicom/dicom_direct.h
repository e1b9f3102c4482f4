// dicom_direct.h: a reader for the common case, without DCMTK.
//
// Nearly every CT slice (all of RSNA 2019) is an uncompressed little-endian
// file. For those, DCMTK's general machinery (a tree of element objects, a
// copy of the pixel data, a second copy into DicomSlice::raw) costs more than
// windowing the pixels. read_dicom_direct() reads the file into a buffer the
// caller keeps, walks the elements in place and points at the pixel data.
//
// It only ever accepts or declines. It accepts a file only when it is sure
// DCMTK's read_dicom() would return the same header and the same pixels:
// preamble, a clean meta group, explicit or implicit VR little endian,
// ascending tags, every element (nested sequences too) inside the file,
// plain values in the attributes we read. Anything else (another transfer
// syntax, an odd value, a truncated file, a check that read_dicom() would
// fail) is declined, and the caller reads the file with read_dicom(), which
// decodes it or throws the reason. The differential fuzz target
// (tests/fuzz/fuzz_dicom.cpp) holds it to that.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "dicom/dicom.h"

namespace ich {

// On success fills `s` (everything but s.raw) and `pixels`: rows*cols stored
// values inside `file` (uint16 little endian when s.bits_allocated == 16,
// else uint8), not yet masked to BitsStored. `file` is reused between calls.
bool read_dicom_direct(const std::string& path, std::vector<uint8_t>& file, DicomSlice& s, const uint8_t*& pixels);

// Calls f(i, value) for the n stored values of a slice, as read_dicom() puts
// them in s.raw (masked to BitsStored, sign-extended when PixelRepresentation
// is 1): from `pixels` as read_dicom_direct() gives them, or from s.raw when
// pixels is nullptr. The decoding is fixed before the loop, which vectorises.
template <class F>
void for_each_stored(const DicomSlice& s, const uint8_t* pixels, size_t n, F&& f) {
  if (!pixels) {
    const int32_t* r = s.raw.data();
    for (size_t i = 0; i < n; ++i) f(i, r[i]);
    return;
  }
  const int shift = 32 - s.bits_stored;
  const uint32_t mask = 0xffffffffu >> shift;
  auto run = [&](auto get) {
    if (s.pixel_representation == 1 && s.bits_stored == 16)  // the common CT case: plain int16
      for (size_t i = 0; i < n; ++i) f(i, int32_t(int16_t(get(i))));
    else if (s.pixel_representation == 1)
      for (size_t i = 0; i < n; ++i) f(i, int32_t(uint32_t(get(i)) << shift) >> shift);
    else
      for (size_t i = 0; i < n; ++i) f(i, int32_t(uint32_t(get(i)) & mask));
  };
  if (s.bits_allocated == 16)
    run([&](size_t i) {
      uint16_t v;
      std::memcpy(&v, pixels + 2 * i, 2);
      return v;
    });
  else
    run([&](size_t i) { return pixels[i]; });
}

}  // namespace ich
