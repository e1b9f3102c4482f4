#include "engine/dist/store.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

#include "engine/error.h"

namespace ich::dist {

namespace {

using Clock = std::chrono::steady_clock;

// Whole reads and writes; false when the peer closed or the socket failed.
bool send_all(int fd, const void* p, size_t n) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    const ssize_t k = ::send(fd, c, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    c += k, n -= size_t(k);
  }
  return true;
}
bool recv_all(int fd, void* p, size_t n) {
  char* c = static_cast<char*>(p);
  while (n > 0) {
    const ssize_t k = ::recv(fd, c, n, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    c += k, n -= size_t(k);
  }
  return true;
}
bool send_blob(int fd, const char* p, size_t n) {
  const uint32_t len = uint32_t(n);
  return send_all(fd, &len, 4) && send_all(fd, p, n);
}
bool recv_blob(int fd, std::string& out, size_t limit) {
  uint32_t len = 0;
  if (!recv_all(fd, &len, 4) || len > limit) return false;
  out.resize(len);
  return recv_all(fd, out.data(), len);
}
constexpr size_t kMaxBlob = 64u << 20;

// A socket bound to every address on the port: IPv6 and IPv4 together where
// the machine has IPv6, else IPv4 (containers often have no IPv6). -1 with
// errno set when the bind fails.
int bind_any(int port) {
  const int one = 1, zero = 0;
  int fd = ::socket(AF_INET6, SOCK_STREAM, 0);
  if (fd >= 0) {
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);  // a port in TIME_WAIT from the last run
    ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);  // IPv4 clients too
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_any;
    a.sin6_port = htons(uint16_t(port));
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) return fd;
    const int e = errno;
    ::close(fd);
    if (e == EADDRINUSE) {
      errno = e;
      return -1;
    }
  }
  fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  a.sin_port = htons(uint16_t(port));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) return fd;
  const int e = errno;
  ::close(fd);
  errno = e;
  return -1;
}

// bind_any, then listen; "in use" is one clear line.
int listen_socket(int port) {
  const int fd = bind_any(port);
  if (fd < 0) {
    const int e = errno;
    if (e == EADDRINUSE)
      throw Error("MASTER_PORT " + std::to_string(port) +
                  " is in use on this machine (another run, or another program): pick another "
                  "(ich-launch --master-port)");
    throw Error("rendezvous store: cannot listen on port " + std::to_string(port) + ": " + std::strerror(e));
  }
  ICH_CHECK(::listen(fd, 128) == 0, "rendezvous store: listen(): ", std::strerror(errno));
  return fd;
}

}  // namespace

bool port_in_use(int port) {
  const int fd = bind_any(port);
  if (fd >= 0) {
    ::close(fd);
    return false;
  }
  return errno == EADDRINUSE;
}

