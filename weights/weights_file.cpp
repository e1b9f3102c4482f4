#include "weights/weights_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <unordered_set>

#include "io/atomic_file.h"
#include "io/crc32.h"

namespace ich {

namespace {

constexpr char kMagic[4] = {'I', 'C', 'H', 'W'};
constexpr uint32_t kVersion = 1;
constexpr uint64_t kHeaderBytes = 32;
constexpr uint64_t kAlign = 64;
constexpr size_t kMaxName = 1024;
constexpr int kMaxDims = 8;

// A cursor over the table bytes that fails with the file's name.
struct Reader {
  const std::string& path;
  const std::vector<char>& buf;
  size_t pos = 0;
  template <class T> T get(const char* what) {
    ICH_CHECK(pos + sizeof(T) <= buf.size(), "weights file ", path, ": table ends inside ", what, " at byte ",
              kHeaderBytes + pos);
    T v;
    std::memcpy(&v, buf.data() + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }
};

template <class T> void put(std::string& out, T v) { out.append(reinterpret_cast<const char*>(&v), sizeof(T)); }

}  // namespace

WeightsFile WeightsFile::open(const std::string& path) {
  WeightsFile wf;
  wf.path_ = path;
  std::ifstream in(path, std::ios::binary);
  ICH_CHECK(in, "weights file ", path, ": cannot open (", std::strerror(errno), ")");
  in.seekg(0, std::ios::end);
  wf.file_size_ = uint64_t(in.tellg());
  in.seekg(0);
  char header[kHeaderBytes];
  ICH_CHECK(wf.file_size_ >= kHeaderBytes && in.read(header, kHeaderBytes), "weights file ", path,
            ": too short for a header (", wf.file_size_, " bytes)");
  ICH_CHECK(std::memcmp(header, kMagic, 4) == 0, "weights file ", path,
            ": not an ich weights file (bad magic; convert PyTorch checkpoints with ich-convert)");
  uint32_t version, table_crc;
  uint64_t count, table_bytes;
  std::memcpy(&version, header + 4, 4);
  std::memcpy(&count, header + 8, 8);
  std::memcpy(&table_bytes, header + 16, 8);
  std::memcpy(&table_crc, header + 24, 4);
  ICH_CHECK(version == kVersion, "weights file ", path, ": version ", version, " is not supported (expected ",
            kVersion, ")");
  ICH_CHECK(table_bytes <= wf.file_size_ - kHeaderBytes, "weights file ", path, ": table of ", table_bytes,
            " bytes runs past the end of the file (", wf.file_size_, " bytes): truncated?");
  ICH_CHECK(count <= table_bytes / 12, "weights file ", path, ": entry count ", count, " cannot fit its table");
  std::vector<char> table(table_bytes);
  ICH_CHECK(in.read(table.data(), std::streamsize(table_bytes)), "weights file ", path, ": cannot read the table");
  ICH_CHECK(crc32_of(table.data(), table.size()) == table_crc, "weights file ", path,
            ": table checksum mismatch (file corrupted)");

  Reader r{path, table};
  for (uint64_t i = 0; i < count; ++i) {
    WeightsEntry e;
    const uint16_t len = r.get<uint16_t>("a name length");
    ICH_CHECK(len >= 1 && len <= kMaxName && r.pos + len <= table.size(), "weights file ", path, ": entry ", i,
              " has a bad name length ", len);
    e.name.assign(table.data() + r.pos, len);
    r.pos += len;
    ICH_CHECK(wf.index_.emplace(e.name, wf.entries_.size()).second, "weights file ", path, ": entry '", e.name,
              "' appears twice");
    const uint8_t dt = r.get<uint8_t>("a dtype");
    ICH_CHECK(dt <= uint8_t(DType::Int64), "weights file ", path, ": entry '", e.name, "' has unknown dtype code ",
              int(dt));
    e.dtype = DType(dt);
    const uint8_t nd = r.get<uint8_t>("a dimension count");
    ICH_CHECK(nd <= kMaxDims, "weights file ", path, ": entry '", e.name, "' has ", int(nd), " dimensions");
    uint64_t numel = 1;
    for (int d = 0; d < nd; ++d) {
      const int64_t v = r.get<int64_t>("a dimension");
      ICH_CHECK(v >= 0 && v < (int64_t(1) << 40), "weights file ", path, ": entry '", e.name, "' has dimension ", v);
      e.shape.push_back(v);
      numel *= uint64_t(v);
      ICH_CHECK(numel < (uint64_t(1) << 40), "weights file ", path, ": entry '", e.name, "' is implausibly large");
    }
    e.offset = r.get<uint64_t>("an offset");
    e.nbytes = r.get<uint64_t>("a size");
    e.crc = r.get<uint32_t>("a checksum");
    ICH_CHECK(e.nbytes == numel * dtype_size(e.dtype), "weights file ", path, ": entry '", e.name, "' has ",
              e.nbytes, " bytes for shape ", shape_str(e.shape), " of ", dtype_name(e.dtype));
    ICH_CHECK(e.offset % kAlign == 0 && e.offset >= kHeaderBytes + table_bytes, "weights file ", path, ": entry '",
              e.name, "' has a misplaced data offset ", e.offset);
    ICH_CHECK(e.offset <= wf.file_size_ && e.nbytes <= wf.file_size_ - e.offset, "weights file ", path, ": entry '",
              e.name, "' data [", e.offset, ", +", e.nbytes, ") runs past the end of the file (", wf.file_size_,
              " bytes): truncated?");
    wf.entries_.push_back(std::move(e));
  }
  ICH_CHECK(r.pos == table.size(), "weights file ", path, ": ", table.size() - r.pos, " stray bytes after the table");
  // Data ranges must not overlap (empty tensors occupy no range).
  std::vector<const WeightsEntry*> byoff;
  for (const auto& e : wf.entries_)
    if (e.nbytes > 0) byoff.push_back(&e);
  std::sort(byoff.begin(), byoff.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < byoff.size(); ++i)
    ICH_CHECK(byoff[i - 1]->offset + byoff[i - 1]->nbytes <= byoff[i]->offset, "weights file ", path, ": entries '",
              byoff[i - 1]->name, "' and '", byoff[i]->name, "' overlap");
  return wf;
}

const WeightsEntry* WeightsFile::find(const std::string& name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

namespace {
// The file opened again for reading, closed however the scope ends.
struct Fd {
  int fd;
  explicit Fd(const std::string& path) : fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC)) {
    ICH_CHECK(fd >= 0, "weights file ", path, ": cannot reopen (", std::strerror(errno), ")");
  }
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};
}  // namespace

void WeightsFile::read_entry(int fd, const WeightsEntry& e, void* dst) const {
  auto* p = static_cast<char*>(dst);
  uint64_t done = 0;
  while (done < e.nbytes) {
    const ssize_t got = ::pread(fd, p + done, size_t(std::min<uint64_t>(e.nbytes - done, 1u << 30)),
                                off_t(e.offset + done));
    if (got < 0 && errno == EINTR) continue;
    ICH_CHECK(got > 0, "weights file ", path_, ": cannot read entry '", e.name, "' at byte ", e.offset + done, " (",
              got < 0 ? std::strerror(errno) : "file truncated?", ")");
    done += uint64_t(got);
  }
  ICH_CHECK(crc32_of(dst, e.nbytes) == e.crc, "weights file ", path_, ": entry '", e.name,
            "' checksum mismatch (file corrupted)");
}

Tensor WeightsFile::read(const std::string& name) const {
  const WeightsEntry* e = find(name);
  ICH_CHECK(e != nullptr, "weights file ", path_, ": no entry '", name, "'");
  Tensor t = Tensor::empty(e->shape, e->dtype);
  const Fd f(path_);
  read_entry(f.fd, *e, t.raw_data());
  return t;
}

NamedTensors WeightsFile::read_all() const {
  const Fd f(path_);
  NamedTensors out;
  for (const auto& e : entries_) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    read_entry(f.fd, e, t.raw_data());
    out.emplace_back(e.name, std::move(t));
  }
  return out;
}

