#include "io/npy.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "io/atomic_file.h"

namespace ich {

namespace {

// The header is a Python dict literal, e.g.
//   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
// We read exactly the three keys NumPy writes.
std::string dict_value(const std::string& h, const std::string& key, const std::string& name) {
  const size_t k = h.find("'" + key + "'");
  ICH_CHECK(k != std::string::npos, "npy file ", name, ": header has no '", key, "'");
  size_t p = h.find(':', k);
  ICH_CHECK(p != std::string::npos, "npy file ", name, ": malformed header near '", key, "'");
  ++p;
  while (p < h.size() && h[p] == ' ') ++p;
  ICH_CHECK(p < h.size(), "npy file ", name, ": malformed header near '", key, "'");
  size_t end;
  if (h[p] == '\'') {
    end = h.find('\'', p + 1);
    ICH_CHECK(end != std::string::npos, "npy file ", name, ": unterminated string in header");
    return h.substr(p + 1, end - p - 1);
  }
  if (h[p] == '(') {
    end = h.find(')', p);
    ICH_CHECK(end != std::string::npos, "npy file ", name, ": unterminated shape in header");
    return h.substr(p + 1, end - p - 1);
  }
  end = h.find_first_of(",}", p);
  ICH_CHECK(end != std::string::npos, "npy file ", name, ": malformed header near '", key, "'");
  return h.substr(p, end - p);
}

DType parse_descr(const std::string& d, const std::string& name) {
  if (d == "<f4") return DType::Float32;
  if (d == "<f8") return DType::Float64;
  if (d == "|u1" || d == "<u1") return DType::UInt8;
  if (d == "<i8") return DType::Int64;
  throw Error("npy file " + name + ": dtype '" + d + "' is not supported (need <f4, <f8, |u1 or <i8)");
}

}  // namespace

Tensor parse_npy(const std::string& b, const std::string& name) {
  ICH_CHECK(b.size() >= 10 && std::memcmp(b.data(), "\x93NUMPY", 6) == 0, "npy file ", name,
            ": not a .npy file (bad magic)");
  const int major = static_cast<unsigned char>(b[6]);
  size_t header_len, start;
  if (major == 1) {
    header_len = static_cast<unsigned char>(b[8]) | (size_t(static_cast<unsigned char>(b[9])) << 8);
    start = 10;
  } else if (major == 2 || major == 3) {
    ICH_CHECK(b.size() >= 12, "npy file ", name, ": truncated header");
    header_len = 0;
    for (int i = 0; i < 4; ++i) header_len |= size_t(static_cast<unsigned char>(b[8 + i])) << (8 * i);
    start = 12;
  } else {
    throw Error("npy file " + name + ": format version " + std::to_string(major) + " is not supported");
  }
  ICH_CHECK(header_len <= b.size() - start, "npy file ", name, ": truncated header");
  const std::string h = b.substr(start, header_len);
  const DType dtype = parse_descr(dict_value(h, "descr", name), name);
  const std::string fortran = dict_value(h, "fortran_order", name);
  ICH_CHECK(fortran == "False", "npy file ", name, ": Fortran-order arrays are not supported");
  Shape shape;
  const std::string dims = dict_value(h, "shape", name);
  size_t p = 0;
  uint64_t numel = 1, extent = 1;
  while (p < dims.size()) {
    while (p < dims.size() && (dims[p] == ' ' || dims[p] == ',')) ++p;
    if (p >= dims.size()) break;
    size_t q = p;
    while (q < dims.size() && dims[q] >= '0' && dims[q] <= '9') ++q;
    ICH_CHECK(q > p && q - p <= 12, "npy file ", name, ": bad shape '(", dims, ")'");
    shape.push_back(std::stoll(dims.substr(p, q - p)));
    numel *= uint64_t(shape.back());
    // sizes other than 0 bounded together too: a 0 must not hide a huge size beside it
    extent *= std::max<uint64_t>(1, uint64_t(shape.back()));
    ICH_CHECK(extent < (uint64_t(1) << 40) && shape.size() <= 8, "npy file ", name, ": implausible shape (", dims,
              ")");
    p = q;
  }
  const uint64_t nbytes = numel * dtype_size(dtype);
  const size_t data_at = start + header_len;
  ICH_CHECK(b.size() - data_at == nbytes, "npy file ", name, ": ", b.size() - data_at, " data bytes for shape ",
            shape_str(shape), " of ", dtype_name(dtype), " (expected ", nbytes, "): truncated?");
  Tensor t = Tensor::empty(shape, dtype);
  if (nbytes) std::memcpy(t.raw_data(), b.data() + data_at, nbytes);
  return t;
}

Tensor read_npy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  ICH_CHECK(in, "npy file ", path, ": cannot open (", std::strerror(errno), ")");
  const std::string b{std::istreambuf_iterator<char>(in), {}};
  return parse_npy(b, path);
}

std::string npy_bytes(const Tensor& t0) {
  const Tensor t = t0.to(Device::cpu()).contiguous();
  std::string out = npy_header(t.dtype(), t.shape());
  out.append(static_cast<const char*>(t.raw_data()), size_t(t.numel()) * dtype_size(t.dtype()));
  return out;
}

void write_npy_u8(const std::string& path, const uint8_t* data, const Shape& shape, bool durable) {
  const std::string h = npy_header(DType::UInt8, shape);
  AtomicFile f(path, durable);
  f.write(h.data(), h.size());
  f.write(data, size_t(shape_numel(shape)));
  f.commit();
}

void write_npy(const std::string& path, const Tensor& t) { write_file_atomic(path, npy_bytes(t)); }

}  // namespace ich
