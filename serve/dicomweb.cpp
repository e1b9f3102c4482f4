// dicomweb.cpp: STOW-RS both ways (dicomweb.h).
#include "serve/dicomweb.h"

#include <httplib.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

#include "engine/error.h"
#include "io/json.h"

namespace ich {

namespace {

std::string base64(const std::string& in) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const uint32_t v = uint32_t(uint8_t(in[i])) << 16 | uint32_t(uint8_t(in[i + 1])) << 8 | uint8_t(in[i + 2]);
    for (int k = 3; k >= 0; --k) out += t[(v >> (6 * k)) & 63];
  }
  if (i + 1 == in.size()) {
    const uint32_t v = uint32_t(uint8_t(in[i])) << 16;
    out += t[(v >> 18) & 63], out += t[(v >> 12) & 63], out += "==";
  } else if (i + 2 == in.size()) {
    const uint32_t v = uint32_t(uint8_t(in[i])) << 16 | uint32_t(uint8_t(in[i + 1])) << 8;
    out += t[(v >> 18) & 63], out += t[(v >> 12) & 63], out += t[(v >> 6) & 63], out += '=';
  }
  return out;
}

std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string trim(const std::string& s) {
  size_t a = 0, b = s.size();
  while (a < b && std::isspace(static_cast<unsigned char>(s[a]))) ++a;
  while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1]))) --b;
  return s.substr(a, b - a);
}

// The value of a parameter of a Content-Type header (quoted or not), "" when absent.
std::string header_param(const std::string& header, const std::string& name) {
  const std::string h = lower(header);
  size_t at = 0;
  while ((at = h.find(';', at)) != std::string::npos) {
    ++at;
    size_t k = at;
    while (k < h.size() && std::isspace(static_cast<unsigned char>(h[k]))) ++k;
    if (h.compare(k, name.size(), name) != 0) continue;
    k += name.size();
    while (k < h.size() && std::isspace(static_cast<unsigned char>(h[k]))) ++k;
    if (k >= h.size() || h[k] != '=') continue;
    ++k;
    while (k < h.size() && std::isspace(static_cast<unsigned char>(h[k]))) ++k;
    if (k < h.size() && header[k] == '"') {
      const size_t end = header.find('"', k + 1);
      if (end == std::string::npos) return "";
      return header.substr(k + 1, end - k - 1);
    }
    size_t end = k;
    while (end < header.size() && header[end] != ';' && !std::isspace(static_cast<unsigned char>(header[end]))) ++end;
    return header.substr(k, end - k);
  }
  return "";
}

}  // namespace

std::string read_http_auth_file(const std::string& path, const std::string& option) {
  std::ifstream in(path);
  ICH_CHECK(in.good(), option, ": cannot read ", path);
  std::string line;
  std::getline(in, line);
  line = trim(line);
  const size_t space = line.find(' ');
  const std::string kind = lower(line.substr(0, space)), value = space == std::string::npos ? "" : trim(line.substr(space));
  ICH_CHECK(!value.empty() && (kind == "bearer" || (kind == "basic" && value.find(':') != std::string::npos)), option,
            " ", path, ": expected one line 'bearer TOKEN' or 'basic USER:PASSWORD'");
  return kind == "bearer" ? "Bearer " + value : "Basic " + base64(value);
}

std::string where(const StowDestination& d) { return "STOW-RS " + d.url; }

HttpUrl parse_http_url(const std::string& url, const std::string& option) {
  const size_t sep = url.find("://");
  const std::string scheme = sep == std::string::npos ? "" : lower(url.substr(0, sep));
  ICH_CHECK(scheme == "http" || scheme == "https", option, " '", url, "': expected an http:// or https:// URL");
  const size_t start = sep + 3, slash = url.find('/', start);
  const std::string authority = url.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
  ICH_CHECK(authority.find('@') == std::string::npos, option, ": no user or password in the URL (they would show in ",
            "ps and logs); put them in the file of its -auth option");
  ICH_CHECK(!authority.empty(), option, " '", url, "': no host");
  return {scheme + "://" + authority, slash == std::string::npos ? "/" : url.substr(slash)};
}

