// json.cpp: json_quote (json.h).
#include "io/json.h"

#include <cstdio>

namespace ich {

std::string json_quote(const std::string& s) {
  std::string o = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') o += std::string("\\") + c;
    else if (static_cast<unsigned char>(c) < 0x20) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", c);
      o += b;
    } else o += c;
  }
  return o + "\"";
}

}  // namespace ich
