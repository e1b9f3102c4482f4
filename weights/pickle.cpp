#include "weights/pickle.h"

#include <cstring>

#include "engine/error.h"

namespace ich::pickle {

std::string Value::describe() const {
  switch (kind) {
    case Kind::None: return "None";
    case Kind::Bool: return i ? "True" : "False";
    case Kind::Int: return "int " + std::to_string(i);
    case Kind::BigInt: return "a large int";
    case Kind::Float: return "float";
    case Kind::Str: return "str '" + s.substr(0, 60) + "'";
    case Kind::Bytes: return "bytes";
    case Kind::Tuple: return "tuple of " + std::to_string(items.size());
    case Kind::List: return "list of " + std::to_string(items.size());
    case Kind::Dict: return "dict of " + std::to_string(entries.size());
    case Kind::Global: return "global " + s;
    case Kind::Call: return "object " + (items.empty() ? std::string("?") : items[0]->s);
    case Kind::Persistent: return "persistent id";
  }
  return "?";
}

namespace {

constexpr size_t kMaxStack = 1 << 20;
constexpr size_t kMaxMemo = 1 << 24;

thread_local Arena* g_arena = nullptr;  // the arena of the load running on this thread

ValuePtr make(Value::Kind k) {
  auto v = std::make_shared<Value>();
  v->kind = k;
  if (g_arena) g_arena->values.push_back(v);
  return v;
}

class Machine {
 public:
  Machine(const std::string& d, size_t& pos, const std::string& name) : d_(d), pos_(pos), name_(name) {}

  ValuePtr run() {
    while (true) {
      const size_t at = pos_;
      const uint8_t op = u8();
      switch (op) {
        case 0x80: u8(); break;                    // PROTO
        case 0x95: take(8); break;                 // FRAME (length is only a hint)
        case '.': return finish(at);               // STOP
        case '(': marks_.push_back(stack_.size()); break;  // MARK
        case '0': pop(at); break;                  // POP
        case '1': pop_mark(at); break;             // POP_MARK
        case '2': push(top(at)); break;            // DUP
        case 'N': push(make(Value::Kind::None)); break;
        case 0x88: push_bool(true); break;         // NEWTRUE
        case 0x89: push_bool(false); break;        // NEWFALSE
        case 'J': push_int(int32_t(le(4))); break;  // BININT
        case 'K': push_int(int64_t(le(1))); break;  // BININT1
        case 'M': push_int(int64_t(le(2))); break;  // BININT2
        case 0x8a: long_n(le(1), at); break;       // LONG1
        case 0x8b: long_n(le(4), at); break;       // LONG4
        case 'G': {                                // BINFLOAT, big-endian double
          uint64_t b = 0;
          for (int k = 0; k < 8; ++k) b = (b << 8) | u8();
          auto v = make(Value::Kind::Float);
          std::memcpy(&v->f, &b, 8);
          push(v);
          break;
        }
        case 'X': push_str(Value::Kind::Str, le(4)); break;     // BINUNICODE
        case 0x8c: push_str(Value::Kind::Str, le(1)); break;    // SHORT_BINUNICODE
        case 0x8d: push_str(Value::Kind::Str, le(8)); break;    // BINUNICODE8
        case 'T': push_str(Value::Kind::Str, le(4)); break;     // BINSTRING (py2 str)
        case 'U': push_str(Value::Kind::Str, le(1)); break;     // SHORT_BINSTRING
        case 'B': push_str(Value::Kind::Bytes, le(4)); break;   // BINBYTES
        case 'C': push_str(Value::Kind::Bytes, le(1)); break;   // SHORT_BINBYTES
        case 0x8e: push_str(Value::Kind::Bytes, le(8)); break;  // BINBYTES8
        case ')': push(make(Value::Kind::Tuple)); break;        // EMPTY_TUPLE
        case 't': {                                             // TUPLE
          auto v = make(Value::Kind::Tuple);
          v->items = since_mark(at);
          push(v);
          break;
        }
        case 0x85: tuple_n(1, at); break;
        case 0x86: tuple_n(2, at); break;
        case 0x87: tuple_n(3, at); break;
        case ']': push(make(Value::Kind::List)); break;  // EMPTY_LIST
        case 'l': {                                      // LIST
          auto v = make(Value::Kind::List);
          v->items = since_mark(at);
          push(v);
          break;
        }
        case 'a': {  // APPEND
          ValuePtr x = pop(at);
          expect(top(at), Value::Kind::List, "APPEND", at)->items.push_back(x);
          break;
        }
        case 'e': {  // APPENDS
          auto xs = since_mark(at);
          auto& l = expect(top(at), Value::Kind::List, "APPENDS", at)->items;
          l.insert(l.end(), xs.begin(), xs.end());
          break;
        }
        case '}': push(make(Value::Kind::Dict)); break;  // EMPTY_DICT
        case 'd': {                                      // DICT
          auto v = make(Value::Kind::Dict);
          add_pairs(v, since_mark(at), at);
          push(v);
          break;
        }
        case 's': {  // SETITEM
          ValuePtr val = pop(at), key = pop(at);
          add_pairs(top(at), {key, val}, at);
          break;
        }
        case 'u': {  // SETITEMS
          auto kv = since_mark(at);
          add_pairs(top(at), kv, at);
          break;
        }
        case 'c': {  // GLOBAL "module\nname\n"
          const std::string mod = line(at), nm = line(at);
          auto v = make(Value::Kind::Global);
          v->s = mod + "." + nm;
          push(v);
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          ValuePtr nm = pop(at), mod = pop(at);
          ICH_CHECK(nm->kind == Value::Kind::Str && mod->kind == Value::Kind::Str, where(at),
                    "STACK_GLOBAL needs two strings");
          auto v = make(Value::Kind::Global);
          v->s = mod->s + "." + nm->s;
          push(v);
          break;
        }
        case 'R': {  // REDUCE: callable(*args)
          ValuePtr args = pop(at), fn = pop(at);
          push(call(fn, args, at));
          break;
        }
        case 0x81: {  // NEWOBJ: cls.__new__(cls, *args)
          ValuePtr args = pop(at), cls = pop(at);
          push(call(cls, args, at));
          break;
        }
        case 'b': {  // BUILD: obj.__setstate__(state); recorded, not applied
          ValuePtr st = pop(at);
          top(at)->state = st;
          break;
        }
        case 'q': memo_put(le(1), at); break;     // BINPUT
        case 'r': memo_put(le(4), at); break;     // LONG_BINPUT
        case 0x94: memo_put(memo_.size(), at); break;  // MEMOIZE
        case 'h': push(memo_get(le(1), at)); break;    // BINGET
        case 'j': push(memo_get(le(4), at)); break;    // LONG_BINGET
        case 'Q': {                                    // BINPERSID
          auto v = make(Value::Kind::Persistent);
          v->items.push_back(pop(at));
          push(v);
          break;
        }
        default:
          throw Error(where(at) + "unsupported pickle opcode 0x" + hex(op) +
                      " (not a PyTorch state_dict checkpoint, or a newer format)");
      }
    }
  }