std::pair<int, std::string> http_post(const std::string& url, const std::string& what, const std::string& auth,
                                      const std::string& ca_file, int timeout_s, const std::string& content_type,
                                      const std::string& accept, const std::string& body) {
  const HttpUrl u = parse_http_url(url, what);
  httplib::Client client(u.origin);
  client.set_connection_timeout(timeout_s, 0);
  client.set_read_timeout(timeout_s, 0);
  client.set_write_timeout(timeout_s, 0);
  if (!ca_file.empty()) client.set_ca_cert_path(ca_file.c_str());
  client.enable_server_certificate_verification(true);
  httplib::Headers headers{{"Accept", accept}};
  if (!auth.empty()) headers.emplace("Authorization", auth);
  const httplib::Result r = client.Post(u.path.c_str(), headers, body, content_type.c_str());
  ICH_CHECK(r, what, " ", url, ": no answer (", httplib::to_string(r.error()), ")");
  return {r->status, r->body};
}

std::string multipart_related(const std::vector<std::string>& parts, const std::string& boundary) {
  std::string body;
  size_t size = 0;
  for (const std::string& p : parts) size += p.size() + boundary.size() + 64;
  body.reserve(size + boundary.size() + 8);
  for (const std::string& p : parts) {
    body += "--" + boundary + "\r\nContent-Type: application/dicom\r\n\r\n";
    body += p;
    body += "\r\n";
  }
  body += "--" + boundary + "--\r\n";
  return body;
}

void stow_files(const StowDestination& d, const std::vector<std::string>& files) {
  std::vector<std::string> parts;
  for (const std::string& f : files) {
    std::ifstream in(f, std::ios::binary);
    ICH_CHECK(in.good(), where(d), ": cannot read ", f);
    std::ostringstream s;
    s << in.rdbuf();
    parts.push_back(s.str());
  }
  // a boundary no part contains
  std::string boundary = "ich-stow-boundary";
  for (int k = 0; std::any_of(parts.begin(), parts.end(), [&](const std::string& p) { return p.find(boundary) != std::string::npos; }); ++k)
    boundary = "ich-stow-boundary-" + std::to_string(k);
  const std::string body = multipart_related(parts, boundary);
  const auto [status, answer] =
      http_post(d.url, "STOW-RS", d.auth, d.ca_file, d.timeout_s,
                "multipart/related; type=\"application/dicom\"; boundary=" + boundary, "application/dicom+json", body);
  bool failed = status != 200 && status != 202;
  if (status == 202) {  // accepted: every part must be out of the Failed SOP Sequence (00081198)
    const size_t at = answer.find("\"00081198\"");
    if (at != std::string::npos) {
      const size_t value = answer.find("\"Value\"", at), open = answer.find('[', value == std::string::npos ? at : value);
      size_t k = open == std::string::npos ? answer.size() : open + 1;
      while (k < answer.size() && std::isspace(static_cast<unsigned char>(answer[k]))) ++k;
      failed = value != std::string::npos && k < answer.size() && answer[k] != ']';
    }
  }
  ICH_CHECK(!failed, where(d), ": HTTP ", status, " for ", files.size(), " objects: ", answer.substr(0, 300));
}

