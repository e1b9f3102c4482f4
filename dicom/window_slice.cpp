// window_slice.cpp: one DICOM file to windowed images (window_slice.h).
#include "dicom/window_slice.h"

#include <algorithm>
#include <climits>
#include <cstring>

#include "dicom/dicom_direct.h"
#include "engine/error.h"

namespace ich {

void check_modality(const DicomSlice& s, bool any_modality) {
  if (any_modality || is_ct(s)) return;
  throw Error(s.modality.empty() ? "no Modality and SOP Class " + (s.sop_class.empty() ? std::string("(none)") : s.sop_class) +
                                       ": not known to be CT (--any-modality converts it anyway)"
                                 : "Modality " + s.modality + " is not CT (--any-modality converts it anyway)");
}

namespace {

// "dicom" (no windows given): the file's own first window.
std::vector<Window> resolve_windows(const DicomSlice& s, const std::vector<Window>& windows) {
  if (!windows.empty()) return windows;
  ICH_CHECK(!s.window_centers.empty() && !s.window_widths.empty() && s.window_widths[0] > 0,
            "no usable WindowCenter/WindowWidth for --windows dicom");
  return {{s.window_centers[0], s.window_widths[0]}};
}

}  // namespace

void WindowTable::prepare(const DicomSlice& s, const std::vector<Window>& ws, bool fix, int32_t lo, int32_t hi) {
  const ModalityTransform hu(s, fix);
  const bool invert = s.photometric == "MONOCHROME1";
  const bool same = !table_.empty() && hu.same_as(hu_) && invert == invert_ && ws.size() == windows_.size() &&
                    std::equal(ws.begin(), ws.end(), windows_.begin(), [](const Window& a, const Window& b) {
                      return a.center == b.center && a.width == b.width;
                    });
  if (same && lo >= lo_ && hi <= hi_) return;
  if (same) {  // grow, in steps, so that a creeping range is not rebuilt every slice
    lo = std::min(lo, lo_);
    hi = std::max(hi, hi_);
  }
  lo_ = int32_t(std::max<int64_t>(INT32_MIN, int64_t(lo) - 256));
  hi_ = int32_t(std::min<int64_t>(INT32_MAX, int64_t(hi) + 256));
  hu_ = hu;
  invert_ = invert;
  windows_ = ws;
  channels_ = ws.size();
  stride_ = channels_ == 1 ? 1 : std::max<size_t>(channels_, 4);
  const size_t span = size_t(int64_t(hi_) - lo_) + 1;
  table_.assign(span * stride_, 0);
  for (size_t k = 0; k < span; ++k) {
    const float v = hu_(int32_t(int64_t(lo_) + int64_t(k)));
    for (size_t c = 0; c < channels_; ++c) {
      const uint8_t u = window_hu_to_u8(v, ws[c]);
      table_[k * stride_ + c] = invert ? uint8_t(255 - u) : u;
    }
  }
}

void WindowTable::apply(const DicomSlice& s, const uint8_t* stored, size_t n, uint8_t* out) const {
  const uint8_t* t = table_.data();
  const int64_t lo = lo_;
  const size_t C = channels_;
  if (C == 1) {
    for_each_stored(s, stored, n, [&](size_t i, int32_t v) { out[i] = t[int64_t(v) - lo]; });
  } else if (C <= 4) {
    // Four bytes per entry: one unaligned store per pixel, whose spare bytes
    // the next pixel overwrites (out has 3 bytes to spare at the end).
    for_each_stored(s, stored, n, [&](size_t i, int32_t v) {
      std::memcpy(out + i * C, t + size_t(int64_t(v) - lo) * 4, 4);
    });
  } else {
    for_each_stored(s, stored, n, [&](size_t i, int32_t v) {
      std::memcpy(out + i * C, t + size_t(int64_t(v) - lo) * stride_, C);
    });
  }
}

namespace {

void stored_range(const DicomSlice& s, const uint8_t* stored, size_t n, int32_t* lo, int32_t* hi) {
  if (stored && s.bits_allocated == 16) {
    // 16-bit values stay in 16-bit lanes: twice the pixels per vector step
    // and SSE2's own min/max (the int32 versions need SSE4.1).
    const int sh = 16 - s.bits_stored;
    const bool is_signed = s.pixel_representation == 1;
    const uint16_t flip = (!is_signed && sh == 0) ? 0x8000 : 0;  // full-range unsigned: order as signed
    const uint16_t mask = uint16_t(0xffffu >> sh);
    int16_t a = INT16_MAX, b = INT16_MIN;
    for (size_t i = 0; i < n; ++i) {
      uint16_t u;
      std::memcpy(&u, stored + 2 * i, 2);
      const int16_t v = !is_signed ? int16_t((u & mask) ^ flip)
                        : sh == 0  ? int16_t(u)
                                   : int16_t(int16_t(uint16_t(u << sh)) >> sh);
      a = std::min(a, v);
      b = std::max(b, v);
    }
    *lo = flip ? int32_t(uint16_t(a) ^ flip) : a;
    *hi = flip ? int32_t(uint16_t(b) ^ flip) : b;
    return;
  }
  int32_t a = INT32_MAX, b = INT32_MIN;
  for_each_stored(s, stored, n, [&](size_t, int32_t v) {
    a = std::min(a, v);
    b = std::max(b, v);
  });
  *lo = a;
  *hi = b;
}

}  // namespace

void window_stored(const DicomSlice& s, const uint8_t* stored, const std::vector<Window>& windows, bool fix,
                   WindowTable& table, std::vector<uint8_t>& out) {
  const std::vector<Window> ws = resolve_windows(s, windows);
  const size_t n = size_t(s.rows) * size_t(s.cols);
  int32_t lo, hi;
  stored_range(s, stored, n, &lo, &hi);
  table.prepare(s, ws, fix, lo, hi);
  out.resize(n * ws.size() + 3);
  table.apply(s, stored, n, out.data());
  out.resize(n * ws.size());  // keeps the capacity
}

std::vector<uint8_t> windowed_pixels(const DicomSlice& s, const std::vector<Window>& windows, int size,
                                     bool rsna_fix, int* out_h, int* out_w) {
  if (size <= 0 || (size == s.rows && size == s.cols)) {
    // Stored values are integers in a small range: a lookup table built with
    // the exact formula maps them straight to bytes.
    *out_h = s.rows;
    *out_w = s.cols;
    WindowTable table;
    std::vector<uint8_t> out;
    window_stored(s, nullptr, windows, rsna_fix && needs_rsna_fix(s), table, out);
    return out;
  }
  const std::vector<Window> ws = resolve_windows(s, windows);
  const std::vector<float> hu = resize_bilinear(hounsfield(s, rsna_fix), s.rows, s.cols, size, size);
  *out_h = *out_w = size;
  return window_image(hu, ws, s.photometric == "MONOCHROME1");
}

void window_file(const std::string& path, const SliceWindowing& how, WindowScratch& scratch,
                 const std::function<void(const WindowedFile&)>& f) {
  const int channels = int(how.windows.empty() ? 1 : how.windows.size());
  auto window_one = [&](WindowedFile& r, const uint8_t* stored) {
    DicomSlice& s = r.slice;
    check_modality(s, how.any_modality);
    r.channels = channels;
    const size_t n = size_t(s.rows) * size_t(s.cols);
    r.rsna_fixed = how.rsna_fix && needs_rsna_fix(s, stored, n);
    if (how.size <= 0 || (how.size == s.rows && how.size == s.cols)) {
      r.h = s.rows;
      r.w = s.cols;
      window_stored(s, stored, how.windows, r.rsna_fixed, scratch.table, scratch.out);
    } else {
      if (stored) {  // the resize path works on Hounsfield units of every pixel
        s.raw.resize(n);
        for_each_stored(s, stored, n, [&](size_t i, int32_t v) { s.raw[i] = v; });
      }
      scratch.out = windowed_pixels(s, how.windows, how.size, how.rsna_fix, &r.h, &r.w);
    }
    r.pixels = scratch.out.data();
    f(r);
  };
  WindowedFile r;
  const uint8_t* stored = nullptr;
  r.direct = read_dicom_direct(path, scratch.file, r.slice, stored);
  if (r.direct) {
    window_one(r, stored);
    return;
  }
  // DCMTK: the header first (a file of another modality is refused before
  // its pixels are decoded), then every frame.
  if (!how.any_modality)
    read_dicom_frames(path, [&](DicomSlice& s) { check_modality(s, how.any_modality); }, /*pixels=*/false);
  read_dicom_frames(path, [&](DicomSlice& s) {
    WindowedFile fr;
    fr.slice = std::move(s);
    window_one(fr, nullptr);
  });
}

WindowedImage window_frame(const std::string& path, const SliceWindowing& how, int frame) {
  WindowedImage out;
  bool found = false;
  WindowScratch scratch;
  window_file(path, how, scratch, [&](const WindowedFile& f) {
    if (found || (frame > 0 && f.slice.frame != frame)) return;
    out.h = f.h, out.w = f.w, out.channels = f.channels;
    out.pixels.assign(f.pixels, f.pixels + size_t(f.h) * size_t(f.w) * size_t(f.channels));
    found = true;
  });
  ICH_CHECK(found, path, ": no frame ", frame);
  return out;
}

}  // namespace ich
