// The Gloo backend: CPU tensors over Gloo's TCP transport, every rank
// connected to every other (connectFullMesh), the addresses exchanged through
// rank 0's TcpStore. Gloo's own timeouts bound every call; its exceptions
// (a peer that closed its sockets, a read that timed out) become one line.
#include <unistd.h>

#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/prefix_store.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/device.h>

#include <cstdlib>

#include "engine/dist/communicator.h"
#include "engine/dist/store.h"
#include "engine/error.h"

namespace ich::dist {

namespace {

// Gloo's Store interface on our TcpStore.
class StoreAdapter : public gloo::rendezvous::Store {
 public:
  explicit StoreAdapter(TcpStore& s) : s_(s) {}
  void set(const std::string& key, const std::vector<char>& data) override { s_.set(key, data); }
  std::vector<char> get(const std::string& key) override { return s_.get(key); }
  void wait(const std::vector<std::string>& keys) override {
    for (const auto& k : keys) (void)s_.get(k);
  }
  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds&) override { wait(keys); }

 private:
  TcpStore& s_;
};

bool loopback(const std::string& a) { return a == "localhost" || a.rfind("127.", 0) == 0 || a == "::1"; }

class GlooCommunicator final : public Communicator {
 public:
  explicit GlooCommunicator(const DistEnv& env) : env_(env) {
    store_ = std::make_unique<TcpStore>(env.master_addr, env.master_port, env.rank == 0, env.timeout);
    gloo::transport::tcp::attr attr;
    if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname) {
      attr.iface = ifname;  // as PyTorch: the interface the other machines reach
    } else if (loopback(env.master_addr)) {
      attr.hostname = "127.0.0.1";
    } else {
      char name[256] = {};
      ::gethostname(name, sizeof name - 1);
      attr.hostname = name;
    }
    try {
      device_ = gloo::transport::tcp::CreateDevice(attr);
      adapter_ = std::make_unique<StoreAdapter>(*store_);
      prefixed_ = std::make_unique<gloo::rendezvous::PrefixStore>("gloo", *adapter_);
      context_ = std::make_shared<gloo::rendezvous::Context>(env.rank, env.world);
      context_->setTimeout(env.timeout);
      context_->connectFullMesh(*prefixed_, device_);
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      throw Error(where("connecting to the other ranks") + e.what());
    }
  }
  int rank() const override { return env_.rank; }
  int size() const override { return env_.world; }
  std::string backend() const override { return "gloo"; }

  void all_reduce_sum(Tensor& t, const std::string& what) override {
    check(t, what);
    ICH_CHECK(t.dtype() == DType::Float32 || t.dtype() == DType::Float64, where(what), "float32 or float64, not ",
              dtype_name(t.dtype()));
    run(what, [&] {
      gloo::AllreduceOptions o(context_);
      o.setTag(tag_++);
      o.setTimeout(env_.timeout);
      if (t.dtype() == DType::Float32) {
        o.setOutput(t.data<float>(), size_t(t.numel()));
        o.setReduceFunction([](void* c, const void* a, const void* b, size_t n) { gloo::sum<float>(c, a, b, n); });
      } else {
        o.setOutput(t.data<double>(), size_t(t.numel()));
        o.setReduceFunction([](void* c, const void* a, const void* b, size_t n) { gloo::sum<double>(c, a, b, n); });
      }
      gloo::allreduce(o);
    });
  }
  void broadcast(Tensor& t, int root, const std::string& what) override {
    check(t, what);
    run(what, [&] {
      gloo::BroadcastOptions o(context_);
      o.setTag(tag_++);
      o.setTimeout(env_.timeout);
      o.setRoot(root);
      o.setOutput(static_cast<char*>(t.raw_data()), size_t(t.numel()) * dtype_size(t.dtype()));
      gloo::broadcast(o);
    });
  }
  void barrier(const std::string& what) override {
    run(what, [&] {
      gloo::BarrierOptions o(context_);
      o.setTag(tag_++);
      o.setTimeout(env_.timeout);
      gloo::barrier(o);
    });
  }

 private:
  std::string where(const std::string& what) const {
    return "rank " + std::to_string(env_.rank) + " of " + std::to_string(env_.world) + ": " + what + " failed: ";
  }
  void check(const Tensor& t, const std::string& what) const {
    ICH_CHECK(t.device().is_cpu() && t.is_contiguous(), where(what), "Gloo takes contiguous CPU tensors, got ", t.str());
  }
  template <class F>
  void run(const std::string& what, F&& f) {
    try {
      f();
    } catch (const std::exception& e) {
      std::string m = e.what();
      for (char& c : m)
        if (c == '\n') c = ' ';
      throw Error(where(what) + "another rank stopped, hangs or cannot be reached within " +
                  std::to_string(env_.timeout.count() / 1000) + " s (Gloo: " + m + ")");
    }
  }
  DistEnv env_;
  std::unique_ptr<TcpStore> store_;
  std::shared_ptr<gloo::transport::Device> device_;
  std::unique_ptr<StoreAdapter> adapter_;
  std::unique_ptr<gloo::rendezvous::PrefixStore> prefixed_;
  std::shared_ptr<gloo::rendezvous::Context> context_;
  uint32_t tag_ = 1;
};

}  // namespace

std::unique_ptr<Communicator> make_gloo(const DistEnv& env) { return std::make_unique<GlooCommunicator>(env); }

}  // namespace ich::dist