std::vector<std::string_view> parse_multipart_related(const std::string& content_type, std::string_view body,
                                                      size_t max_parts) {
  const std::string media = lower(trim(content_type.substr(0, content_type.find(';'))));
  if (media != "multipart/related")
    throw UnsupportedMediaType("STOW-RS: Content-Type '" + content_type.substr(0, 200) + "' is not multipart/related");
  const std::string type = lower(header_param(content_type, "type"));
  if (!type.empty() && type != "application/dicom")
    throw UnsupportedMediaType("STOW-RS: parts of type '" + type.substr(0, 100) + "': only application/dicom is taken");
  const std::string boundary = header_param(content_type, "boundary");
  // RFC 2046 allows 70 characters; some clients (Orthanc's) send longer ones, taken up to 200
  ICH_CHECK(!boundary.empty() && boundary.size() <= 200, "STOW-RS: no boundary (or one over 200 characters) in the ",
            "Content-Type '", content_type.substr(0, 300), "'");
  const std::string delim = "--" + boundary;
  std::vector<std::string_view> parts;
  size_t at = body.find(delim);
  ICH_CHECK(at != std::string_view::npos, "STOW-RS: the body has no boundary '", boundary, "'");
  while (true) {
    at += delim.size();
    if (body.substr(at, 2) == "--") break;  // the close delimiter
    // the delimiter line ends with CRLF (transport padding before it allowed)
    const size_t eol = body.find("\r\n", at);
    ICH_CHECK(eol != std::string_view::npos, "STOW-RS: part ", parts.size() + 1, ": truncated after its boundary");
    const size_t headers_end = body.find("\r\n\r\n", eol);
    const bool no_headers = body.substr(eol, 4) == "\r\n\r\n";
    const size_t content = no_headers ? eol + 4 : headers_end == std::string_view::npos ? headers_end : headers_end + 4;
    ICH_CHECK(content != std::string_view::npos, "STOW-RS: part ", parts.size() + 1, ": its headers never end");
    if (!no_headers) {
      const std::string headers = lower(std::string(body.substr(eol + 2, headers_end - eol - 2)));
      const size_t ct = headers.find("content-type:");
      if (ct != std::string::npos) {
        const size_t end = headers.find("\r\n", ct);
        const std::string v = trim(headers.substr(ct + 13, end == std::string::npos ? std::string::npos : end - ct - 13));
        if (v.rfind("application/dicom", 0) != 0 ||
            (v.size() > 17 && v[17] != ';' && !std::isspace(static_cast<unsigned char>(v[17]))))
          throw UnsupportedMediaType("STOW-RS: part " + std::to_string(parts.size() + 1) + " is '" + v.substr(0, 100) +
                                     "', not application/dicom");
      }
    }
    const size_t next = body.find("\r\n" + delim, content);
    ICH_CHECK(next != std::string_view::npos, "STOW-RS: part ", parts.size() + 1, ": no boundary after it (truncated body)");
    parts.push_back(body.substr(content, next - content));
    ICH_CHECK(parts.size() <= max_parts, "STOW-RS: more than ", max_parts, " parts");
    at = next + 2;
  }
  ICH_CHECK(!parts.empty(), "STOW-RS: no part before the close delimiter");
  return parts;
}

std::pair<int, std::string> stow_response(const std::vector<StowOutcome>& outcomes) {
  std::string ok, failed;
  size_t stored = 0;
  char reason[8];
  for (const StowOutcome& o : outcomes) {
    const std::string item = "{\"00081150\":{\"vr\":\"UI\",\"Value\":[" + json_quote(o.sop_class_uid) +
                             "]},\"00081155\":{\"vr\":\"UI\",\"Value\":[" + json_quote(o.sop_uid) + "]}";
    if (o.status == 0) {
      ok += std::string(stored ? "," : "") + item + "}";
      ++stored;
    } else {
      std::snprintf(reason, sizeof reason, "%u", unsigned(o.status));
      failed += std::string(failed.empty() ? "" : ",") + item + ",\"00081197\":{\"vr\":\"US\",\"Value\":[" + reason + "]}}";
    }
  }
  std::string body = "{";
  if (!ok.empty()) body += "\"00081199\":{\"vr\":\"SQ\",\"Value\":[" + ok + "]}";
  if (!failed.empty()) body += std::string(ok.empty() ? "" : ",") + "\"00081198\":{\"vr\":\"SQ\",\"Value\":[" + failed + "]}";
  body += "}\n";
  const int status = stored == outcomes.size() ? 200 : stored > 0 ? 202 : 409;
  return {status, body};
}

}  // namespace ich
