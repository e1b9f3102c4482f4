// access.cpp: the allow-list (access.h).
#include "serve/access.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <cstring>
#include <fstream>

#include "engine/error.h"

namespace ich {

namespace {

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r") - b + 1);
}

// PS3.5 6.2: an AE title is 1-16 characters of the default repertoire
// without backslash or control characters, and not all spaces.
bool valid_aet(const std::string& a) {
  if (a.empty() || a.size() > 16) return false;
  for (unsigned char c : a)
    if (c < 0x20 || c > 0x7e || c == '\\') return false;
  return a.find_first_not_of(' ') != std::string::npos;
}

bool prefix_match(const IpAddress& net, int bits, const IpAddress& a) {
  int whole = bits / 8, rest = bits % 8;
  if (std::memcmp(net.bytes.data(), a.bytes.data(), size_t(whole)) != 0) return false;
  if (rest == 0) return true;
  const uint8_t mask = uint8_t(0xff << (8 - rest));
  return (net.bytes[size_t(whole)] & mask) == (a.bytes[size_t(whole)] & mask);
}

}  // namespace

bool parse_ip(const std::string& text, IpAddress& out) {
  out = IpAddress();
  in_addr v4;
  in6_addr v6;
  if (inet_pton(AF_INET, text.c_str(), &v4) == 1) {
    out.bytes[10] = out.bytes[11] = 0xff;
    std::memcpy(out.bytes.data() + 12, &v4, 4);
  } else if (inet_pton(AF_INET6, text.c_str(), &v6) == 1) {
    std::memcpy(out.bytes.data(), &v6, 16);
  } else {
    return false;
  }
  // An IPv4-mapped IPv6 address is named as the IPv4 address it is.
  static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  char buf[INET6_ADDRSTRLEN];
  if (std::memcmp(out.bytes.data(), mapped, 12) == 0) inet_ntop(AF_INET, out.bytes.data() + 12, buf, sizeof buf);
  else inet_ntop(AF_INET6, out.bytes.data(), buf, sizeof buf);
  out.text = buf;
  return true;
}

AllowEntry parse_allow_entry(const std::string& entry) {
  const size_t at = entry.rfind('@');
  ICH_CHECK(at != std::string::npos, "allow entry '", entry, "': expected AET@HOST (e.g. PACS@10.0.0.5)");
  AllowEntry e;
  e.aet = entry.substr(0, at);
  while (!e.aet.empty() && e.aet.back() == ' ') e.aet.pop_back();
  e.host = trim(entry.substr(at + 1));
  ICH_CHECK(valid_aet(e.aet), "allow entry '", entry, "': '", e.aet,
            "' is not an AE title (1-16 printable characters, no backslash)");
  ICH_CHECK(!e.host.empty(), "allow entry '", entry, "': no host after '@' (an address, a CIDR block, a name or *)");
  if (e.host == "*") {
    e.any_host = true;
    return e;
  }
  const size_t slash = e.host.find('/');
  IpAddress a;
  if (slash != std::string::npos) {
    const std::string addr = e.host.substr(0, slash), bits = e.host.substr(slash + 1);
    ICH_CHECK(parse_ip(addr, a), "allow entry '", entry, "': '", addr, "' is not an IP address");
    const bool v4 = addr.find(':') == std::string::npos;
    int n = -1;
    try {
      size_t used = 0;
      n = std::stoi(bits, &used);
      if (used != bits.size()) n = -1;
    } catch (const std::exception&) {
    }
    ICH_CHECK(n >= 0 && n <= (v4 ? 32 : 128), "allow entry '", entry, "': prefix length '", bits, "' is not 0-",
              v4 ? 32 : 128);
    e.networks.push_back(a);
    e.prefix.push_back(v4 ? n + 96 : n);
    return e;
  }
  if (parse_ip(e.host, a)) {
    e.networks.push_back(a);
    e.prefix.push_back(128);
    return e;
  }
  // A host name: every address it resolves to now (re-read on SIGHUP).
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const int rc = getaddrinfo(e.host.c_str(), nullptr, &hints, &res);
  ICH_CHECK(rc == 0, "allow entry '", entry, "': host '", e.host, "' does not resolve (", gai_strerror(rc), ")");
  for (addrinfo* r = res; r; r = r->ai_next) {
    char buf[INET6_ADDRSTRLEN] = "";
    if (r->ai_family == AF_INET) inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(r->ai_addr)->sin_addr, buf, sizeof buf);
    else if (r->ai_family == AF_INET6) inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(r->ai_addr)->sin6_addr, buf, sizeof buf);
    if (buf[0] && parse_ip(buf, a)) {
      e.networks.push_back(a);
      e.prefix.push_back(128);
    }
  }
  freeaddrinfo(res);
  ICH_CHECK(!e.networks.empty(), "allow entry '", entry, "': host '", e.host, "' has no IP address");
  return e;
}

bool AccessPolicy::admits(const std::string& calling_aet, const IpAddress& peer) const {
  if (allow_any) return true;
  for (const AllowEntry& e : entries) {
    if (e.aet != calling_aet) continue;
    if (e.any_host) return true;
    for (size_t i = 0; i < e.networks.size(); ++i)
      if (prefix_match(e.networks[i], e.prefix[i], peer)) return true;
  }
  return false;
}

std::string AccessPolicy::describe() const {
  if (allow_any) return "any peer (--allow-any)";
  if (entries.empty()) return "nobody (no --allow or --allow-file entry)";
  std::string s = std::to_string(entries.size()) + (entries.size() == 1 ? " entry (" : " entries (");
  for (size_t i = 0; i < entries.size(); ++i) s += (i ? ", " : "") + entries[i].aet + "@" + entries[i].host;
  return s + ")";
}

std::vector<AllowEntry> read_allow_file(const std::string& path) {
  std::ifstream in(path);
  ICH_CHECK(in.good(), path, ": cannot read the allow file");
  std::vector<AllowEntry> out;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    const size_t hash = line.find('#');
    if (hash != std::string::npos) line = line.substr(0, hash);
    line = trim(line);
    if (line.empty()) continue;
    try {
      out.push_back(parse_allow_entry(line));
    } catch (const std::exception& e) {
      throw Error(path + ":" + std::to_string(n) + ": " + e.what());
    }
  }
  ICH_CHECK(!in.bad(), path, ": read error");
  return out;
}

}  // namespace ich