class TcpStore::Server {
 public:
  explicit Server(int port) {
    listen_ = listen_socket(port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~Server() {
    stop_ = true;
    acceptor_.join();
    {
      std::lock_guard<std::mutex> l(mu_);
      for (int fd : clients_) ::shutdown(fd, SHUT_RDWR);  // wakes their threads
    }
    for (auto& t : handlers_) t.join();
    for (int fd : clients_) ::close(fd);
    ::close(listen_);
  }

 private:
  void accept_loop() {
    while (!stop_) {
      pollfd p{listen_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const int fd = ::accept(listen_, nullptr, nullptr);
      if (fd < 0) continue;
      const int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      std::lock_guard<std::mutex> l(mu_);
      clients_.push_back(fd);
      handlers_.emplace_back([this, fd] { serve(fd); });
    }
  }
  void serve(int fd) {
    for (;;) {
      char op = 0;
      std::string key, value;
      if (!recv_all(fd, &op, 1) || !recv_blob(fd, key, kMaxBlob)) return;
      if (op == 'S') {
        if (!recv_blob(fd, value, kMaxBlob)) return;
        {
          std::lock_guard<std::mutex> l(mu_);
          data_[key] = std::move(value);
        }
        if (!send_all(fd, "K", 1)) return;
      } else if (op == 'G') {
        std::string v;
        bool found = false;
        {
          std::lock_guard<std::mutex> l(mu_);
          const auto it = data_.find(key);
          if (it != data_.end()) v = it->second, found = true;
        }
        if (!(found ? send_all(fd, "Y", 1) && send_blob(fd, v.data(), v.size()) : send_all(fd, "N", 1))) return;
      } else {
        return;  // not our protocol: drop the connection
      }
    }
  }
  int listen_ = -1;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<int> clients_;
  std::vector<std::thread> handlers_;
  std::map<std::string, std::string> data_;
};

TcpStore::TcpStore(const std::string& host, int port, bool serve, std::chrono::milliseconds timeout)
    : host_(host), port_(port), timeout_(timeout) {
  ICH_CHECK(port > 0 && port < 65536, "MASTER_PORT ", port, ": a TCP port, 1 to 65535");
  if (serve) server_ = std::make_unique<Server>(port);
  const std::string where = host + ":" + std::to_string(port);
  addrinfo hints{}, *res = nullptr;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  const int g = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
  ICH_CHECK(g == 0, "MASTER_ADDR '", host, "': ", ::gai_strerror(g));
  const auto deadline = Clock::now() + timeout;
  std::string last = "no address";
  while (fd_ < 0) {
    for (addrinfo* a = res; a && fd_ < 0; a = a->ai_next) {
      const int fd = ::socket(a->ai_family, a->ai_socktype, a->ai_protocol);
      if (fd < 0) continue;
      if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
        fd_ = fd;
      } else {
        last = std::strerror(errno);
        ::close(fd);
      }
    }
    if (fd_ >= 0) break;
    if (Clock::now() > deadline) {
      ::freeaddrinfo(res);
      throw Error("rendezvous: rank 0's store at " + where + " did not answer within " +
                  std::to_string(timeout.count() / 1000) + " s (" + last + "): is rank 0 running, and MASTER_ADDR right?");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // rank 0 may not be listening yet
  }
  ::freeaddrinfo(res);
  const int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  timeval tv{};
  tv.tv_sec = long(timeout.count() / 1000);
  tv.tv_usec = long(timeout.count() % 1000) * 1000;
  ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);  // a dead store cannot hang a rank
  ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

TcpStore::~TcpStore() {
  if (fd_ >= 0) ::close(fd_);
  server_.reset();
}

void TcpStore::set(const std::string& key, const std::vector<char>& value) {
  char ok = 0;
  ICH_CHECK(send_all(fd_, "S", 1) && send_blob(fd_, key.data(), key.size()) &&
                send_blob(fd_, value.data(), value.size()) && recv_all(fd_, &ok, 1) && ok == 'K',
            "rendezvous: lost rank 0's store at ", host_, ":", port_, " while setting '", key, "'");
}

std::vector<char> TcpStore::get(const std::string& key) {
  const auto deadline = Clock::now() + timeout_;
  for (;;) {
    char found = 0;
    ICH_CHECK(send_all(fd_, "G", 1) && send_blob(fd_, key.data(), key.size()) && recv_all(fd_, &found, 1),
              "rendezvous: lost rank 0's store at ", host_, ":", port_, " while waiting for '", key, "'");
    if (found == 'Y') {
      std::string v;
      ICH_CHECK(recv_blob(fd_, v, kMaxBlob), "rendezvous: lost rank 0's store at ", host_, ":", port_);
      return std::vector<char>(v.begin(), v.end());
    }
    if (Clock::now() > deadline)
      throw Error("rendezvous: '" + key + "' was not published within " + std::to_string(timeout_.count() / 1000) +
                  " s: a rank did not start or stopped (every rank must run with the same WORLD_SIZE)");
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace ich::dist
