#include "weights/torch_checkpoint.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <set>

#include "engine/half.h"
#include "weights/pickle.h"
#include "weights/zip_reader.h"

namespace ich {

namespace {

using pickle::Value;
using pickle::ValuePtr;
using Kind = Value::Kind;

// PyTorch's storage classes, by the name the pickle gives them.
enum class Src { Float, Double, Half, BFloat16, Long, Int, Short, Char, Byte };
struct StorageType {
  const char* name;
  Src src;
  size_t elem;
  DType to;
  bool raw;  // same bytes in our dtype: copied as they are
};
constexpr StorageType kStorageTypes[] = {
    {"torch.FloatStorage", Src::Float, 4, DType::Float32, true},
    {"torch.DoubleStorage", Src::Double, 8, DType::Float64, true},
    {"torch.HalfStorage", Src::Half, 2, DType::Float32, false},
    {"torch.BFloat16Storage", Src::BFloat16, 2, DType::Float32, false},
    {"torch.LongStorage", Src::Long, 8, DType::Int64, true},
    {"torch.IntStorage", Src::Int, 4, DType::Int64, false},
    {"torch.ShortStorage", Src::Short, 2, DType::Int64, false},
    {"torch.CharStorage", Src::Char, 1, DType::Int64, false},
    {"torch.ByteStorage", Src::Byte, 1, DType::UInt8, true},
    {"torch.BoolStorage", Src::Byte, 1, DType::UInt8, true},
};

struct StorageRef {
  const StorageType* type = nullptr;
  std::string key;
  int64_t numel = 0;
  const char* data = nullptr;  // filled once the bytes are located
};

class Reader {
 public:
  Reader(const std::string& bytes, std::string name) : b_(bytes), name_(std::move(name)) {}

