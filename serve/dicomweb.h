// dicomweb.h: DICOMweb's STOW-RS (PS3.18 10.5) both ways, on cpp-httplib.
//
// Sending (--dest-stow URL): the results of a study in one POST of
// multipart/related; type="application/dicom", each part a PS3.10 file as
// written, so a resend stores nothing twice (the archive keeps one instance
// per SOP Instance UID). 200 is success; 202 is success only when the
// response's Failed SOP Sequence is empty (warnings pass); anything else,
// or no answer, is one line naming the URL and the status.
//
// Receiving (POST /studies on --http): the parts of a request are handed
// one by one to the same StoreSink as C-STORE's instances, as one
// association of the peer "STOW@<address>" (admitted by the allow-list like
// an AE title), and the answer is the PS3.18 response: 200 when every part
// was stored, 202 when some were, 409 when none; 415 for another media type,
// 400 for a body that is not multipart/related, 503 while studies wait
// (--max-pending) and 403 for a peer the allow-list does not name.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/error.h"

namespace ich {

// An http(s) URL split as the client takes it; throws one line naming the
// option for another scheme, no host, or a user or password in it (they
// would show in ps and logs: they belong in the auth file).
struct HttpUrl {
  std::string origin, path;  // "http://host:port", "/dicom-web/studies"
};
HttpUrl parse_http_url(const std::string& url, const std::string& option);

// One POST; returns the status and body of the answer; throws one line
// naming `what` when there is none (refused, timed out, TLS failed).
std::pair<int, std::string> http_post(const std::string& url, const std::string& what, const std::string& auth,
                                      const std::string& ca_file, int timeout_s, const std::string& content_type,
                                      const std::string& accept, const std::string& body);

// How to authenticate to an archive, read from a file (never the command
// line, where ps and shell histories show it): one line, "bearer TOKEN" or
// "basic USER:PASSWORD". Returns the Authorization header's value.
std::string read_http_auth_file(const std::string& path, const std::string& option);

struct StowDestination {
  std::string url;          // http(s)://host[:port]/path-to/studies
  std::string auth;         // the Authorization header ("" for none)
  std::string ca_file;      // https: the CA bundle to verify the archive with ("" : the system's)
  int timeout_s = 30;
};
std::string where(const StowDestination& d);  // the URL without user information

// POSTs the files as one STOW-RS request; throws one line unless every one was stored.
void stow_files(const StowDestination& d, const std::vector<std::string>& files);

// The body of a STOW-RS request: each file a part, in order.
std::string multipart_related(const std::vector<std::string>& part_bodies, const std::string& boundary);

// Another media type than application/dicom parts in multipart/related:
// the request's, or a part's (HTTP 415 for the receiver).
struct UnsupportedMediaType : Error {
  using Error::Error;
};
// The parts of a multipart/related body whose Content-Type header is
// content_type; throws one line (what is wrong, where) for a body that is
// not one, a boundary missing or too long, more than max_parts parts.
// Each part's own headers are checked for type application/dicom (or none);
// the media type errors are UnsupportedMediaType.
std::vector<std::string_view> parse_multipart_related(const std::string& content_type, std::string_view body,
                                                      size_t max_parts = 100000);

// One part's outcome, for the response.
struct StowOutcome {
  std::string sop_class_uid, sop_uid;
  uint16_t status = 0;  // 0 stored; else the failure reason (PS3.18 Table 10.5.3-2: 0xA700, 0xC000, ...)
};
// The PS3.18 response body (DICOM JSON) and its HTTP status.
std::pair<int, std::string> stow_response(const std::vector<StowOutcome>& outcomes);

}  // namespace ich
