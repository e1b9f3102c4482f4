// crc32.cpp: crc32.h on zlib, in chunks (zlib takes uInt lengths).
#include "io/crc32.h"

#include <zlib.h>

#include <algorithm>

namespace ich {

uint32_t crc32_update(uint32_t crc, const void* data, size_t n) {
  uLong c = crc;
  const auto* p = static_cast<const Bytef*>(data);
  while (n > 0) {
    const uInt chunk = uInt(std::min<size_t>(n, 1u << 30));
    c = crc32(c, p, chunk);
    p += chunk;
    n -= chunk;
  }
  return uint32_t(c);
}

}  // namespace ich
