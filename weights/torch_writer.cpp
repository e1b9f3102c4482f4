// torch_writer.cpp: torch.save's zip serialisation of a state_dict (see
// torch_writer.h for the layout; pickle opcodes from Python's pickletools,
// ZIP records from PKWARE's APPNOTE.TXT, sections 4.3.7, 4.3.12, 4.3.16).
#include "weights/torch_writer.h"

#include <cstring>
#include <string_view>
#include <vector>

#include "engine/error.h"
#include "io/atomic_file.h"
#include "io/crc32.h"

namespace ich {

namespace {

void put_u16(std::string& o, uint32_t v) {
  o.push_back(char(v & 0xff));
  o.push_back(char((v >> 8) & 0xff));
}
void put_u32(std::string& o, uint32_t v) {
  put_u16(o, v & 0xffff);
  put_u16(o, v >> 16);
}

// --- pickle, protocol 2 ---
struct Pickler {
  std::string o;
  void global(const char* module, const char* name) { o += 'c', o += module, o += '\n', o += name, o += '\n'; }
  void str(const std::string& s) {  // BINUNICODE
    o += 'X';
    put_u32(o, uint32_t(s.size()));
    o += s;
  }
  void integer(int64_t v) {
    if (v >= 0 && v < 256) {
      o += 'K', o.push_back(char(v));  // BININT1
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
      o += 'J';  // BININT
      put_u32(o, uint32_t(int32_t(v)));
    } else {
      o.push_back(char(0x8a)), o.push_back(char(8));  // LONG1, 8 bytes little-endian two's complement
      for (int k = 0; k < 8; ++k) o.push_back(char(uint8_t(uint64_t(v) >> (8 * k))));
    }
  }
  void tuple_of(const std::vector<int64_t>& v) {
    if (v.empty()) {
      o += ')';  // EMPTY_TUPLE
      return;
    }
    o += '(';  // MARK
    for (int64_t x : v) integer(x);
    o += 't';  // TUPLE
  }
  void empty_ordered_dict() {
    global("collections", "OrderedDict");
    o += ')', o += 'R';  // EMPTY_TUPLE, REDUCE
  }
};

const char* storage_type(DType t, const std::string& name) {
  switch (t) {
    case DType::Float32: return "FloatStorage";
    case DType::Float64: return "DoubleStorage";
    case DType::Int64: return "LongStorage";
    default:
      throw Error(detail::cat("state_dict entry ", name, ": ", dtype_name(t),
                              " is not written (float32, float64 and int64 are)"));
  }
}

std::string pickle_state_dict(const NamedTensors& tensors) {
  Pickler p;
  p.o += "\x80\x02";  // PROTO 2
  p.empty_ordered_dict();
  p.o += '(';  // MARK for SETITEMS
  for (size_t k = 0; k < tensors.size(); ++k) {
    const auto& [name, t] = tensors[k];
    p.str(name);
    p.global("torch._utils", "_rebuild_tensor_v2");
    p.o += '(';  // the arguments
    p.o += '(';  // the persistent id
    p.str("storage");
    p.global("torch", storage_type(t.dtype(), name));
    p.str(std::to_string(k));
    p.str("cpu");
    p.integer(t.numel());
    p.o += 't';
    p.o += 'Q';  // BINPERSID
    p.integer(0);
    p.tuple_of(t.shape());
    std::vector<int64_t> stride(t.shape().size());
    int64_t s = 1;
    for (size_t d = stride.size(); d-- > 0;) stride[d] = s, s *= t.shape()[d];
    p.tuple_of(stride);
    p.o.push_back(char(0x89));  // NEWFALSE: requires_grad
    p.empty_ordered_dict();     // backward_hooks
    p.o += 't';
    p.o += 'R';
  }
  p.o += 'u';  // SETITEMS
  p.o += '.';  // STOP
  return p.o;
}

// --- ZIP, stored entries ---
struct ZipWriter {
  std::string central;
  uint64_t offset = 0;
  uint32_t entries = 0;

