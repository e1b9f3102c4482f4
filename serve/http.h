// http.h: ich-serve's HTTP side on --http ADDR:PORT (cpp-httplib, Debian's
// libcpp-httplib-dev: a maintained, small, threaded server already packaged
// for the distribution we ship on; its keep-alive, read and write timeouts
// and a request size limit are set here):
//   GET /healthz   200 "ok" while the process serves
//   GET /readyz    200 when every check passes, else 503; a JSON body names
//                  each check and its state (models, work folder, destination)
//   GET /metrics   Prometheus' text format (serve/metrics.h)
//   POST /studies  STOW-RS, only when ich-serve --stow is given
// Anything else is 404. Bound to loopback unless an address is given:
// health and metrics are for the host's own monitoring, not for the
// hospital network; STOW-RS peers are admitted by the allow-list (STOW@HOST).
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace ich {

struct ReadyCheck {
  std::string name;
  bool ok = false;
  std::string detail;
};

struct HttpHandlers {
  std::function<std::string()> metrics;
  std::function<std::vector<ReadyCheck>()> ready;
  // POST /studies (STOW-RS, serve/dicomweb.h): the peer's address, the
  // request's Content-Type and body -> the HTTP status and the DICOM JSON
  // answer. Null: no such route (404).
  using Stow = std::function<std::pair<int, std::string>(const std::string& peer, const std::string& content_type,
                                                         const std::string& body)>;
  Stow stow;
  // Asked before a POST /studies body is read: {0, ""} admits the peer,
  // anything else is the answer (403 not on the allow-list, 503 busy), sent
  // without reading the body. Null: every peer is admitted to the body.
  std::function<std::pair<int, std::string>(const std::string& peer)> stow_admit;
  size_t stow_max_bytes = 0;  // the largest body taken (413 above it)
};

// What one HTTP port holds at most, whatever its peers do (docs/serve.md,
// "Hardening"): connections served at once, accepted and waiting for a
// server thread (past that the accepting thread waits and new peers wait in
// the kernel's backlog: no descriptor of the process each), and STOW-RS
// bodies held in memory at once (503 with Retry-After past that).
constexpr int kHttpThreads = 8;
constexpr int kHttpQueued = 16;
constexpr int kStowBodiesAtOnce = 2;

// "8080" (loopback), "127.0.0.1:8080", "[::1]:8080", "0.0.0.0:8080"; throws on others.
std::pair<std::string, int> parse_http_address(const std::string& spec);

class HttpServer {
 public:
  // Binds (throws one line when it cannot) and serves on a thread of its own.
  HttpServer(const std::string& spec, HttpHandlers h);
  // Stops: shuts down every connection on the port (a peer trickling its
  // request a byte at a time would hold a server thread for hours), joins.
  ~HttpServer();
  int port() const { return port_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace ich
