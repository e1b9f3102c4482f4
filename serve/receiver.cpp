// receiver.cpp: the acceptor, the per-connection handshake and the storage
// SCP (receiver.h says why the sockets and threads are ours, not DcmSCPPool's).
#include "serve/receiver.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmnet/assoc.h>
#include <dcmtk/dcmnet/dcmlayer.h>
#include <dcmtk/dcmnet/dcmtrans.h>
#include <dcmtk/dcmnet/diutil.h>
#include <dcmtk/dcmnet/dul.h>
#include <dcmtk/dcmnet/scpthrd.h>
#include <dcmtk/dcmtls/tlslayer.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <list>
#include <mutex>
#include <set>
#include <thread>

#include "engine/error.h"
#include "serve/access.h"
#include "serve/audit.h"
#include "serve/metrics.h"
#include "serve/pdu.h"

namespace ich {

const std::vector<std::string> kAcceptedSopClasses = {UID_CTImageStorage, UID_EnhancedCTImageStorage};

namespace {

using Clock = std::chrono::steady_clock;

// The longest A-ASSOCIATE-RQ read: 128 presentation contexts (PS3.8's odd
// IDs 1-255) with a dozen transfer syntaxes each and a user identity are
// under 256 KiB; anything longer is not a sender we serve.
constexpr uint32_t kMaxAssociateRq = 1u << 20;
constexpr uint32_t kMinAssociateRq = 68;  // the RQ's fixed fields (PS3.8 9.3.2)

// dcmExternalSocketHandle is a process-wide global and the network key's
// protocol state is shared: one hand-over into DCMTK at a time. Nothing in
// it waits on the network (the RQ is already read).
std::mutex g_handoff;

// A connection whose first bytes (the A-ASSOCIATE-RQ, read and checked by
// us) are served again to DCMTK before the rest comes from the network.
class ReplayConnection : public DcmTransportConnection {
 public:
  ReplayConnection(DcmTransportConnection* inner, int fd, std::string prefix)
      : DcmTransportConnection(fd), inner_(inner), prefix_(std::move(prefix)) {}
  ~ReplayConnection() override { delete inner_; }
  OFCondition serverSideHandshake() override { return EC_Normal; }  // done before the hand-over
  OFCondition clientSideHandshake() override { return EC_Normal; }
  OFCondition renegotiate(const char* suite) override { return inner_->renegotiate(suite); }
  ssize_t read(void* buf, size_t n) override {
    if (pos_ < prefix_.size()) {
      const size_t k = std::min(n, prefix_.size() - pos_);
      std::memcpy(buf, prefix_.data() + pos_, k);
      pos_ += k;
      return ssize_t(k);
    }
    return inner_->read(buf, n);
  }
  ssize_t write(void* buf, size_t n) override { return inner_->write(buf, n); }
  void close() override {
    inner_->close();
    setSocket(DcmNativeSocketType(-1));
  }
  void closeTransportConnection() override {
    inner_->closeTransportConnection();
    setSocket(DcmNativeSocketType(-1));
  }
  unsigned long getPeerCertificateLength() override { return inner_->getPeerCertificateLength(); }
  unsigned long getPeerCertificate(void* buf, unsigned long len) override { return inner_->getPeerCertificate(buf, len); }
  OFBool networkDataAvailable(int timeout) override {
    return pos_ < prefix_.size() ? OFTrue : inner_->networkDataAvailable(timeout);
  }
  OFBool isTransparentConnection() override { return pos_ >= prefix_.size() && inner_->isTransparentConnection(); }
  OFString& dumpConnectionParameters(OFString& s) override { return inner_->dumpConnectionParameters(s); }

