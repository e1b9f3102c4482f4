// pickle.h: the subset of Python's pickle that PyTorch checkpoints use.
//
// This is a data-only unpickler: it builds a tree of values and never runs
// code. Globals (e.g. "collections.OrderedDict", "torch._utils.
// _rebuild_tensor_v2") are recorded by name; REDUCE and NEWOBJ on them make
// Call values holding the callable's name and arguments, which the
// checkpoint reader (torch_checkpoint.cpp) interprets for the few it knows.
// Persistent ids (PyTorch's storage references) become Persistent values.
// Every read is bounds-checked; malformed input is an ich::Error naming the
// file and the byte offset.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace ich::pickle {

struct Value;
using ValuePtr = std::shared_ptr<Value>;

struct Value {
  enum class Kind { None, Bool, Int, BigInt, Float, Str, Bytes, Tuple, List, Dict, Global, Call, Persistent };
  Kind kind = Kind::None;
  int64_t i = 0;            // Int, Bool
  double f = 0;             // Float
  std::string s;            // Str, Bytes, BigInt (little-endian bytes), Global ("module.name")
  std::vector<ValuePtr> items;                          // Tuple, List; Call: [callable, args...]; Persistent: [pid]
  std::vector<std::pair<ValuePtr, ValuePtr>> entries;   // Dict, in insertion order
  ValuePtr state;                                       // BUILD's argument, kept but not applied

  bool is_str(const std::string& v) const { return kind == Kind::Str && s == v; }
  std::string describe() const;  // short human description for errors
};

// Owns every value the unpickler makes. A pickle can build cycles (a list
// that holds itself, through the memo); shared pointers alone would leak
// them, so the arena cuts every link when it goes away.
struct Arena {
  std::vector<ValuePtr> values;
  Arena() = default;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  ~Arena();
};

// Unpickles one object starting at `pos` in `data`; on return `pos` is just
// past its STOP opcode. The values live until `arena` is destroyed.
ValuePtr load(const std::string& data, size_t& pos, const std::string& name, Arena& arena);

}  // namespace ich::pickle
