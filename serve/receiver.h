// receiver.h: ich-serve's storage SCP: C-ECHO, and C-STORE of the SOP
// classes in kAcceptedSopClasses in every transfer syntax ich-window decodes,
// for the peers the allow-list admits (serve/access.h), over TLS when
// configured (serve/tls.h).
//
// Why not DCMTK's DcmSCPPool (3.6.7): a connection that closes before its
// A-ASSOCIATE-RQ makes ASC_receiveAssociation succeed (the state machine's
// AA-5 on a closed connection in Sta2 returns normal), the pool starts a
// worker for it, and the worker's thread deletes its own object
// (notifyThreadExit) while the listener's OFThread::start() still writes the
// thread id into it: a use-after-free write (valgrind shows it), which is
// the heap corruption a port scan caused. Its listener also reads each
// A-ASSOCIATE-RQ itself, so one silent peer holds every other for the ACSE
// timeout. So the receiver owns its sockets and threads:
//
//   acceptor    accept(), limits on connections still in their handshake
//               (all peers, and per peer address), one thread per connection
//   connection  TLS handshake (if any), then the A-ASSOCIATE-RQ read whole
//               under one deadline (--acse-timeout) and checked (type 01,
//               length 68 B .. 1 MiB, items as serve/pdu.h says) before
//               DCMTK parses it; the
//               connection and the bytes read are handed to DCMTK's
//               ASC_receiveAssociation (through dcmExternalSocketHandle and
//               a transport layer of ours, under a lock held for no network
//               wait); the policy decides; an accepted association is served
//               on this same thread by a DcmThreadSCP of its own; the thread
//               is joined by the acceptor.
//
// Each instance is received straight to a file, bit for bit as sent
// (DIR/incoming/), then read; the receiver's owner decides what becomes of
// it (StoreSink) and which status the sender gets.
#pragma once
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

class DcmTLSTransportLayer;

namespace ich {

class AuditLog;
class Metrics;
class PolicyHolder;

// The storage SOP classes accepted (C-STORE); Verification besides them.
extern const std::vector<std::string> kAcceptedSopClasses;

// What one association brought of one study (its audit record).
struct ReceivedStudy {
  std::string patient_id;
  std::map<std::string, int64_t> sop_classes;  // SOP Class UID -> instances stored
};

// What one association has received so far.
struct AssociationLog {
  std::string calling_aet, peer;
  std::string last_study;                  // the study of its last readable instance
  std::vector<std::string> unattributed;   // unreadable instances before any readable one
  std::map<std::string, ReceivedStudy> received;
};

// The audit trail of what an association (or a STOW-RS request) stored: a
// "DICOM Instances Transferred" record per study, the peer as source.
void record_instances_received(AuditLog& audit, const std::string& node_aet, const AssociationLog& log,
                               const std::string& peer_address);

class StoreSink {
 public:
  virtual ~StoreSink() = default;
  // Empty when a new association may come in; else why not (it is refused
  // with A-ASSOCIATE-RJ: rejected-transient, local limit exceeded).
  virtual std::string refuse_association() = 0;
  // A received instance at path (the sink moves or removes it): the C-STORE
  // response status (0 success, 0xA700 out of resources, 0xC000 cannot understand).
  virtual uint16_t store(const std::string& path, const std::string& sop_uid_in_request, AssociationLog& log) = 0;
  virtual void association_ended(AssociationLog& log) = 0;
};

struct ReceiverOptions {
  std::string aet = "ICH";
  std::string bind = "0.0.0.0";   // an IPv4 or IPv6 address
  int port = 11112;
  int max_associations = 8;
  std::string incoming;           // folder for instances being received
  int acse_timeout_s = 10;        // a new connection's time to finish TLS and send its A-ASSOCIATE-RQ
  int dimse_timeout_s = 60;       // the longest wait for the next message of an association
  int max_handshakes = 32;        // connections not yet associations, all peers together
  int max_handshakes_per_host = 8;
  std::shared_ptr<DcmTLSTransportLayer> tls;  // null: plain TCP only
  bool tls_allow_plain = false;   // with tls: also plain associations on the same port
  const PolicyHolder* policy = nullptr;       // required: who may associate
  AuditLog* audit = nullptr;      // optional
  Metrics* metrics = nullptr;     // optional (serve/metrics.h names)
};

class Receiver {
 public:
  // Binds and listens (throws one line when the address or port cannot be used).
  Receiver(ReceiverOptions o, StoreSink& sink);
  ~Receiver();
  // Serves until stop is set (checked every 200 ms), then refuses new
  // connections, ends the handshakes and waits for the associations in
  // progress to end (each within its DIMSE timeout).
  void run(const std::atomic<bool>& stop);
  int port() const { return port_; }
  struct Impl;  // receiver.cpp's: the acceptor's state, shared with the connections' SCPs

 private:
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace ich
