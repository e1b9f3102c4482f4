// cairo_rgb.h (report/ only): between cairo's RGB24 image surfaces (a
// native-endian 32-bit word per pixel, 0x00RRGGBB, rows `stride` bytes
// apart) and the RGB byte images (h x w x 3) the rest of ich writes as PNG.
#pragma once
#include <cairo.h>

#include <cstdint>
#include <cstring>
#include <vector>

namespace ich::cairo_rgb {

inline std::vector<uint8_t> from_surface(cairo_surface_t* s) {
  cairo_surface_flush(s);
  const int w = cairo_image_surface_get_width(s), h = cairo_image_surface_get_height(s);
  const int stride = cairo_image_surface_get_stride(s);
  const unsigned char* data = cairo_image_surface_get_data(s);
  std::vector<uint8_t> out(size_t(w) * size_t(h) * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      uint32_t p;
      std::memcpy(&p, data + size_t(y) * size_t(stride) + size_t(x) * 4, 4);
      uint8_t* o = &out[(size_t(y) * size_t(w) + size_t(x)) * 3];
      o[0] = uint8_t(p >> 16), o[1] = uint8_t(p >> 8), o[2] = uint8_t(p);
    }
  return out;
}

inline void to_surface(const std::vector<uint8_t>& rgb, cairo_surface_t* s) {
  cairo_surface_flush(s);
  const int w = cairo_image_surface_get_width(s), h = cairo_image_surface_get_height(s);
  const int stride = cairo_image_surface_get_stride(s);
  unsigned char* data = cairo_image_surface_get_data(s);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const uint8_t* p = &rgb[(size_t(y) * size_t(w) + size_t(x)) * 3];
      const uint32_t v = uint32_t(p[0]) << 16 | uint32_t(p[1]) << 8 | p[2];
      std::memcpy(data + size_t(y) * size_t(stride) + size_t(x) * 4, &v, 4);
    }
  cairo_surface_mark_dirty(s);
}

}  // namespace ich::cairo_rgb
