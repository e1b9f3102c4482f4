// access.h: who may open an association with ich-serve (docs/serve.md,
// "Hardening"). A peer is admitted when its calling AE title and the address
// it connects from match one entry of the allow-list:
//
//   AET@HOST     HOST an IPv4/IPv6 address, a CIDR block (10.1.2.0/24), a
//                host name (resolved when the list is read, to every
//                address it has) or * (any host)
//
// The same entries come from --allow (repeatable) and from --allow-file (one
// entry a line, # comments), which is read again on SIGHUP. "--allow-any"
// admits everybody (a lab bench). An empty list admits nobody: the default.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace ich {

// An address as 16 bytes (IPv4 as ::ffff:a.b.c.d, as the kernel maps it).
struct IpAddress {
  std::array<uint8_t, 16> bytes{};
  std::string text;  // as the peer is named in logs and audit records
};
// Parses "10.0.0.1", "::1", "::ffff:10.0.0.1"; false when it is not an address.
bool parse_ip(const std::string& text, IpAddress& out);

struct AllowEntry {
  std::string aet;                  // exact, case-sensitive (PS3.5 AE VR), trailing spaces trimmed
  std::string host;                 // as written
  bool any_host = false;
  std::vector<IpAddress> networks;  // with prefix lengths in prefix
  std::vector<int> prefix;          // bits, 0..128 (IPv4 prefixes are stored +96)
};

// One "AET@HOST"; throws naming the entry and what is wrong with it.
AllowEntry parse_allow_entry(const std::string& entry);

struct AccessPolicy {
  bool allow_any = false;
  std::vector<AllowEntry> entries;
  // Whether calling_aet may connect from peer.
  bool admits(const std::string& calling_aet, const IpAddress& peer) const;
  std::string describe() const;  // "3 entries (PACS@10.0.0.5, ...)" or "any peer"
};

// Reads an allow file: entries and blank/# lines; throws naming file:line.
std::vector<AllowEntry> read_allow_file(const std::string& path);

// The policy in force, swapped whole on SIGHUP while associations read it.
class PolicyHolder {
 public:
  explicit PolicyHolder(AccessPolicy p) : p_(std::make_shared<AccessPolicy>(std::move(p))) {}
  std::shared_ptr<const AccessPolicy> get() const {
    std::lock_guard<std::mutex> l(mu_);
    return p_;
  }
  void set(AccessPolicy p) {
    auto n = std::make_shared<AccessPolicy>(std::move(p));
    std::lock_guard<std::mutex> l(mu_);
    p_ = std::move(n);
  }

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const AccessPolicy> p_;
};

}  // namespace ich