 private:
  DcmTransportConnection* inner_;
  std::string prefix_;
  size_t pos_ = 0;
};

// Hands DCMTK the connection prepared for the socket it is told about.
class HandoffLayer : public DcmTransportLayer {
 public:
  DcmTransportConnection* next = nullptr;  // set and taken under g_handoff
  DcmTransportConnection* createConnection(DcmNativeSocketType, OFBool) override {
    DcmTransportConnection* c = next;
    next = nullptr;
    return c;
  }
};

// Each C-STORE response and A-ASSOCIATE-AC is one small write that the
// peer waits for: Nagle's algorithm would hold it for the peer's delayed ACK
// (40 ms on Linux), which made 200 small instances take 18 s on loopback.
void set_no_delay(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void set_timeouts(int fd, int seconds) {
  timeval tv{seconds, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

int seconds_left(Clock::time_point deadline) {
  const double s = std::chrono::duration<double>(deadline - Clock::now()).count();
  return s <= 0 ? 0 : int(std::ceil(s));
}

// Reads n bytes through c before the deadline; else why not.
std::string read_before(DcmTransportConnection& c, char* buf, size_t n, Clock::time_point deadline) {
  size_t got = 0;
  while (got < n) {
    const int left = seconds_left(deadline);
    if (left == 0) return "silent";
    if (!c.networkDataAvailable(left)) continue;
    const ssize_t r = c.read(buf + got, n - got);
    if (r == 0) return "closed";
    if (r < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      return std::string("read failed: ") + std::strerror(errno);
    }
    got += size_t(r);
  }
  return "";
}

// The first byte, peeked: -1 closed, -2 nothing before the deadline, -3 error.
int peek_first(int fd, Clock::time_point deadline) {
  for (;;) {
    const int left = seconds_left(deadline);
    if (left == 0) return -2;
    pollfd p{fd, POLLIN, 0};
    const int r = ::poll(&p, 1, std::min(left, 1) * 1000);
    if (r < 0 && errno != EINTR) return -3;
    if (r <= 0) continue;
    unsigned char b = 0;
    const ssize_t n = ::recv(fd, &b, 1, MSG_PEEK);
    if (n == 1) return b;
    if (n == 0) return -1;
    if (errno != EINTR && errno != EAGAIN) return -3;
  }
}

IpAddress peer_of(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = "";
  if (ss.ss_family == AF_INET) inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(ss).sin_addr, buf, sizeof buf);
  else if (ss.ss_family == AF_INET6) inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(ss).sin6_addr, buf, sizeof buf);
  IpAddress a;
  if (!parse_ip(buf, a)) a.text = "unknown";
  return a;
}

// An AE title as the peer sent it, trimmed, with anything but printable
// ASCII (PS3.5's default repertoire) shown as '?': it goes into logs, JSON
// and XML audit records.
std::string trimmed(const char* s) {
  std::string t(s);
  for (char& c : t)
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) c = '?';
  while (!t.empty() && t.back() == ' ') t.pop_back();
  size_t b = 0;
  while (b < t.size() && t[b] == ' ') ++b;
  return t.substr(b);
}

}  // namespace

void record_instances_received(AuditLog& audit, const std::string& node_aet, const AssociationLog& log,
                               const std::string& peer_address) {
  for (const auto& [study, got] : log.received) {
    AuditEvent e;
    e.id = audit::code("110104", "DICOM Instances Transferred");
    e.action = 'C';
    e.outcome = 0;
    int64_t n = 0;
    for (const auto& [sop, k] : got.sop_classes) n += k;
    e.outcome_text = std::to_string(n) + " instances received";
    e.participants = {audit::peer(log.calling_aet, peer_address, true, audit::code("110153", "Source Role ID")),
                      audit::node(node_aet, audit::this_host(), false, audit::code("110152", "Destination Role ID"))};
    e.objects = {audit::study(study, got.sop_classes)};
    if (!got.patient_id.empty()) e.objects.push_back(audit::patient(got.patient_id));
    audit.record(std::move(e));
  }
}

struct Receiver::Impl {
  ReceiverOptions o;
  StoreSink& sink;
  int listen_fd = -1;
  T_ASC_Network* net = nullptr;
  HandoffLayer layer;
  DcmSharedSCPConfig cfg;
  std::atomic<int64_t> counter{0};

  std::mutex mu;  // guards what follows
  int handshakes = 0, associations = 0;
  std::map<std::string, int> handshakes_by_host;
  std::set<int> handshake_fds;  // shut down when stopping
  struct Worker {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::list<Worker> workers;
  std::atomic<bool> stopping{false};

