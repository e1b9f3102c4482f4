// http.cpp: /healthz, /readyz and /metrics on cpp-httplib (http.h).
#include "serve/http.h"

#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <mutex>
#include <thread>

#include "engine/error.h"
#include "io/json.h"

namespace ich {

std::pair<std::string, int> parse_http_address(const std::string& spec) {
  std::string host = "127.0.0.1", port = spec;
  if (!spec.empty() && spec[0] == '[') {
    const size_t close = spec.find(']');
    ICH_CHECK(close != std::string::npos && close + 1 < spec.size() && spec[close + 1] == ':', "--http '", spec,
              "': expected [IPv6]:PORT");
    host = spec.substr(1, close - 1);
    port = spec.substr(close + 2);
  } else if (spec.find(':') != std::string::npos) {
    const size_t colon = spec.rfind(':');
    host = spec.substr(0, colon);
    port = spec.substr(colon + 1);
  }
  int p = -1;
  try {
    size_t used = 0;
    p = std::stoi(port, &used);
    if (used != port.size()) p = -1;
  } catch (const std::exception&) {
  }
  ICH_CHECK(p >= 0 && p <= 65535 && !host.empty(), "--http '", spec, "': expected PORT or ADDRESS:PORT");
  return {host, p};
}

namespace {

// cpp-httplib hands each accepted connection to a task queue; its own pool
// queues without bound, so a flood of idle connections held a descriptor
// each (3,000 measured), and under systemd's default limit of 1,024 the
// DICOM port could no longer accept associations or the node open files.
// This pool serves kHttpThreads connections and holds kHttpQueued more;
// past that enqueue() waits, so the accepting thread stops accepting.
class BoundedPool : public httplib::TaskQueue {
 public:
  explicit BoundedPool(const std::atomic<bool>& stopping) : stopping_(stopping) {
    for (int i = 0; i < kHttpThreads; ++i) threads_.emplace_back([this] { work(); });
  }
  void enqueue(std::function<void()> fn) override {
    std::unique_lock<std::mutex> l(mu_);
    // (polled: the server's stop cannot wake this wait; one over the bound while stopping)
    while (jobs_.size() >= size_t(kHttpQueued) && !stopping_.load())
      room_.wait_for(l, std::chrono::milliseconds(100));
    jobs_.push_back(std::move(fn));
    work_.notify_one();
  }
  void shutdown() override {
    {
      std::lock_guard<std::mutex> l(mu_);
      shut_ = true;
    }
    work_.notify_all();
    for (std::thread& t : threads_) t.join();
  }

 private:
  void work() {
    for (;;) {
      std::function<void()> fn;
      {
        std::unique_lock<std::mutex> l(mu_);
        work_.wait(l, [&] { return shut_ || !jobs_.empty(); });
        if (jobs_.empty()) return;  // shut down and drained
        fn = std::move(jobs_.front());
        jobs_.pop_front();
      }
      room_.notify_one();
      fn();
    }
  }
  const std::atomic<bool>& stopping_;
  std::mutex mu_;
  std::condition_variable work_, room_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> threads_;
  bool shut_ = false;
};

// Shuts down (both ways) every connected socket of this process whose
// local port is `port`: a server thread blocked reading one returns at once.
// The DICOM port's connections and the outgoing ones have other local ports.
// (Called from a destructor: nothing may escape; a descriptor closed while
// the folder is read is skipped, the next round sees the rest.)
void shut_connections_on(int port) noexcept try {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd", ec)) {
    int fd = -1;
    try {
      fd = std::stoi(e.path().filename().string());
    } catch (const std::exception&) {
      continue;
    }
    sockaddr_storage local{}, peer{};
    socklen_t n = sizeof local, m = sizeof peer;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &n) != 0) continue;  // not a socket
    int local_port = -1;
    if (local.ss_family == AF_INET) local_port = ntohs(reinterpret_cast<sockaddr_in*>(&local)->sin_port);
    if (local.ss_family == AF_INET6) local_port = ntohs(reinterpret_cast<sockaddr_in6*>(&local)->sin6_port);
    if (local_port == port && ::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &m) == 0) ::shutdown(fd, SHUT_RDWR);
  }
} catch (const std::exception&) {
}

// An answer that ends the connection (the request's body, if any, unread).
void answer_and_close(httplib::Response& res, int status, const std::string& body) {
  res.status = status;
  res.set_header("Connection", "close");
  if (status == 503) res.set_header("Retry-After", "5");
  res.set_content(body, "application/dicom+json");
}

}  // namespace

