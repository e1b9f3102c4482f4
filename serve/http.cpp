// http.cpp: /healthz, /readyz and /metrics on cpp-httplib (http.h).
#include "serve/http.h"

#include <httplib.h>

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

struct HttpServer::Impl {
  httplib::Server server;
  std::thread thread;
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
  if (h.stow)
    s.Post("/studies", [h](const httplib::Request& req, httplib::Response& res) {
      const auto [status, body] = h.stow(req.remote_addr, req.get_header_value("Content-Type"), req.body);
      res.status = status;
      res.set_content(body, "application/dicom+json");
    });
  port_ = port == 0 ? s.bind_to_any_port(host) : (s.bind_to_port(host, port) ? port : -1);
  ICH_CHECK(port_ > 0, "--http: cannot listen on ", host, " port ", port, " (in use, or not an address of this host)");
  impl_->thread = std::thread([this] { impl_->server.listen_after_bind(); });
}

HttpServer::~HttpServer() {
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

}  // namespace ich
