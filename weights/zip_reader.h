// zip_reader.h: the part of the ZIP format that PyTorch's checkpoints use:
// stored (uncompressed) entries, with ZIP64 sizes and offsets. Reads the
// central directory of an archive held in memory.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ich {

struct ZipEntry {
  std::string name;
  uint64_t data_offset = 0;  // of the entry's bytes within the archive
  uint64_t size = 0;
  uint16_t method = 0;  // 0 = stored
};

// Throws ich::Error naming `name` when the bytes are not a readable archive.
std::vector<ZipEntry> read_zip_directory(const std::string& bytes, const std::string& name);
bool looks_like_zip(const std::string& bytes);

}  // namespace ich
