// receiver.h: ich-serve's storage SCP (DCMTK's DcmSCPPool of DcmThreadSCP
// workers): C-ECHO, and C-STORE of CT Image Storage and Enhanced CT Image
// Storage in every transfer syntax ich-window decodes. Several associations
// are served at once, one thread each (--max-associations; beyond it DCMTK's
// pool rejects with "local limit exceeded").
//
// Each instance is received straight to a file, bit for bit as sent
// (DIR/incoming/), then read; the receiver's owner decides what becomes of
// it (StoreSink) and which status the sender gets.
#pragma once
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace ich {

// What one association has received so far.
struct AssociationLog {
  std::string calling_aet, peer;
  std::string last_study;                  // the study of its last readable instance
  std::vector<std::string> unattributed;   // unreadable instances before any readable one
};

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
  int port = 11112;
  int max_associations = 8;
  std::string incoming;  // folder for instances being received
};

// Serves until stop is set (checked at least once a second); throws when the
// port cannot be opened.
void run_receiver(const ReceiverOptions& o, StoreSink& sink, const std::atomic<bool>& stop);

}  // namespace ich
