#include "io/png.h"

#include <zlib.h>

#include "engine/error.h"
#include "io/atomic_file.h"

namespace ich {

namespace {
void put32(std::string& s, uint32_t v) {
  for (int k = 3; k >= 0; --k) s += char((v >> (8 * k)) & 0xff);
}
void chunk(std::string& out, const char* type, const std::string& data) {
  put32(out, uint32_t(data.size()));
  std::string td = std::string(type, 4) + data;
  out += td;
  put32(out, uint32_t(crc32(0L, reinterpret_cast<const Bytef*>(td.data()), uInt(td.size()))));
}
}  // namespace

std::string png_bytes(const std::vector<uint8_t>& px, int w, int h, int channels) {
  ICH_CHECK(channels == 1 || channels == 3, "png: ", channels, " channels (need 1 or 3)");
  ICH_CHECK(w > 0 && h > 0 && px.size() == size_t(w) * size_t(h) * size_t(channels), "png: ", px.size(),
            " bytes for ", w, "x", h, "x", channels);
  // Each row starts with filter type 0 (none).
  std::string raw;
  raw.reserve(size_t(h) * (size_t(w) * size_t(channels) + 1));
  for (int y = 0; y < h; ++y) {
    raw += '\0';
    raw.append(reinterpret_cast<const char*>(px.data()) + size_t(y) * size_t(w) * size_t(channels),
               size_t(w) * size_t(channels));
  }
  uLongf zlen = compressBound(uLong(raw.size()));
  std::string z(zlen, '\0');
  ICH_CHECK(compress2(reinterpret_cast<Bytef*>(z.data()), &zlen, reinterpret_cast<const Bytef*>(raw.data()),
                      uLong(raw.size()), 6) == Z_OK,
            "png: deflate failed");
  z.resize(zlen);
  std::string out("\x89PNG\r\n\x1a\n", 8);
  std::string ihdr;
  put32(ihdr, uint32_t(w));
  put32(ihdr, uint32_t(h));
  ihdr += char(8);                        // bit depth
  ihdr += char(channels == 1 ? 0 : 2);    // gray or RGB
  ihdr += std::string("\0\0\0", 3);       // deflate, adaptive filtering, no interlace
  chunk(out, "IHDR", ihdr);
  chunk(out, "IDAT", z);
  chunk(out, "IEND", "");
  return out;
}

void write_png(const std::string& path, const std::vector<uint8_t>& px, int w, int h, int channels) {
  write_file_atomic(path, png_bytes(px, w, h, channels));
}

}  // namespace ich