void WeightsFile::load_into(const NamedTensors& targets, bool strict) const {
  std::set<std::string> wanted;
  std::vector<std::pair<const WeightsEntry*, Tensor>> plan;
  for (const auto& [name, t] : targets) {
    wanted.insert(name);
    const WeightsEntry* e = find(name);
    if (!e) {
      ICH_CHECK(!strict, "weights file ", path_, ": missing entry '", name, "' (", t.str(),
                ") that the model needs: is it a file for another architecture?");
      continue;
    }
    ICH_CHECK(e->shape == t.shape(), "weights file ", path_, ": entry '", name, "' has shape ", shape_str(e->shape),
              ", the model expects ", shape_str(t.shape()), ": is it a file for another architecture?");
    plan.emplace_back(e, t);
  }
  if (strict)
    for (const auto& e : entries_)
      ICH_CHECK(wanted.count(e.name), "weights file ", path_, ": unexpected entry '", e.name, "' ",
                shape_str(e.shape), " that the model does not have");
  // Only after every check passed: change nothing on a mismatch. File order,
  // so the disk reads one stretch.
  std::sort(plan.begin(), plan.end(), [](const auto& a, const auto& b) { return a.first->offset < b.first->offset; });
  const Fd f(path_);
  for (auto& [e, t] : plan) {
    if (t.device().is_cpu() && t.dtype() == e->dtype && t.is_contiguous()) {
      read_entry(f.fd, *e, t.raw_data());  // straight into the target
      continue;
    }
    Tensor staged = Tensor::empty(e->shape, e->dtype);
    read_entry(f.fd, *e, staged.raw_data());
    Tensor dst = t;
    dst.copy_(staged.to(t.dtype()).to(t.device()));
  }
}