  Impl(ReceiverOptions opts, StoreSink& s) : o(std::move(opts)), sink(s) {}
  void count(const std::string& outcome) {
    if (o.metrics) o.metrics->add("ich_serve_connections_total", {{"outcome", outcome}});
  }
  void refused(const IpAddress& peer, const std::string& outcome, const std::string& why) {
    count(outcome);
    if (o.audit) o.audit->record_noisy(peer.text + "|" + outcome, audit::connection_refused(o.aet, peer.text, why));
  }
  void gauges() {
    if (!o.metrics) return;
    o.metrics->set("ich_serve_handshakes", {}, handshakes);
    o.metrics->set("ich_serve_associations_active", {}, associations);
  }
  void serve_connection(int fd, IpAddress peer);
  void end_handshake(int fd, const IpAddress& peer) {
    std::lock_guard<std::mutex> l(mu);
    if (!handshake_fds.erase(fd)) return;
    handshakes -= 1;
    if (--handshakes_by_host[peer.text] <= 0) handshakes_by_host.erase(peer.text);
    gauges();
  }
};

namespace {

// One association's SCP: the policy's decision, C-STORE to a file, the
// audit records of what it brought.
class StorageScp : public DcmThreadSCP {
 public:
  StorageScp(Receiver::Impl& r, IpAddress peer, bool tls) : r_(r), peer_(std::move(peer)), tls_(tls) {}
  ~StorageScp() override {
    if (reserved_) {
      std::lock_guard<std::mutex> l(r_.mu);
      r_.associations -= 1;
      r_.gauges();
    }
  }

 protected:
  // Who may associate, in the order a sender can act on: the called AE
  // title, the calling AE title from this address, then the node's limits.
  void notifyAssociationRequest(const T_ASC_Parameters& params, DcmSCPActionType& action) override {
    log_ = AssociationLog();
    log_.calling_aet = trimmed(params.DULparams.callingAPTitle);
    log_.peer = peer_.text;
    called_ = trimmed(params.DULparams.calledAPTitle);
    if (called_ != r_.o.aet) {
      reject(DCMSCP_CALLED_AE_TITLE_NOT_RECOGNIZED, "called_aet",
             "called AE title not recognized (this node is " + r_.o.aet + ")", "");
    } else if (!r_.o.policy->get()->admits(log_.calling_aet, peer_)) {
      reject(DCMSCP_CALLING_AE_TITLE_NOT_RECOGNIZED, "calling_aet", "calling AE title not recognized",
             "; to admit it: --allow '" + log_.calling_aet + "@" + peer_.text + "' (or that line in --allow-file, then SIGHUP)");
    } else {
      std::string busy;
      {
        std::lock_guard<std::mutex> l(r_.mu);
        if (r_.associations >= r_.o.max_associations) {
          busy = std::to_string(r_.associations) + " associations in progress (--max-associations " +
                 std::to_string(r_.o.max_associations) + ")";
        } else {
          r_.associations += 1;
          reserved_ = true;
          r_.gauges();
        }
      }
      if (busy.empty()) {
        try {
          busy = r_.sink.refuse_association();
        } catch (const std::exception& e) {
          busy = e.what();
        }
      }
      if (!busy.empty()) reject(DCMSCP_TOO_MANY_ASSOCIATIONS, "local_limit", "local limit exceeded: " + busy, "");
    }
    if (reason_set_) action = DCMSCP_ACTION_REFUSE_ASSOCIATION;
  }
  // DcmSCP refuses for our reasons (above) and for its own (no acceptable
  // presentation context, another application context).
  void refuseAssociation(const DcmRefuseReasonType reason) override {
    if (!reason_set_) {
      const bool pcs = reason == DCMSCP_NO_PRESENTATION_CONTEXTS;
      reject(reason, pcs ? "no_presentation_context" : "application_context",
             pcs ? "no acceptable presentation context (this node takes CT and Enhanced CT storage, and Verification)"
                 : "application context name not supported", "");
    }
    DcmThreadSCP::refuseAssociation(refuse_);
  }
  void notifyAssociationAcknowledge() override {
    if (r_.o.metrics) r_.o.metrics->add("ich_serve_associations_accepted_total");
    if (r_.o.audit) r_.o.audit->record(audit::association_accepted(r_.o.aet, log_.calling_aet, peer_.text, tls_));
  }
  OFCondition handleIncomingCommand(T_DIMSE_Message* msg, const DcmPresentationContextInfo& info) override {
    if (msg->CommandField != DIMSE_C_STORE_RQ) return DcmThreadSCP::handleIncomingCommand(msg, info);
    T_DIMSE_C_StoreRQ& rq = msg->msg.CStoreRQ;
    const std::string path =
        r_.o.incoming + "/" + std::to_string(::getpid()) + "-" + std::to_string(r_.counter++) + ".part";
    OFCondition c = receiveSTORERequest(rq, info.presentationContextID, path.c_str());
    if (c.bad()) {  // the connection failed mid-instance: nothing was stored, the sender knows
      std::error_code ec;
      std::filesystem::remove(path, ec);
      return c;
    }
    uint16_t status = 0xA700;  // Refused: Out of Resources, when filing it failed (a full disk)
    try {
      status = r_.sink.store(path, rq.AffectedSOPInstanceUID, log_);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "ich-serve: could not keep instance %s from %s: %s\n", rq.AffectedSOPInstanceUID,
                   log_.calling_aet.c_str(), e.what());
      std::error_code ec;
      std::filesystem::remove(path, ec);
    }
    if (r_.o.metrics) {
      if (status == 0) r_.o.metrics->add("ich_serve_instances_received_total");
      else r_.o.metrics->add("ich_serve_instances_refused_total", {{"status", status == 0xA700 ? "A700" : "C000"}});
    }
    return sendSTOREResponse(info.presentationContextID, rq, status);
  }
  void notifyAssociationTermination() override {
    if (r_.o.audit) record_instances_received(*r_.o.audit, r_.o.aet, log_, peer_.text);
    try {
      r_.sink.association_ended(log_);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "ich-serve: after an association from %s: %s\n", log_.calling_aet.c_str(), e.what());
    }
  }