  TorchCheckpoint read() {
    TorchCheckpoint out;
    ValuePtr root;
    if (looks_like_zip(b_)) {
      out.format = "zip";
      root = read_zip();
    } else {
      out.format = "legacy";
      root = read_legacy();
    }
    extract(root, out.tensors);
    return out;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { throw Error("checkpoint " + name_ + ": " + what); }

  ValuePtr read_zip() {
    const std::vector<ZipEntry> entries = read_zip_directory(b_, name_);
    const ZipEntry* pkl = nullptr;
    for (const auto& e : entries)
      if (e.name == "data.pkl" || (e.name.size() > 9 && e.name.compare(e.name.size() - 9, 9, "/data.pkl") == 0))
        pkl = &e;
    if (!pkl) fail("zip archive without data.pkl: not a PyTorch checkpoint");
    const std::string prefix = pkl->name.substr(0, pkl->name.size() - 8);  // "<archive>/"
    const std::string pickled = b_.substr(size_t(pkl->data_offset), size_t(pkl->size));
    size_t pos = 0;
    ValuePtr root = pickle::load(pickled, pos, name_, arena_);
    collect_storages(root);
    for (auto& [key, s] : storages_) {
      const ZipEntry* e = nullptr;
      for (const auto& z : entries)
        if (z.name == prefix + "data/" + key) e = &z;
      if (!e) fail("storage '" + key + "' is missing from the archive");
      if (e->size < uint64_t(s.numel) * s.type->elem)
        fail("storage '" + key + "' holds " + std::to_string(e->size) + " bytes, fewer than its " +
             std::to_string(s.numel) + " elements need");
      s.data = b_.data() + e->data_offset;
    }
    return root;
  }

  ValuePtr read_legacy() {
    size_t pos = 0;
    // The magic number 0x1950a86a20f9469cfc6c, pickled as a 10-byte LONG1.
    static const unsigned char kMagic[10] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
    if (b_.size() < 2 || static_cast<unsigned char>(b_[0]) != 0x80)
      fail("neither a zip archive nor a legacy PyTorch file (does not start with a pickle)");
    ValuePtr magic = pickle::load(b_, pos, name_, arena_);
    if (magic->kind != Kind::BigInt || magic->s.size() != 10 || std::memcmp(magic->s.data(), kMagic, 10) != 0)
      fail("a pickle, but not a PyTorch checkpoint (no legacy magic number)");
    ValuePtr version = pickle::load(b_, pos, name_, arena_);
    if (version->kind != Kind::Int || version->i != 1001)
      fail("legacy protocol version " + version->describe() + " is not supported (expected 1001)");
    ValuePtr sys_info = pickle::load(b_, pos, name_, arena_);
    for (const auto& [k, v] : sys_info->entries)
      if (k->is_str("little_endian") && v->kind == Kind::Bool && !v->i) fail("big-endian checkpoints are not supported");
    ValuePtr root = pickle::load(b_, pos, name_, arena_);
    collect_storages(root);
    ValuePtr keys = pickle::load(b_, pos, name_, arena_);
    if (keys->kind != Kind::List) fail("storage key list is " + keys->describe());
    for (const ValuePtr& k : keys->items) {
      if (k->kind != Kind::Str) fail("storage key is " + k->describe());
      if (pos + 8 > b_.size()) fail("ends before storage '" + k->s + "' (truncated?)");
      int64_t n;
      std::memcpy(&n, b_.data() + pos, 8);
      pos += 8;
      auto it = storages_.find(k->s);
      if (it == storages_.end()) fail("storage '" + k->s + "' is stored but never used");
      StorageRef& s = it->second;
      if (n != s.numel) fail("storage '" + k->s + "' has " + std::to_string(n) + " elements, expected " +
                             std::to_string(s.numel));
      const uint64_t nbytes = uint64_t(n) * s.type->elem;
      if (n < 0 || nbytes > b_.size() - pos)
        fail("storage '" + k->s + "' runs past the end of the file (truncated?)");
      s.data = b_.data() + pos;
      pos += size_t(nbytes);
    }
    for (const auto& [key, s] : storages_)
      if (!s.data) fail("storage '" + key + "' is used but not stored (truncated?)");
    return root;
  }

  // Finds every persistent id ('storage', type, key, location, numel, ...),
  // visiting each value once (pickles share values through the memo, and
  // can even hold cycles).
  void collect_storages(const ValuePtr& v, int depth = 0) {
    if (depth > 200) fail("object nesting too deep");
    if (!visited_.insert(v.get()).second) return;
    if (v->kind == Kind::Persistent) {
      const ValuePtr& pid = v->items.at(0);
      if (pid->kind != Kind::Tuple || pid->items.size() < 5 || !pid->items[0]->is_str("storage") ||
          pid->items[1]->kind != Kind::Global || pid->items[2]->kind != Kind::Str || pid->items[4]->kind != Kind::Int)
        fail("unsupported persistent id (" + pid->describe() + ")");
      StorageRef s;
      for (const auto& t : kStorageTypes)
        if (pid->items[1]->s == t.name) s.type = &t;
      if (!s.type) fail("storage type " + pid->items[1]->s + " is not supported");
      s.key = pid->items[2]->s;
      s.numel = pid->items[4]->i;
      if (s.numel < 0 || s.numel > (int64_t(1) << 40)) fail("storage '" + s.key + "' has a bad size");
      auto [it, fresh] = storages_.emplace(s.key, s);
      if (!fresh && (it->second.type != s.type || it->second.numel != s.numel))
        fail("storage '" + s.key + "' is declared twice differently");
      return;
    }
    for (const auto& i : v->items) collect_storages(i, depth + 1);
    for (const auto& [k, x] : v->entries) collect_storages(x, depth + 1);
  }

  // The state_dict inside the root object.
  void extract(const ValuePtr& root, NamedTensors& out) {
    if (root->kind != Kind::Dict) fail("the saved object is " + root->describe() + ", not a state_dict");
    ValuePtr sd = root;
    bool has_tensor = false;
    for (const auto& [k, v] : root->entries) has_tensor |= is_tensor(v);
    if (!has_tensor)
      for (const char* wrapper : {"state_dict", "model_state_dict", "model"})
        for (const auto& [k, v] : root->entries)
          if (k->is_str(wrapper) && v->kind == Kind::Dict && sd == root) sd = v;
    if (sd == root && !has_tensor) fail("no tensors found (expected a state_dict, or one under \"state_dict\")");
    bool all_module = !sd->entries.empty();
    for (const auto& [k, v] : sd->entries) {
      if (k->kind != Kind::Str) fail("state_dict key is " + k->describe());
      all_module &= k->s.rfind("module.", 0) == 0;
    }
    for (const auto& [k, v] : sd->entries) {
      if (!is_tensor(v)) fail("entry '" + k->s + "' is " + v->describe() + ", not a tensor");
      out.emplace_back(all_module ? k->s.substr(7) : k->s, rebuild(k->s, v));
    }
  }

  static bool is_tensor(const ValuePtr& v) {
    return v->kind == Kind::Call &&
           (v->items[0]->s == "torch._utils._rebuild_tensor_v2" || v->items[0]->s == "torch._utils._rebuild_parameter");
  }

  Tensor rebuild(const std::string& name, const ValuePtr& v, int depth = 0) {
    const std::string& fn = v->items[0]->s;
    const auto& a = v->items;  // [fn, args...]
    if (fn == "torch._utils._rebuild_parameter") {
      if (a.size() < 2 || !is_tensor(a[1]) || depth > 4) fail("entry '" + name + "': parameter without tensor data");
      return rebuild(name, a[1], depth + 1);
    }
    if (a.size() < 5 || a[1]->kind != Kind::Persistent || a[2]->kind != Kind::Int || a[3]->kind != Kind::Tuple ||
        a[4]->kind != Kind::Tuple)
      fail("entry '" + name + "': unexpected arguments to _rebuild_tensor_v2");
    const ValuePtr& pid = a[1]->items[0];
    const StorageRef& s = storages_.at(pid->items[2]->s);
    const int64_t offset = a[2]->i;
    Shape shape, stride;
    for (const auto& d : a[3]->items) {
      if (d->kind != Kind::Int || d->i < 0) fail("entry '" + name + "': bad size");
      shape.push_back(d->i);
    }
    for (const auto& d : a[4]->items) {
      if (d->kind != Kind::Int || d->i < 0) fail("entry '" + name + "': bad stride");
      stride.push_back(d->i);
    }
    if (shape.size() != stride.size()) fail("entry '" + name + "': size and stride differ in length");
    // The furthest element must lie inside the storage.
    int64_t last = offset;
    for (size_t d = 0; d < shape.size(); ++d) {
      if (shape[d] == 0) last = -1;
      if (last >= 0) last += (shape[d] - 1) * stride[d];
    }
    if (offset < 0 || (last >= 0 && last >= s.numel))
      fail("entry '" + name + "': view of " + shape_str(shape) + " at offset " + std::to_string(offset) +
           " exceeds its storage of " + std::to_string(s.numel) + " elements");
    Tensor t = Tensor::empty(shape, s.type->to);
    const int64_t n = t.numel();
    if (s.type->raw && stride == contiguous_strides(shape)) {  // the usual case: one copy
      std::memcpy(t.raw_data(), s.data + size_t(offset) * s.type->elem, size_t(n) * s.type->elem);
      return t;
    }
    std::vector<int64_t> idx(shape.size(), 0);
    int64_t src = offset;
    for (int64_t k = 0; k < n; ++k) {
      store(t, k, s, src);
      for (int64_t d = int64_t(shape.size()) - 1; d >= 0; --d) {
        if (++idx[size_t(d)] < shape[size_t(d)]) {
          src += stride[size_t(d)];
          break;
        }
        src -= stride[size_t(d)] * (shape[size_t(d)] - 1);
        idx[size_t(d)] = 0;
      }
    }
    return t;
  }

  static void store(Tensor& t, int64_t k, const StorageRef& s, int64_t i) {
    const char* p = s.data + size_t(i) * s.type->elem;
    auto get = [p](auto v) {
      std::memcpy(&v, p, sizeof(v));
      return v;
    };
    switch (s.type->src) {
      case Src::Float: t.data<float>()[k] = get(float{}); break;
      case Src::Double: t.data<double>()[k] = get(double{}); break;
      case Src::Half: t.data<float>()[k] = fp16_bits_to_float(get(uint16_t{})); break;
      case Src::BFloat16: t.data<float>()[k] = bf16_bits_to_float(get(uint16_t{})); break;
      case Src::Long: t.data<int64_t>()[k] = get(int64_t{}); break;
      case Src::Int: t.data<int64_t>()[k] = get(int32_t{}); break;
      case Src::Short: t.data<int64_t>()[k] = get(int16_t{}); break;
      case Src::Char: t.data<int64_t>()[k] = get(int8_t{}); break;
      case Src::Byte: t.data<uint8_t>()[k] = get(uint8_t{}); break;
    }
  }

  const std::string& b_;
  std::string name_;
  std::map<std::string, StorageRef> storages_;
  std::set<const Value*> visited_;
  pickle::Arena arena_;  // last member: destroyed first, cutting any cycles
};

}  // namespace

TorchCheckpoint parse_torch_checkpoint(const std::string& bytes, const std::string& name) {
  return Reader(bytes, name).read();
}

TorchCheckpoint read_torch_checkpoint(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  ICH_CHECK(in, "checkpoint ", path, ": cannot open (", std::strerror(errno), ")");
  const std::string b{std::istreambuf_iterator<char>(in), {}};
  return parse_torch_checkpoint(b, path);
}

}  // namespace ich