void write_weights(const std::string& path, const NamedTensors& tensors) {
  std::unordered_set<std::string> seen;
  std::string table;
  std::vector<Tensor> host;
  std::vector<uint64_t> offsets;
  // First pass: sizes, to place the data after the table.
  uint64_t table_bytes = 0;
  for (const auto& [name, t] : tensors) {
    ICH_CHECK(!name.empty() && name.size() <= kMaxName, "write_weights ", path, ": bad name '", name, "'");
    ICH_CHECK(seen.insert(name).second, "write_weights ", path, ": name '", name, "' appears twice");
    ICH_CHECK(t.dim() <= kMaxDims, "write_weights ", path, ": '", name, "' has too many dimensions");
    table_bytes += 2 + name.size() + 2 + 8 * uint64_t(t.dim()) + 8 + 8 + 4;
  }
  uint64_t pos = (kHeaderBytes + table_bytes + kAlign - 1) / kAlign * kAlign;
  for (const auto& [name, t] : tensors) {
    Tensor h = t.to(Device::cpu()).contiguous();
    const uint64_t nbytes = uint64_t(h.numel()) * dtype_size(h.dtype());
    put<uint16_t>(table, uint16_t(name.size()));
    table += name;
    put<uint8_t>(table, uint8_t(h.dtype()));
    put<uint8_t>(table, uint8_t(h.dim()));
    for (int64_t d : h.shape()) put<int64_t>(table, d);
    put<uint64_t>(table, pos);
    put<uint64_t>(table, nbytes);
    put<uint32_t>(table, crc32_of(h.raw_data(), nbytes));
    offsets.push_back(pos);
    host.push_back(h);
    pos = (pos + nbytes + kAlign - 1) / kAlign * kAlign;
  }
  std::string header(kMagic, 4);
  put<uint32_t>(header, kVersion);
  put<uint64_t>(header, uint64_t(tensors.size()));
  put<uint64_t>(header, table_bytes);
  put<uint32_t>(header, crc32_of(table.data(), table.size()));
  put<uint32_t>(header, 0);

  AtomicFile out(path);
  out.write(header.data(), header.size());
  out.write(table.data(), table.size());
  uint64_t at = kHeaderBytes + table_bytes;
  const std::string zeros(kAlign, '\0');
  for (size_t i = 0; i < host.size(); ++i) {
    out.write(zeros.data(), size_t(offsets[i] - at));
    const uint64_t nbytes = uint64_t(host[i].numel()) * dtype_size(host[i].dtype());
    out.write(static_cast<const char*>(host[i].raw_data()), nbytes);
    at = offsets[i] + nbytes;
  }
  out.commit();
}

Tensor text_entry(const std::string& s) {
  Tensor t = Tensor::empty({int64_t(s.size())}, DType::UInt8);
  if (!s.empty()) std::memcpy(t.raw_data(), s.data(), s.size());
  return t;
}
std::string entry_text(const Tensor& t) {
  const Tensor c = t.to(Device::cpu()).contiguous();
  return std::string(static_cast<const char*>(c.raw_data()), size_t(c.numel()));
}
Tensor int_entry(int64_t v) { return Tensor::full({}, double(v), DType::Int64); }
Tensor real_entry(double v) { return Tensor::full({}, v, DType::Float64); }

}  // namespace ich