 private:
  void reject(DcmRefuseReasonType reason, const std::string& label, const std::string& why, const std::string& hint) {
    reason_set_ = true;
    refuse_ = reason;
    std::fprintf(stderr, "ich-serve: refused an association from %s@%s to %s: %s%s\n", log_.calling_aet.c_str(),
                 peer_.text.c_str(), called_.c_str(), why.c_str(), hint.c_str());
    if (r_.o.metrics) r_.o.metrics->add("ich_serve_associations_rejected_total", {{"reason", label}});
    if (r_.o.audit)
      r_.o.audit->record_noisy(peer_.text + "|" + log_.calling_aet + "|" + called_ + "|" + label,
                               audit::association_rejected(r_.o.aet, log_.calling_aet, called_, peer_.text, why));
  }
  Receiver::Impl& r_;
  IpAddress peer_;
  bool tls_;
  AssociationLog log_;
  std::string called_;
  bool reason_set_ = false, reserved_ = false;
  DcmRefuseReasonType refuse_ = DCMSCP_INTERNAL_ERROR;
};

// A-ASSOCIATE-RJ, rejected-permanent by the service user, no reason given
// (PS3.8 9.3.4): the answer to a plain request on a TLS-only port.
void send_plain_reject(int fd) {
  const unsigned char rj[10] = {0x03, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x01, 0x01, 0x01};
  (void)!::send(fd, rj, sizeof rj, MSG_NOSIGNAL);
}

}  // namespace

