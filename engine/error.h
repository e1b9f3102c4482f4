// error.h: one exception type for the engine, with a message that names what
// failed and where. Apps catch it at main() and print it as one line.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace ich {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

namespace detail {
template <class... A> std::string cat(A&&... a) {
  std::ostringstream s;
  (s << ... << a);
  return s.str();
}
}  // namespace detail

}  // namespace ich

// ICH_CHECK(cond, parts...) throws ich::Error("parts...") when cond is false.
#define ICH_CHECK(cond, ...)                                              \
  do {                                                                    \
    if (!(cond)) throw ::ich::Error(::ich::detail::cat(__VA_ARGS__));     \
  } while (0)