struct HttpServer::Impl {
  httplib::Server server;
  std::thread thread;
  std::atomic<bool> stopping{false};
  std::atomic<int> stow_bodies{0};  // STOW-RS bodies being read or handled
  std::mutex done_mu;
  std::condition_variable done_cv;
  bool done = false;  // the serving thread has returned
};

HttpServer::HttpServer(const std::string& spec, HttpHandlers h) : impl_(std::make_unique<Impl>()) {
  const auto [host, port] = parse_http_address(spec);
  httplib::Server& s = impl_->server;
  s.set_payload_max_length(h.stow ? h.stow_max_bytes : 64 * 1024);
  s.set_read_timeout(5, 0);
  s.set_write_timeout(5, 0);
  s.set_keep_alive_timeout(5);
  s.set_keep_alive_max_count(100);
  s.Get("/healthz", [](const httplib::Request&, httplib::Response& res) { res.set_content("ok\n", "text/plain"); });
  s.Get("/metrics", [h](const httplib::Request&, httplib::Response& res) {
    res.set_content(h.metrics(), "text/plain; version=0.0.4; charset=utf-8");
  });
  s.Get("/readyz", [h](const httplib::Request&, httplib::Response& res) {
    const std::vector<ReadyCheck> checks = h.ready();
    bool ok = true;
    std::string body = "{\"checks\":{";
    for (size_t i = 0; i < checks.size(); ++i) {
      ok = ok && checks[i].ok;
      body += (i ? "," : "") + json_quote(checks[i].name) + ":{\"ok\":" + (checks[i].ok ? "true" : "false") +
              ",\"detail\":" + json_quote(checks[i].detail) + "}";
    }
    body += std::string("},\"ready\":") + (ok ? "true" : "false") + "}\n";
    res.status = ok ? 200 : 503;
    res.set_content(body, "application/json");
  });
  // POST /studies reads its body itself, after the peer is admitted: a peer
  // the allow-list does not name is answered before it can make the node
  // hold a body (up to --stow-max-mb) in memory; at most kStowBodiesAtOnce
  // bodies are held at once.
  if (h.stow)
    s.Post("/studies", [h, impl = impl_.get()](const httplib::Request& req, httplib::Response& res,
                                               const httplib::ContentReader& read_body) {
      if (h.stow_admit) {
        const auto [status, why] = h.stow_admit(req.remote_addr);
        if (status != 0) return answer_and_close(res, status, why);
      }
      struct Slot {  // released however the handler ends
        std::atomic<int>& n;
        ~Slot() { n.fetch_sub(1); }
      } slot{impl->stow_bodies};
      if (impl->stow_bodies.fetch_add(1) >= kStowBodiesAtOnce)
        return answer_and_close(res, 503, "{\"error\":\"busy: " + std::to_string(kStowBodiesAtOnce) +
                                              " STOW-RS requests in progress; retry\"}\n");
      std::string body;
      const bool whole = read_body([&](const char* data, size_t n) {
        if (body.size() + n > h.stow_max_bytes) return false;
        body.append(data, n);
        return true;
      });
      if (!whole) return answer_and_close(res, body.size() >= h.stow_max_bytes ? 413 : 400,
                                          "{\"error\":\"the request body was not read whole\"}\n");
      const auto [status, answer] = h.stow(req.remote_addr, req.get_header_value("Content-Type"), body);
      res.status = status;
      res.set_content(answer, "application/dicom+json");
    });
  // at most kHttpThreads connections served, kHttpQueued waiting (BoundedPool)
  s.new_task_queue = [impl = impl_.get()] { return new BoundedPool(impl->stopping); };
  port_ = port == 0 ? s.bind_to_any_port(host) : (s.bind_to_port(host, port) ? port : -1);
  ICH_CHECK(port_ > 0, "--http: cannot listen on ", host, " port ", port, " (in use, or not an address of this host)");
  impl_->thread = std::thread([impl = impl_.get()] {
    impl->server.listen_after_bind();
    std::lock_guard<std::mutex> l(impl->done_mu);
    impl->done = true;
    impl->done_cv.notify_all();
  });
}

HttpServer::~HttpServer() {
  impl_->stopping = true;
  impl_->server.stop();
  // A peer trickling its request a byte at a time holds a server thread for
  // as long as it keeps on: every connection on the port is shut down, and
  // again until the serving thread has returned (one accepted while it
  // stopped is caught by the next round).
  for (;;) {
    shut_connections_on(port_);
    std::unique_lock<std::mutex> l(impl_->done_mu);
    if (impl_->done_cv.wait_for(l, std::chrono::milliseconds(200), [&] { return impl_->done; })) break;
  }
  impl_->thread.join();
}

}  // namespace ich
