// fuzz_association: what a peer sends to ich-serve's DICOM port, from
// connect to close. One receiver (serve/receiver.h) runs in this process on
// a loopback port, admitting anyone (--allow-any) into a sink that keeps
// nothing; each input is sent on a new connection, the write side is shut,
// and the answer is read until the node closes. A crash, leak or undefined
// behaviour in the receiver's threads (ours, and DCMTK's parsing and DIMSE
// under them) ends the process, as libFuzzer reports it. Seeds
// (scripts/fuzz.sh): an A-ASSOCIATE-RQ, and one followed by a C-ECHO and a
// release.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "serve/access.h"
#include "serve/receiver.h"

namespace {

struct NullSink : ich::StoreSink {
  std::string refuse_association() override { return ""; }
  uint16_t store(const std::string& path, const std::string&, ich::AssociationLog&) override {
    std::error_code ec;
    std::filesystem::remove(path, ec);
    return 0;
  }
  void association_ended(ich::AssociationLog&) override {}
};

struct Node {
  NullSink sink;
  ich::PolicyHolder policy{[] {
    ich::AccessPolicy p;
    p.allow_any = true;
    return p;
  }()};
  std::unique_ptr<ich::Receiver> receiver;
  std::atomic<bool> stop{false};
  std::thread thread;
  Node() {
    ich::ReceiverOptions o;
    o.bind = "127.0.0.1";
    o.port = 0;  // any free port
    o.acse_timeout_s = 1;
    o.dimse_timeout_s = 1;
    o.max_handshakes_per_host = 64;
    o.incoming = std::filesystem::temp_directory_path().string() + "/ich_fuzz_assoc_" + std::to_string(::getpid());
    o.policy = &policy;
    receiver = std::make_unique<ich::Receiver>(o, sink);
    thread = std::thread([this] { receiver->run(stop); });
  }
  ~Node() {
    stop = true;
    thread.join();
  }
};

Node* node = nullptr;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  node = new Node();  // kept for the process' life: the receiver's threads outlive each input
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(uint16_t(node->receiver->port()));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    size_t off = 0;
    while (off < size) {
      const ssize_t w = ::send(fd, data + off, size - off, MSG_NOSIGNAL);
      if (w <= 0) break;
      off += size_t(w);
    }
    ::shutdown(fd, SHUT_WR);
    // Until the node closes (its ACSE or DIMSE timeout at the latest).
    char buf[4096];
    for (int i = 0; i < 300; ++i) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 10) <= 0) continue;
      if (::recv(fd, buf, sizeof buf, 0) <= 0) break;
    }
  }
  ::close(fd);
  return 0;
}