  // The local header (with the extra field padding the data to a multiple
  // of 64 bytes), to be followed by the n bytes whose CRC is crc.
  std::string local_header(const std::string& name, uint64_t n, uint32_t crc) {
    ICH_CHECK(n < 0xffffffffull && offset < 0xffffffffull, "zip entry ", name,
              ": over 4 GB (ZIP64 is not written)");
    std::string h;
    put_u32(h, 0x04034b50);
    put_u16(h, 20), put_u16(h, 0), put_u16(h, 0);  // version needed, flags, method stored
    put_u16(h, 0), put_u16(h, 0x21);               // time, date (1980-01-01)
    put_u32(h, crc), put_u32(h, uint32_t(n)), put_u32(h, uint32_t(n));
    const size_t base = 30 + name.size() + 4;  // header, name, the extra field's own header
    const size_t pad = (64 - (offset + base) % 64) % 64;
    put_u16(h, uint16_t(name.size())), put_u16(h, uint16_t(4 + pad));
    h += name;
    put_u16(h, 0x4246), put_u16(h, uint16_t(pad));  // "FB", as torch.save pads
    h.append(pad, 'Z');
    std::string c;
    put_u32(c, 0x02014b50);
    put_u16(c, 20), put_u16(c, 20), put_u16(c, 0), put_u16(c, 0);
    put_u16(c, 0), put_u16(c, 0x21);
    put_u32(c, crc), put_u32(c, uint32_t(n)), put_u32(c, uint32_t(n));
    put_u16(c, uint16_t(name.size())), put_u16(c, 0), put_u16(c, 0);  // name, extra, comment lengths
    put_u16(c, 0), put_u16(c, 0), put_u32(c, 0);                      // disk, internal, external attributes
    put_u32(c, uint32_t(offset));
    c += name;
    central += c;
    ++entries;
    offset += h.size() + n;
    return h;
  }
  std::string end() {
    ICH_CHECK(offset + central.size() < 0xffffffffull, "zip archive over 4 GB (ZIP64 is not written)");
    std::string e = central;
    put_u32(e, 0x06054b50);
    put_u16(e, 0), put_u16(e, 0), put_u16(e, uint16_t(entries)), put_u16(e, uint16_t(entries));
    put_u32(e, uint32_t(central.size())), put_u32(e, uint32_t(offset));
    put_u16(e, 0);
    return e;
  }
};

template <class Sink> void write_archive(const NamedTensors& tensors, Sink&& sink) {
  ICH_CHECK(tensors.size() < 65535, "state_dict of ", tensors.size(), " entries: over ZIP's 65535 (no ZIP64)");
  ZipWriter z;
  auto entry = [&](const std::string& name, const void* data, size_t n) {
    sink(z.local_header("archive/" + name, n, crc32_of(data, n)));
    sink(std::string_view(static_cast<const char*>(data), n));
  };
  const std::string pkl = pickle_state_dict(tensors);
  entry("data.pkl", pkl.data(), pkl.size());
  for (size_t k = 0; k < tensors.size(); ++k) {
    const Tensor h = tensors[k].second.to(Device::cpu()).contiguous();
    entry("data/" + std::to_string(k), h.raw_data(), size_t(h.numel()) * dtype_size(h.dtype()));
  }
  entry("byteorder", "little", 6);
  entry("version", "3\n", 2);
  sink(z.end());
}

}  // namespace

std::string torch_state_dict_bytes(const NamedTensors& tensors) {
  std::string out;
  write_archive(tensors, [&](std::string_view s) { out.append(s); });
  return out;
}

void write_torch_state_dict(const std::string& path, const NamedTensors& tensors) {
  AtomicFile f(path);
  write_archive(tensors, [&](std::string_view s) { f.write(s.data(), s.size()); });
  f.commit();
}

}  // namespace ich
