// pdu.cpp: check_associate_rq (pdu.h), item by item as PS3.8 9.3.2 lays
// the A-ASSOCIATE-RQ out:
//   header     type 01, reserved, length (4, big endian)
//   fixed      protocol version (2), reserved (2), called AE (16),
//              calling AE (16), reserved (32)                 -> 68 bytes;
//              each AE title printable, not all spaces
//   items      type, reserved, length (2, big endian), then the value:
//     10       application context name
//     20       presentation context: ID, 3 reserved, sub-items
//                30 abstract syntax (one), 40 transfer syntax (one or more)
//     50       user information: sub-items (51 max length, 52 class UID, ...)
//   Other item types are skipped by length, as DCMTK skips them.
#include "serve/pdu.h"

#include <cstdint>
#include <cstdio>
#include <utility>
#include <vector>

namespace ich {

namespace {

struct Item {
  uint8_t type;
  size_t value, length;  // offset of the value in the PDU, its length
};

// The items laid end to end in [begin, end); false (and why) when one runs past end.
bool items(const std::string& p, size_t begin, size_t end, std::vector<Item>& out, std::string& why) {
  size_t at = begin;
  while (at < end) {
    if (end - at < 4) {
      why = "an item header cut short at byte " + std::to_string(at);
      return false;
    }
    const size_t len = size_t(uint8_t(p[at + 2])) << 8 | uint8_t(p[at + 3]);
    if (len > end - at - 4) {
      char b[120];
      std::snprintf(b, sizeof b, "item 0x%02x at byte %zu claims %zu bytes, %zu remain", uint8_t(p[at]), at, len,
                    end - at - 4);
      why = b;
      return false;
    }
    out.push_back({uint8_t(p[at]), at + 4, len});
    at += 4 + len;
  }
  return true;
}

bool uid_ok(const Item& i) { return i.length >= 1 && i.length <= 64; }

size_t u16(const std::string& p, size_t at) { return size_t(uint8_t(p[at])) << 8 | uint8_t(p[at + 1]); }

// A user information sub-item (PS3.7 D.3.3, PS3.8 D.1) whose inner lengths
// fit it. DCMTK 3.6.7 leaks the sub-item it allocated when an SOP Class
// Extended Negotiation sub-item's inner length does not fit.
std::string check_user_item(const std::string& p, const Item& u) {
  auto bad = [&](const char* what) {
    char b[120];
    std::snprintf(b, sizeof b, "user information sub-item 0x%02x at byte %zu: %s", u.type, u.value - 4, what);
    return std::string(b);
  };
  switch (u.type) {
    case 0x51:  // maximum length
      return u.length == 4 ? "" : bad("not 4 bytes");
    case 0x52:  // implementation class UID
      return uid_ok(u) ? "" : bad("not a UID of 1-64 bytes");
    case 0x54:  // SCP/SCU role selection: UID length, UID, SCU role, SCP role
      if (u.length < 4 || u16(p, u.value) == 0 || u16(p, u.value) > 64 || 2 + u16(p, u.value) + 2 != u.length)
        return bad("UID length and item length disagree");
      return "";
    case 0x56:  // SOP class extended negotiation: UID length, UID, application information
      if (u.length < 2 || u16(p, u.value) == 0 || u16(p, u.value) > 64 || 2 + u16(p, u.value) > u.length)
        return bad("UID length and item length disagree");
      return "";
    case 0x58: {  // user identity: type, response wanted, primary field, secondary field
      if (u.length < 6 || p[u.value] < 1 || p[u.value] > 5) return bad("not a user identity of a known type");
      const size_t primary = u16(p, u.value + 2);
      if (4 + primary + 2 > u.length || 4 + primary + 2 + u16(p, u.value + 4 + primary) != u.length)
        return bad("field lengths and item length disagree");
      return "";
    }
    case 0x59:
      return bad("a user identity answer (A-ASSOCIATE-AC only) in a request");
    default:  // asynchronous operations, version name, other sub-items: skipped by length
      return "";
  }
}

}  // namespace

std::string check_associate_rq(const std::string& p) {
  if (p.size() < 6 + 68 || uint8_t(p[0]) != 0x01) return "not an A-ASSOCIATE-RQ of at least 74 bytes";
  const size_t length = size_t(uint8_t(p[2])) << 24 | size_t(uint8_t(p[3])) << 16 | size_t(uint8_t(p[4])) << 8 | uint8_t(p[5]);
  if (length != p.size() - 6) return "the PDU length field says " + std::to_string(length) + " bytes";
  // The called and calling AE titles: 16 bytes of PS3.5's default
  // repertoire (no control character, no backslash), not all spaces. DCMTK
  // reads them up to a NUL, and an empty one later fails (and leaks) when it
  // builds the A-ASSOCIATE-AC.
  for (const auto& [at, name] : {std::pair<size_t, const char*>{10, "called"}, {26, "calling"}}) {
    bool blank = true;
    for (size_t k = at; k < at + 16; ++k) {
      const uint8_t c = uint8_t(p[k]);
      if (c < 0x20 || c > 0x7e || c == '\\') return std::string("the ") + name + " AE title has a byte outside PS3.5's default repertoire";
      blank = blank && c == ' ';
    }
    if (blank) return std::string("the ") + name + " AE title is all spaces";
  }
  std::vector<Item> top;
  std::string why;
  if (!items(p, 6 + 68, p.size(), top, why)) return why;
  int contexts = 0;
  for (const Item& it : top) {
    if (it.type == 0x10 && !uid_ok(it)) return "an application context name of " + std::to_string(it.length) + " bytes";
    if (it.type == 0x20) {
      ++contexts;
      if (it.length < 4) return "a presentation context item of " + std::to_string(it.length) + " bytes";
      std::vector<Item> sub;
      if (!items(p, it.value + 4, it.value + it.length, sub, why)) return why;
      int abstract = 0, transfer = 0;
      for (const Item& s : sub) {
        if (s.type != 0x30 && s.type != 0x40)
          return "presentation context " + std::to_string(uint8_t(p[it.value])) + " has a sub-item of type " +
                 std::to_string(s.type);
        if (!uid_ok(s)) return "a syntax UID of " + std::to_string(s.length) + " bytes in presentation context " +
                               std::to_string(uint8_t(p[it.value]));
        (s.type == 0x30 ? abstract : transfer) += 1;
      }
      if (abstract != 1 || transfer < 1)
        return "presentation context " + std::to_string(uint8_t(p[it.value])) + " has " + std::to_string(abstract) +
               " abstract and " + std::to_string(transfer) + " transfer syntaxes (expected 1 and at least 1)";
    }
    if (it.type == 0x50) {
      std::vector<Item> sub;
      if (!items(p, it.value, it.value + it.length, sub, why)) return why;
      for (const Item& u : sub) {
        why = check_user_item(p, u);
        if (!why.empty()) return why;
      }
    }
  }
  if (contexts == 0) return "no presentation context";
  return "";
}

}  // namespace ich
