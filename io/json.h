// json.h: JSON string literals for what ich-serve writes by hand
// (results.jsonl, audit records, /readyz): quotes, backslashes and control
// characters escaped (RFC 8259 7). Bytes >= 0x80 pass through: callers
// give UTF-8, and text from the network (AE titles) is made ASCII first.
#pragma once
#include <string>

namespace ich {

std::string json_quote(const std::string& s);

}  // namespace ich
