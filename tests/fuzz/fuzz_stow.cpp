// fuzz_stow: what a peer sends to ich-serve's POST /studies (STOW-RS,
// serve/dicomweb.h): the input's first line is the request's Content-Type,
// the rest its body. The multipart/related parser must take anything
// without a crash, a hang or undefined behaviour, and every part it returns
// must lie inside the body; the response is built for as many parts. Each
// part's bytes then go where a C-STORE instance goes (fuzz_dicom reads
// those). Seeds (scripts/fuzz.sh): a request of two parts, one of a DICOM file.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "engine/error.h"
#include "serve/dicomweb.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string in(reinterpret_cast<const char*>(data), size);
  const size_t eol = in.find('\n');
  const std::string type = in.substr(0, eol);
  const std::string body = eol == std::string::npos ? std::string() : in.substr(eol + 1);
  try {
    const auto parts = ich::parse_multipart_related(type, body, 1000);
    std::vector<ich::StowOutcome> outcomes;
    for (const std::string_view p : parts) {
      if (p.data() < body.data() || p.data() + p.size() > body.data() + body.size()) std::abort();
      outcomes.push_back({"1.2.840.10008.5.1.4.1.1.2", std::to_string(p.size()), uint16_t(p.size() % 2 ? 0xC000 : 0)});
    }
    (void)ich::stow_response(outcomes);
  } catch (const ich::Error&) {
  }
  return 0;
}