void Receiver::Impl::serve_connection(int fd, IpAddress peer) {
  const auto deadline = Clock::now() + std::chrono::seconds(o.acse_timeout_s);
  set_timeouts(fd, o.acse_timeout_s);
  set_no_delay(fd);
  // The connection object, once made, owns the socket (closes it when deleted).
  std::unique_ptr<DcmTransportConnection> conn;
  // Refuses the connection: out of the handshake count first (so that the
  // stop path never shuts down a descriptor number already reused), then closed.
  auto drop = [&](const std::string& outcome, const std::string& why) {
    end_handshake(fd, peer);
    if (conn) conn.reset();
    else ::close(fd);
    refused(peer, outcome, why);
  };
  const int first = peek_first(fd, deadline);
  if (first < 0) {
    if (first == -1) drop("closed_early", "closed without sending an association request");
    else if (first == -2) drop("silent", "sent nothing for " + std::to_string(o.acse_timeout_s) + " s (--acse-timeout)");
    else drop("not_dicom", "connection error before an association request");
    return;
  }
  const bool tls = first == 0x16;  // a TLS handshake record; an A-ASSOCIATE-RQ starts 0x01
  if (tls && !o.tls) return drop("tls_not_configured", "TLS offered to a node without --tls-cert");
  if (!tls && o.tls && !o.tls_allow_plain) {
    if (first == 0x01) send_plain_reject(fd);
    return drop("tls_required", "a plain (non-TLS) connection to a TLS-only node (--tls-allow-plain admits them)");
  }
  if (tls) {
    conn.reset(o.tls->createConnection(DcmNativeSocketType(fd), OFTrue));
    if (!conn) return drop("tls_failed", "cannot start TLS (OpenSSL)");
    const OFCondition c = conn->serverSideHandshake();
    if (c.bad()) return drop("tls_failed", std::string("TLS handshake failed: ") + c.text());
  } else {
    conn.reset(new DcmTCPConnection(DcmNativeSocketType(fd)));
  }
  // The A-ASSOCIATE-RQ, read whole before the deadline and checked.
  std::string pdu(6, '\0');
  std::string why = read_before(*conn, pdu.data(), 6, deadline);
  if (why == "silent") return drop("silent", "sent no whole association request in " + std::to_string(o.acse_timeout_s) + " s");
  if (!why.empty()) return drop(why == "closed" ? "closed_early" : "not_dicom", "connection " + why + " before a whole association request");
  const auto* h = reinterpret_cast<const unsigned char*>(pdu.data());
  const uint32_t length = uint32_t(h[2]) << 24 | uint32_t(h[3]) << 16 | uint32_t(h[4]) << 8 | h[5];
  if (h[0] != 0x01 || length < kMinAssociateRq || length > kMaxAssociateRq) {
    char b[160];
    std::snprintf(b, sizeof b, "first PDU is not an A-ASSOCIATE-RQ (type 0x%02x, length %u; expected type 0x01, %u to %u bytes)",
                  h[0], length, kMinAssociateRq, kMaxAssociateRq);
    return drop("not_dicom", b);
  }
  pdu.resize(6 + size_t(length));
  why = read_before(*conn, pdu.data() + 6, length, deadline);
  if (!why.empty()) return drop(why == "silent" ? "silent" : "not_dicom", "association request cut short (" + why + ")");
  why = check_associate_rq(pdu);
  if (!why.empty()) return drop("bad_request", "malformed association request: " + why);
  set_timeouts(fd, o.dimse_timeout_s);  // from here DIMSE's waits bound the reads; these bound TLS records and writes
  // The hand-over: DCMTK takes our connection for fd and parses the request.
  end_handshake(fd, peer);  // nothing below waits for the peer before DIMSE
  T_ASC_Association* assoc = nullptr;
  OFCondition c;
  {
    std::lock_guard<std::mutex> l(g_handoff);
    layer.next = new ReplayConnection(conn.release(), fd, std::move(pdu));
    dcmExternalSocketHandle.set(DcmNativeSocketType(fd));
    c = ASC_receiveAssociation(net, &assoc, ASC_DEFAULTMAXPDU, nullptr, nullptr, OFFalse, DUL_NOBLOCK, 1);
    dcmExternalSocketHandle.set(DcmNativeSocketType(-1));
    if (layer.next) {  // DCMTK failed before taking it
      delete layer.next;
      layer.next = nullptr;
    }
  }
  if (c.bad()) {
    if (assoc) {
      ASC_dropAssociation(assoc);
      ASC_destroyAssociation(&assoc);
    }
    refused(peer, "bad_request", std::string("association request not understood: ") + c.text());
    return;
  }
  count("association");
  {
    StorageScp scp(*this, peer, tls);
    scp.setSharedConfig(cfg);
    scp.run(assoc);
    // Released, rejected or aborted: nothing more is read. Shutting the
    // socket down lets DCMTK's drop (in ~DcmSCP) close it at once instead of
    // waiting up to 180 s for a peer that does not close its end.
    ::shutdown(fd, SHUT_RDWR);
  }
}