 private:
  std::string where(size_t at) const { return "checkpoint " + name_ + ": at byte " + std::to_string(at) + ": "; }
  static std::string hex(uint8_t b) {
    const char* h = "0123456789abcdef";
    return {h[b >> 4], h[b & 15]};
  }
  uint8_t u8() {
    ICH_CHECK(pos_ < d_.size(), "checkpoint ", name_, ": ends inside a pickle at byte ", pos_, " (truncated?)");
    return static_cast<uint8_t>(d_[pos_++]);
  }
  const char* take(uint64_t n) {
    ICH_CHECK(n <= d_.size() - pos_, "checkpoint ", name_, ": a ", n, "-byte field at byte ", pos_,
              " runs past the end (truncated?)");
    const char* p = d_.data() + pos_;
    pos_ += size_t(n);
    return p;
  }
  uint64_t le(int n) {
    const char* p = take(uint64_t(n));
    uint64_t v = 0;
    for (int k = n - 1; k >= 0; --k) v = (v << 8) | static_cast<uint8_t>(p[k]);
    return v;
  }
  std::string line(size_t at) {
    const size_t e = d_.find('\n', pos_);
    ICH_CHECK(e != std::string::npos && e - pos_ < 256, where(at), "unterminated GLOBAL name");
    std::string s = d_.substr(pos_, e - pos_);
    pos_ = e + 1;
    return s;
  }
  void push(ValuePtr v) {
    ICH_CHECK(stack_.size() < kMaxStack, "checkpoint ", name_, ": pickle stack too deep");
    stack_.push_back(std::move(v));
  }
  void push_bool(bool b) {
    auto v = make(Value::Kind::Bool);
    v->i = b;
    push(v);
  }
  void push_int(int64_t i) {
    auto v = make(Value::Kind::Int);
    v->i = i;
    push(v);
  }
  void push_str(Value::Kind k, uint64_t n) {
    auto v = make(k);
    const char* p = take(n);
    v->s.assign(p, size_t(n));
    push(v);
  }
  void long_n(uint64_t n, size_t at) {
    ICH_CHECK(n <= 64, where(at), "integer of ", n, " bytes");
    const char* p = take(n);
    if (n <= 8) {
      uint64_t v = 0;
      for (int64_t k = int64_t(n) - 1; k >= 0; --k) v = (v << 8) | static_cast<uint8_t>(p[k]);
      if (n > 0 && n < 8 && (static_cast<uint8_t>(p[n - 1]) & 0x80)) v |= ~uint64_t(0) << (8 * n);  // sign-extend
      push_int(int64_t(v));
      return;
    }
    auto v = make(Value::Kind::BigInt);
    v->s.assign(p, size_t(n));
    push(v);
  }
  ValuePtr& top(size_t at) {
    ICH_CHECK(!stack_.empty() && (marks_.empty() || stack_.size() > marks_.back()), where(at), "stack underflow");
    return stack_.back();
  }
  ValuePtr pop(size_t at) {
    ValuePtr v = top(at);
    stack_.pop_back();
    return v;
  }
  std::vector<ValuePtr> since_mark(size_t at) {
    ICH_CHECK(!marks_.empty(), where(at), "no MARK on the stack");
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<ValuePtr> out(stack_.begin() + long(m), stack_.end());
    stack_.resize(m);
    return out;
  }
  void pop_mark(size_t at) { since_mark(at); }
  void tuple_n(size_t n, size_t at) {
    auto v = make(Value::Kind::Tuple);
    v->items.resize(n);
    for (size_t k = n; k-- > 0;) v->items[k] = pop(at);
    push(v);
  }
  static ValuePtr expect(ValuePtr v, Value::Kind k, const char* op, size_t) {
    ICH_CHECK(v->kind == k, op, " applied to ", v->describe());
    return v;
  }
  void add_pairs(const ValuePtr& target, const std::vector<ValuePtr>& kv, size_t at) {
    ICH_CHECK(kv.size() % 2 == 0, where(at), "odd number of items for a dict");
    // A Call to collections.OrderedDict is a dict too.
    ValuePtr dict = target;
    if (dict->kind == Value::Kind::Call && dict->items[0]->s == "collections.OrderedDict") {
      dict->kind = Value::Kind::Dict;
      dict->items.clear();
    }
    ICH_CHECK(dict->kind == Value::Kind::Dict, where(at), "SETITEM(S) applied to ", dict->describe());
    for (size_t k = 0; k < kv.size(); k += 2) dict->entries.emplace_back(kv[k], kv[k + 1]);
  }
  ValuePtr call(const ValuePtr& fn, const ValuePtr& args, size_t at) {
    ICH_CHECK(fn->kind == Value::Kind::Global, where(at), "call of ", fn->describe(), ", not a global");
    ICH_CHECK(args->kind == Value::Kind::Tuple, where(at), "call of ", fn->s, " with ", args->describe());
    if (fn->s == "collections.OrderedDict" && args->items.empty()) return make(Value::Kind::Dict);
    auto v = make(Value::Kind::Call);
    v->items.push_back(fn);
    v->items.insert(v->items.end(), args->items.begin(), args->items.end());
    return v;
  }
  void memo_put(uint64_t idx, size_t at) {
    ICH_CHECK(idx < kMaxMemo, where(at), "memo index ", idx, " too large");
    if (memo_.size() <= idx) memo_.resize(size_t(idx) + 1);
    memo_[size_t(idx)] = top(at);
  }
  ValuePtr memo_get(uint64_t idx, size_t at) {
    ICH_CHECK(idx < memo_.size() && memo_[size_t(idx)], where(at), "memo entry ", idx, " was never stored");
    return memo_[size_t(idx)];
  }
  ValuePtr finish(size_t at) {
    ICH_CHECK(stack_.size() == 1 && marks_.empty(), where(at), "STOP with ", stack_.size(), " values on the stack");
    return stack_.back();
  }

  const std::string& d_;
  size_t& pos_;
  const std::string& name_;
  std::vector<ValuePtr> stack_;
  std::vector<size_t> marks_;
  std::vector<ValuePtr> memo_;
};

}  // namespace

Arena::~Arena() {
  for (auto& v : values) {
    v->items.clear();
    v->entries.clear();
    v->state.reset();
  }
}

ValuePtr load(const std::string& data, size_t& pos, const std::string& name, Arena& arena) {
  struct Scope {
    Arena* prev;
    ~Scope() { g_arena = prev; }
  } scope{g_arena};
  g_arena = &arena;
  return Machine(data, pos, name).run();
}

}  // namespace ich::pickle
