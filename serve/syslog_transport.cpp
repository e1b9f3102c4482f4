// syslog_transport.cpp: TCP or TLS to the audit collector (syslog_transport.h).
#include "serve/syslog_transport.h"

#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "engine/error.h"
#include "serve/access.h"

namespace ich {

namespace {

// The newest error OpenSSL queued on this thread, or "" (the queue is emptied).
std::string openssl_reason() {
  std::string last;
  while (const unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    last = buf;
  }
  return last;
}

// Reads what the collector sent without waiting (a collector sends nothing
// but TLS 1.3's session tickets, or an alert when it refuses us): false when
// it closed the connection or refused, with why.
bool still_open(int fd, ssl_st* ssl, std::string& why) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, 0) <= 0) return true;
  const int flags = ::fcntl(fd, F_GETFL);
  ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  bool open = true;
  char buf[512];
  for (;;) {
    if (ssl) {
      ERR_clear_error();
      const int n = SSL_read(ssl, buf, sizeof buf);
      if (n > 0) continue;
      const int e = SSL_get_error(ssl, n);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) break;
      const std::string r = openssl_reason();
      why = "the collector ended the TLS connection" + (r.empty() ? std::string() : ": " + r);
      open = false;
      break;
    }
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n > 0) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) break;
    why = n == 0 ? "the collector closed the connection" : std::strerror(errno);
    open = false;
    break;
  }
  ::fcntl(fd, F_SETFL, flags);
  return open;
}

}  // namespace

SyslogConnection::SyslogConnection(std::string host, int port, const SyslogTls& tls, int timeout_s)
    : host_(std::move(host)), port_(port), timeout_s_(timeout_s) {
  ICH_CHECK(tls.cert.empty() == tls.key.empty(),
            "--audit-syslog-tls-cert and --audit-syslog-tls-key go together (a certificate and its private key)");
  if (tls.ca.empty()) {
    ICH_CHECK(tls.cert.empty(), "--audit-syslog-tls-cert needs --audit-syslog-tls-ca (the CA of the collector's certificate)");
    return;
  }
  for (const std::string* p : {&tls.ca, &tls.cert, &tls.key})
    ICH_CHECK(p->empty() || std::filesystem::is_regular_file(*p), *p, ": no such file (--audit-syslog-tls-* options)");
  ctx_ = SSL_CTX_new(TLS_client_method());
  ICH_CHECK(ctx_ != nullptr, "--audit-syslog-tls-ca: cannot create a TLS context (OpenSSL): ", openssl_reason());
  try {
    // RFC 9662 and BCP 195: TLS 1.2 or newer; on 1.2 only forward-secret AEAD suites.
    ICH_CHECK(SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION) == 1, "--audit-syslog-tls-ca: cannot require TLS 1.2");
    ICH_CHECK(SSL_CTX_set_cipher_list(ctx_, "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20") == 1,
              "--audit-syslog-tls-ca: BCP 195's cipher suites are not available: ", openssl_reason());
    // An encrypted key fails here instead of asking on a terminal.
    SSL_CTX_set_default_passwd_cb(ctx_, [](char*, int, int, void*) { return 0; });
    ICH_CHECK(SSL_CTX_load_verify_locations(ctx_, tls.ca.c_str(), nullptr) == 1, tls.ca,
              ": cannot load the CA certificate (PEM): ", openssl_reason());
    if (!tls.cert.empty()) {
      ICH_CHECK(SSL_CTX_use_certificate_chain_file(ctx_, tls.cert.c_str()) == 1, tls.cert,
                ": cannot load the certificate (PEM): ", openssl_reason());
      ICH_CHECK(SSL_CTX_use_PrivateKey_file(ctx_, tls.key.c_str(), SSL_FILETYPE_PEM) == 1, tls.key,
                ": cannot load the private key (PEM, unencrypted): ", openssl_reason());
      ICH_CHECK(SSL_CTX_check_private_key(ctx_) == 1, tls.key, " does not belong to the certificate ", tls.cert);
    }
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
  } catch (...) {
    SSL_CTX_free(ctx_);
    throw;
  }
}

