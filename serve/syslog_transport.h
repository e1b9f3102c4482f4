// syslog_transport.h: the connection ich-serve's audit records travel on to
// a syslog collector (an IHE ATNA Audit Record Repository): TCP with RFC
// 6587 octet counting, or TLS as RFC 5425 (updated by RFC 9662) and ATNA's
// Record Audit Event [ITI-20] ask:
//
//   --audit-syslog-tls-ca    TLS on: the collector's certificate must chain to
//                            this CA and name the --audit-syslog host (a DNS
//                            name or IP address in its subjectAltName, as RFC
//                            6125 and 5425 say); TLS 1.2 or newer, BCP 195's
//                            AEAD cipher suites on 1.2
//   --audit-syslog-tls-cert  the certificate the node presents (ATNA: mutual
//   --audit-syslog-tls-key   authentication; a collector may require it)
//
// One thread (the audit trail's sender) uses a connection; a collector that
// accepts and then says nothing fails the handshake after the timeout rather
// than holding the sender.
#pragma once
#include <string>

struct ssl_ctx_st;
struct ssl_st;

namespace ich {

struct SyslogTls {
  std::string ca, cert, key;  // PEM files; TLS is on when ca is set
};

class SyslogConnection {
 public:
  // Loads the TLS files (throws one line naming the file or option at fault).
  SyslogConnection(std::string host, int port, const SyslogTls& tls, int timeout_s = 5);
  ~SyslogConnection();
  SyslogConnection(const SyslogConnection&) = delete;
  SyslogConnection& operator=(const SyslogConnection&) = delete;

  // Connects, and with TLS completes a verified handshake, unless connected.
  // false, with why (the system's or OpenSSL's reason), when it cannot.
  bool connect(std::string& why);
  // Sends all of bytes; false (and closed) when the collector went away.
  bool send_all(const std::string& bytes);
  void close();  // with TLS's close_notify
  bool connected() const { return fd_ >= 0; }
  // "TLSv1.3" etc. when connected over TLS, "TCP" otherwise.
  std::string protocol() const;
  std::string where() const { return host_ + ":" + std::to_string(port_); }

 private:
  void drop();  // after an error: no close_notify (OpenSSL forbids a shutdown after a fatal error)
  std::string host_;
  int port_;
  int timeout_s_;
  ssl_ctx_st* ctx_ = nullptr;  // null: plain TCP
  ssl_st* ssl_ = nullptr;
  int fd_ = -1;
};

}  // namespace ich
