// crc32.h: zlib's CRC-32 (the polynomial of PNG, ZIP and gzip) over any
// length: the weights file's table and entries, the resume journal's
// records, a checkpoint's identity.
#pragma once
#include <cstddef>
#include <cstdint>

namespace ich {

// The CRC of n bytes, or of n more bytes after `crc` (start from 0).
uint32_t crc32_update(uint32_t crc, const void* data, size_t n);
inline uint32_t crc32_of(const void* data, size_t n) { return crc32_update(0, data, n); }

}  // namespace ich
