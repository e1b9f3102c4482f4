// npy_header() on its own: the DICOM tools write .npy files without pulling
// the tensor engine (and with it CUDA) into their executables.
#include "io/npy.h"

namespace ich {

namespace {

std::string descr_of(DType t) {
  switch (t) {
    case DType::Float32: return "<f4";
    case DType::Float64: return "<f8";
    case DType::UInt8: return "|u1";
    case DType::Int64: return "<i8";
    default: throw Error(std::string("write_npy: dtype ") + dtype_name(t) + " has no .npy form here");
  }
}

}  // namespace

std::string npy_header(DType dtype, const Shape& shape) {
  const int64_t nd = int64_t(shape.size());
  std::string dict = "{'descr': '" + descr_of(dtype) + "', 'fortran_order': False, 'shape': (";
  for (int64_t d = 0; d < nd; ++d) dict += std::to_string(shape[size_t(d)]) + (nd == 1 || d + 1 < nd ? ", " : "");
  if (nd == 1) dict.pop_back();  // "(5,)"
  dict += "), }";
  // Pad with spaces so that the data starts at a multiple of 64 bytes, and
  // end with a newline, as NumPy does.
  size_t total = 10 + dict.size() + 1;
  dict.append((64 - total % 64) % 64, ' ');
  dict += '\n';
  std::string out = std::string("\x93NUMPY\x01\x00", 8);
  out += char(dict.size() & 0xff);
  out += char((dict.size() >> 8) & 0xff);
  out += dict;
  return out;
}

}  // namespace ich
