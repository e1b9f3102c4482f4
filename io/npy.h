// npy.h: NumPy's .npy files (format versions 1.0, 2.0 and 3.0), the array
// format that other tools read: images, inputs and logits.
//
// Supported: little-endian float32 ('<f4'), float64 ('<f8'), uint8 ('|u1'),
// int64 ('<i8'), C order. Anything else, or a malformed or truncated file, is
// an ich::Error naming the file and what was wrong.
#pragma once
#include <string>

#include "engine/tensor.h"

namespace ich {

Tensor read_npy(const std::string& path);
// Parses .npy bytes held in memory (name is used in error messages).
Tensor parse_npy(const std::string& bytes, const std::string& name);
// Writes a CPU or device tensor atomically (temporary file, then rename).
void write_npy(const std::string& path, const Tensor& t);
std::string npy_bytes(const Tensor& t);
// The header of an array of this dtype and shape (ends where the data starts).
std::string npy_header(DType dtype, const Shape& shape);
// Writes a uint8 array from a host buffer without copying it into a tensor.
// durable=false skips fsync (bulk per-slice outputs; still atomic).
void write_npy_u8(const std::string& path, const uint8_t* data, const Shape& shape, bool durable = true);

}  // namespace ich