SyslogConnection::~SyslogConnection() {
  close();
  if (ctx_) SSL_CTX_free(ctx_);
}

void SyslogConnection::close() {
  if (ssl_) SSL_shutdown(ssl_);  // close_notify, best effort: the socket's send timeout bounds it
  drop();
}

void SyslogConnection::drop() {
  if (ssl_) SSL_free(ssl_);
  ssl_ = nullptr;
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

std::string SyslogConnection::protocol() const { return ssl_ ? SSL_get_version(ssl_) : "TCP"; }

bool SyslogConnection::connect(std::string& why) {
  if (fd_ >= 0) return true;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const int g = getaddrinfo(host_.c_str(), std::to_string(port_).c_str(), &hints, &res);
  if (g != 0) {
    why = std::string("cannot resolve the host: ") + gai_strerror(g);
    return false;
  }
  why = "no address";
  for (addrinfo* r = res; r && fd_ < 0; r = r->ai_next) {
    fd_ = ::socket(r->ai_family, r->ai_socktype | SOCK_CLOEXEC, r->ai_protocol);
    if (fd_ < 0) continue;
    // Bounds connect, every send and the handshake's reads: a silent collector cannot hold the sender.
    timeval tv{timeout_s_, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (::connect(fd_, r->ai_addr, r->ai_addrlen) != 0) {
      why = std::strerror(errno);
      ::close(fd_);
      fd_ = -1;
    }
  }
  freeaddrinfo(res);
  if (fd_ < 0) return false;
  if (!ctx_) return true;

  ERR_clear_error();
  ssl_ = SSL_new(ctx_);
  bool named = ssl_ && SSL_set_fd(ssl_, fd_) == 1;
  if (named) {
    // The collector's certificate must name the host we were told to reach.
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (IpAddress ip; parse_ip(host_, ip)) {  // an address: the certificate must carry it as an iPAddress
      named = X509_VERIFY_PARAM_set1_ip_asc(param, host_.c_str()) == 1;
    } else {
      named = SSL_set1_host(ssl_, host_.c_str()) == 1 && SSL_set_tlsext_host_name(ssl_, host_.c_str()) == 1;
    }
  }
  if (!named) {
    why = "cannot set up TLS (OpenSSL): " + openssl_reason();
    drop();
    return false;
  }
  const int c = SSL_connect(ssl_);
  if (c != 1) {
    const long verify = SSL_get_verify_result(ssl_);
    const int err = SSL_get_error(ssl_, c);
    const std::string reason = openssl_reason();
    if (verify != X509_V_OK) {
      why = std::string("TLS: the collector's certificate is not trusted: ") + X509_verify_cert_error_string(verify);
    } else if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
      why = "TLS: no handshake within " + std::to_string(timeout_s_) + " s";
    } else if (!reason.empty()) {
      why = "TLS handshake failed: " + reason;
    } else {
      why = "TLS handshake failed: the collector closed the connection";
    }
    drop();
    return false;
  }
  // TLS 1.3 finishes the client's side before the collector has checked the
  // node's certificate: a refusal comes as an alert just after. Give it a
  // moment, so that a refused node says so instead of sending into the void.
  pollfd p{fd_, POLLIN, 0};
  ::poll(&p, 1, 300);
  if (!still_open(fd_, ssl_, why)) {
    drop();
    return false;
  }
  return true;
}

bool SyslogConnection::send_all(const std::string& bytes) {
  if (fd_ < 0) return false;
  std::string why;
  if (!still_open(fd_, ssl_, why)) {  // the collector restarted: send on a new connection, not into a dead one
    drop();
    return false;
  }
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t w;
    if (ssl_) {
      ERR_clear_error();
      const int n = SSL_write(ssl_, bytes.data() + off, int(bytes.size() - off));
      w = n;
    } else {
      w = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    }
    if (w <= 0) break;
    off += size_t(w);
  }
  if (off < bytes.size()) {
    drop();
    return false;
  }
  return true;
}

}  // namespace ich
