#include "weights/zip_reader.h"

#include <cstring>

#include "engine/error.h"

namespace ich {

namespace {
struct Cursor {
  const std::string& b;
  const std::string& name;
  uint64_t at;
  uint64_t get(int n) {
    ICH_CHECK(at <= b.size() && uint64_t(n) <= b.size() - at, "zip archive ", name, ": a field at byte ", at,
              " runs past the end (truncated?)");
    uint64_t v = 0;
    for (int k = n - 1; k >= 0; --k) v = (v << 8) | static_cast<uint8_t>(b[size_t(at) + size_t(k)]);
    at += uint64_t(n);
    return v;
  }
};
}  // namespace

bool looks_like_zip(const std::string& b) { return b.size() >= 4 && std::memcmp(b.data(), "PK\x03\x04", 4) == 0; }

std::vector<ZipEntry> read_zip_directory(const std::string& b, const std::string& name) {
  // The end-of-central-directory record: 22 bytes plus a comment of up to
  // 64 KiB, found by scanning backwards for its signature.
  ICH_CHECK(b.size() >= 22, "zip archive ", name, ": too short");
  int64_t eocd = -1;
  const int64_t lowest = std::max<int64_t>(0, int64_t(b.size()) - 22 - 65535);
  for (int64_t p = int64_t(b.size()) - 22; p >= lowest; --p)
    if (std::memcmp(b.data() + p, "PK\x05\x06", 4) == 0) {
      eocd = p;
      break;
    }
  ICH_CHECK(eocd >= 0, "zip archive ", name, ": no end-of-directory record (truncated?)");
  Cursor c{b, name, uint64_t(eocd) + 10};
  uint64_t count = c.get(2);
  c.get(4);  // directory size
  uint64_t dir_offset = c.get(4);
  if (count == 0xFFFF || dir_offset == 0xFFFFFFFF) {
    // ZIP64: a locator just before the EOCD points at the ZIP64 record.
    ICH_CHECK(eocd >= 20 && std::memcmp(b.data() + eocd - 20, "PK\x06\x07", 4) == 0, "zip archive ", name,
              ": ZIP64 locator missing");
    Cursor l{b, name, uint64_t(eocd) - 20 + 8};
    const uint64_t rec = l.get(8);
    ICH_CHECK(rec + 56 <= b.size() && std::memcmp(b.data() + rec, "PK\x06\x06", 4) == 0, "zip archive ", name,
              ": bad ZIP64 record");
    Cursor r{b, name, rec + 32};
    count = r.get(8);
    r.get(8);
    dir_offset = r.get(8);
  }
  ICH_CHECK(count <= b.size() / 46, "zip archive ", name, ": implausible entry count ", count);
  std::vector<ZipEntry> out;
  Cursor d{b, name, dir_offset};
  for (uint64_t i = 0; i < count; ++i) {
    ICH_CHECK(d.get(4) == 0x02014b50, "zip archive ", name, ": bad central directory entry ", i);
    d.get(6);  // versions, flags
    ZipEntry e;
    e.method = uint16_t(d.get(2));
    d.get(8);  // time, date, crc
    uint64_t csize = d.get(4), usize = d.get(4);
    const uint64_t nlen = d.get(2), xlen = d.get(2), clen = d.get(2);
    d.get(8);  // disk, attributes
    uint64_t local = d.get(4);
    ICH_CHECK(nlen <= b.size() - d.at, "zip archive ", name, ": entry name runs past the end");
    e.name = b.substr(size_t(d.at), size_t(nlen));
    d.at += nlen;
    // ZIP64 extra field: the 64-bit values of the fields saturated above.
    const uint64_t xend = d.at + xlen;
    while (d.at + 4 <= xend) {
      const uint64_t id = d.get(2), len = d.get(2), body_end = d.at + len;
      if (id == 0x0001) {
        if (usize == 0xFFFFFFFF && d.at + 8 <= body_end) usize = d.get(8);
        if (csize == 0xFFFFFFFF && d.at + 8 <= body_end) csize = d.get(8);
        if (local == 0xFFFFFFFF && d.at + 8 <= body_end) local = d.get(8);
      }
      d.at = body_end;
    }
    d.at = xend + clen;
    ICH_CHECK(e.method == 0 || csize == 0, "zip archive ", name, ": entry '", e.name,
              "' is compressed (method ", e.method, "); PyTorch writes stored entries");
    Cursor lh{b, name, local};
    ICH_CHECK(lh.get(4) == 0x04034b50, "zip archive ", name, ": bad local header for '", e.name, "'");
    lh.at = local + 26;
    const uint64_t lnlen = lh.get(2), lxlen = lh.get(2);
    e.data_offset = local + 30 + lnlen + lxlen;
    e.size = usize;
    ICH_CHECK(e.data_offset <= b.size() && e.size <= b.size() - e.data_offset, "zip archive ", name, ": entry '",
              e.name, "' runs past the end (truncated?)");
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace ich