Receiver::Receiver(ReceiverOptions o, StoreSink& sink) : impl_(std::make_unique<Impl>(std::move(o), sink)) {
  Impl& r = *impl_;
  ICH_CHECK(r.o.policy, "the receiver needs an access policy");
  std::filesystem::create_directories(r.o.incoming);
  IpAddress bind_ip;
  ICH_CHECK(parse_ip(r.o.bind, bind_ip), "--bind '", r.o.bind, "' is not an IPv4 or IPv6 address");
  const bool v6 = r.o.bind.find(':') != std::string::npos;
  r.listen_fd = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ICH_CHECK(r.listen_fd >= 0, "cannot create a socket: ", std::strerror(errno));
  int one = 1;
  ::setsockopt(r.listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (v6) {
    auto& a = reinterpret_cast<sockaddr_in6&>(ss);
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(uint16_t(r.o.port));
    std::memcpy(&a.sin6_addr, bind_ip.bytes.data(), 16);
    len = sizeof a;
  } else {
    auto& a = reinterpret_cast<sockaddr_in&>(ss);
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(r.o.port));
    std::memcpy(&a.sin_addr, bind_ip.bytes.data() + 12, 4);
    len = sizeof a;
  }
  if (::bind(r.listen_fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || ::listen(r.listen_fd, 128) != 0) {
    const int e = errno;
    ::close(r.listen_fd);
    ICH_CHECK(false, "cannot listen on ", r.o.bind, " port ", r.o.port, ": ", std::strerror(e),
              e == EADDRINUSE ? " (another ich-serve or DICOM node listens there: --port)" : "");
  }
  sockaddr_storage got{};
  socklen_t gl = sizeof got;
  ::getsockname(r.listen_fd, reinterpret_cast<sockaddr*>(&got), &gl);
  port_ = ntohs(got.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6&>(got).sin6_port
                                          : reinterpret_cast<sockaddr_in&>(got).sin_port);

  // DCMTK's side: an acceptor network without a listening socket of its own
  // (dcmExternalSocketHandle set while it is made), our transport layer.
  dcmDisableGethostbyaddr.set(OFTrue);  // no reverse DNS under the hand-over lock
  {
    std::lock_guard<std::mutex> l(g_handoff);
    dcmExternalSocketHandle.set(DcmNativeSocketType(r.listen_fd));
    const OFCondition c = ASC_initializeNetwork(NET_ACCEPTOR, r.o.port, r.o.acse_timeout_s, &r.net);
    dcmExternalSocketHandle.set(DcmNativeSocketType(-1));
    ICH_CHECK(c.good(), "cannot set up DCMTK's network: ", c.text());
    ICH_CHECK(ASC_setTransportLayer(r.net, &r.layer, 0).good(), "cannot set DCMTK's transport layer");
  }
  DcmSCPConfig& cfg = *r.cfg.operator->();
  cfg.setAETitle(r.o.aet.c_str());
  cfg.setRespondWithCalledAETitle(OFFalse);
  cfg.setDIMSEBlockingMode(DIMSE_NONBLOCKING);
  cfg.setDIMSETimeout(Uint32(r.o.dimse_timeout_s));
  cfg.setACSETimeout(Uint32(r.o.acse_timeout_s));
  cfg.setHostLookupEnabled(OFFalse);
  OFList<OFString> ts;
  for (const char* t : {UID_LittleEndianExplicitTransferSyntax, UID_LittleEndianImplicitTransferSyntax,
                        UID_BigEndianExplicitTransferSyntax, UID_DeflatedExplicitVRLittleEndianTransferSyntax,
                        UID_RLELosslessTransferSyntax, UID_JPEGProcess1TransferSyntax, UID_JPEGProcess2_4TransferSyntax,
                        UID_JPEGProcess14TransferSyntax, UID_JPEGProcess14SV1TransferSyntax,
                        UID_JPEGLSLosslessTransferSyntax, UID_JPEGLSLossyTransferSyntax,
                        UID_JPEG2000LosslessOnlyTransferSyntax, UID_JPEG2000TransferSyntax})
    ts.push_back(t);
  OFList<OFString> plain;
  plain.push_back(UID_LittleEndianExplicitTransferSyntax);
  plain.push_back(UID_LittleEndianImplicitTransferSyntax);
  for (const std::string& sop : kAcceptedSopClasses)
    ICH_CHECK(cfg.addPresentationContext(sop.c_str(), ts).good(), "cannot add the storage presentation context ", sop);
  ICH_CHECK(cfg.addPresentationContext(UID_VerificationSOPClass, plain).good(), "cannot add Verification");
}

Receiver::~Receiver() {
  Impl& r = *impl_;
  if (r.listen_fd >= 0) ::close(r.listen_fd);
  for (auto& w : r.workers)
    if (w.thread.joinable()) w.thread.join();
  if (r.net) ASC_dropNetwork(&r.net);
}

void Receiver::run(const std::atomic<bool>& stop) {
  Impl& r = *impl_;
  auto reap = [&](bool all) {
    for (auto it = r.workers.begin(); it != r.workers.end();) {
      if (all || it->done->load()) {
        it->thread.join();
        it = r.workers.erase(it);
      } else {
        ++it;
      }
    }
  };
  while (!stop.load()) {
    reap(false);
    pollfd p{r.listen_fd, POLLIN, 0};
    if (::poll(&p, 1, 200) <= 0) continue;
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    const int fd = ::accept4(r.listen_fd, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));  // out of descriptors: let associations end
      continue;
    }
    const IpAddress peer = peer_of(ss);
    std::string full;
    {
      std::lock_guard<std::mutex> l(r.mu);
      if (r.handshakes >= r.o.max_handshakes) full = "all " + std::to_string(r.o.max_handshakes) + " handshake slots are taken";
      else if (r.handshakes_by_host[peer.text] >= r.o.max_handshakes_per_host)
        full = std::to_string(r.o.max_handshakes_per_host) + " connections from this address are still in their handshake";
      if (full.empty()) {
        r.handshakes += 1;
        r.handshakes_by_host[peer.text] += 1;
        r.handshake_fds.insert(fd);
        r.gauges();
      } else if (r.handshakes_by_host[peer.text] == 0) {
        r.handshakes_by_host.erase(peer.text);
      }
    }
    if (!full.empty()) {
      ::close(fd);
      r.refused(peer, "too_many", full);
      continue;
    }
    auto done = std::make_shared<std::atomic<bool>>(false);
    try {
      r.workers.push_back({std::thread([&r, fd, peer, done] {
                             try {
                               r.serve_connection(fd, peer);
                             } catch (const std::exception& e) {
                               std::fprintf(stderr, "ich-serve: connection from %s: %s\n", peer.text.c_str(), e.what());
                             }
                             *done = true;
                           }),
                           done});
    } catch (const std::system_error& e) {  // no thread to be had
      r.end_handshake(fd, peer);
      ::close(fd);
      r.refused(peer, "too_many", std::string("cannot start a thread: ") + e.what());
    }
  }
  // Stop: no new connection; handshakes end now; associations run out.
  ::close(r.listen_fd);
  r.listen_fd = -1;
  {
    std::lock_guard<std::mutex> l(r.mu);
    for (int fd : r.handshake_fds) ::shutdown(fd, SHUT_RDWR);
  }
  reap(true);
}

}  // namespace ich
