// weights_file.h: read and write the flat weights format (weights/FORMAT.md).
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace ich {

struct WeightsEntry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t offset = 0, nbytes = 0;
  uint32_t crc = 0;
};

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

class WeightsFile {
 public:
  // Reads and validates the header and table; throws ich::Error naming the
  // file (and the entry) on anything malformed.
  static WeightsFile open(const std::string& path);

  const std::string& path() const { return path_; }
  const std::vector<WeightsEntry>& entries() const { return entries_; }
  const WeightsEntry* find(const std::string& name) const;
  // Reads one tensor (CPU), checking its CRC.
  Tensor read(const std::string& name) const;
  NamedTensors read_all() const;

  // Copies the file's tensors into `targets` (same names, shapes, dtype
  // converted if needed), on the targets' devices. With strict, a target
  // missing from the file or a file entry not among the targets is an error
  // naming the first such name; otherwise missing targets keep their values.
  // Names and shapes are checked before anything is written (a mismatch
  // changes nothing). The file is read once, in file order, with one pread
  // per entry straight into a contiguous CPU target of the same dtype (a
  // staging buffer otherwise), and each entry's CRC is checked on the bytes
  // that arrived; a checksum error is thrown after earlier entries were
  // copied, so a caller must not keep using the targets then (load_resnext
  // and load_checkpoint build a fresh model, ich-train stops).
  void load_into(const NamedTensors& targets, bool strict = true) const;

 private:
  // Reads entry e into dst (e's dtype and size, CPU, contiguous) through fd.
  void read_entry(int fd, const WeightsEntry& e, void* dst) const;

  std::string path_;
  uint64_t file_size_ = 0;
  std::vector<WeightsEntry> entries_;
  std::unordered_map<std::string, size_t> index_;  // name -> position in entries_
};

// Writes tensors (any device; copied to the host) atomically: a temporary
// file, fsync, rename. Names must be unique.
void write_weights(const std::string& path, const NamedTensors& tensors);

// Small entries of checkpoints (their meta/ part): text as a uint8 array, a
// number as a 0-d int64 or float64 tensor, and back.
Tensor text_entry(const std::string& s);
std::string entry_text(const Tensor& t);
Tensor int_entry(int64_t v);
Tensor real_entry(double v);

}  // namespace ich
