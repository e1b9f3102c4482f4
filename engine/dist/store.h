// store.h: the rendezvous of a data-parallel run, a key-value store on TCP.
//
// Before ranks can exchange tensors they must find each other: Gloo's ranks
// publish their listening addresses, NCCL's rank 0 publishes its unique id.
// Gloo's own stores (Debian's libgloo, 2022) are a shared folder
// (FileStore) and Redis; torchrun uses a TCP store served by rank 0 at
// MASTER_ADDR:MASTER_PORT, and so does ich: rank 0 serves, every rank
// (rank 0 too) is a client. This is the meeting point only: the tensors
// themselves travel over Gloo's and NCCL's own transports.
//
// Protocol (one request, one reply, on a connection per client):
//   request  'S' | u32 key length | key | u32 value length | value  -> 'K'
//            'G' | u32 key length | key                             -> 'Y' | u32 length | value, or 'N'
// get() asks again every 5 ms until the key is there or the timeout passes.
#pragma once
#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace ich::dist {

// Whether a TCP port is taken on this machine (every address, IPv6 and IPv4).
bool port_in_use(int port);

class TcpStore {
 public:
  // serve: this process (rank 0) listens on port (every address: other
  // machines connect to it); "in use" is one clear error. Every process then
  // connects to host:port, retrying until `timeout`.
  TcpStore(const std::string& host, int port, bool serve, std::chrono::milliseconds timeout);
  ~TcpStore();
  TcpStore(const TcpStore&) = delete;
  TcpStore& operator=(const TcpStore&) = delete;

  void set(const std::string& key, const std::vector<char>& value);
  // Waits until the key is set (by any rank), at most the timeout.
  std::vector<char> get(const std::string& key);
  std::chrono::milliseconds timeout() const { return timeout_; }

 private:
  class Server;
  std::unique_ptr<Server> server_;
  std::string host_;
  int port_ = 0, fd_ = -1;
  std::chrono::milliseconds timeout_;
};

}  // namespace ich::dist
