// receiver.cpp: DcmThreadSCP with our C-STORE handling and association
// refusal; DcmSCPPool runs one per association.
#include "serve/receiver.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmnet/diutil.h>
#include <dcmtk/dcmnet/scppool.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>
#include <unistd.h>

#include "engine/error.h"

namespace ich {

namespace {

// DcmSCPPool builds its workers itself (default constructor), so they find
// the sink and the folder here; one receiver runs per process.
StoreSink* g_sink = nullptr;
std::string g_incoming;
std::atomic<int64_t> g_counter{0};

class StorageScp : public DcmThreadSCP {
 protected:
  void notifyAssociationRequest(const T_ASC_Parameters& params, DcmSCPActionType& action) override {
    log_ = AssociationLog();
    log_.calling_aet = params.DULparams.callingAPTitle;
    log_.peer = params.DULparams.callingPresentationAddress;
    try {
      refused_ = g_sink->refuse_association();
    } catch (const std::exception& e) {
      refused_ = e.what();
    }
    if (!refused_.empty()) {
      std::fprintf(stderr, "ich-serve: refused an association from %s (%s): %s\n", log_.calling_aet.c_str(),
                   log_.peer.c_str(), refused_.c_str());
      action = DCMSCP_ACTION_REFUSE_ASSOCIATION;
    }
  }
  // A refusal of ours is "rejected-transient, local limit exceeded": the
  // sender may try again later (PS3.8 9.3.4).
  void refuseAssociation(const DcmRefuseReasonType reason) override {
    DcmThreadSCP::refuseAssociation(refused_.empty() ? reason : DCMSCP_TOO_MANY_ASSOCIATIONS);
  }
  OFCondition handleIncomingCommand(T_DIMSE_Message* msg, const DcmPresentationContextInfo& info) override {
    if (msg->CommandField != DIMSE_C_STORE_RQ) return DcmThreadSCP::handleIncomingCommand(msg, info);
    T_DIMSE_C_StoreRQ& rq = msg->msg.CStoreRQ;
    const std::string path = g_incoming + "/" + std::to_string(::getpid()) + "-" + std::to_string(g_counter++) + ".part";
    OFCondition c = receiveSTORERequest(rq, info.presentationContextID, path.c_str());
    if (c.bad()) {  // the connection failed mid-instance: nothing was stored, the sender knows
      std::error_code ec;
      std::filesystem::remove(path, ec);
      return c;
    }
    uint16_t status = 0xA700;  // Refused: Out of Resources, when filing it failed (a full disk)
    try {
      status = g_sink->store(path, rq.AffectedSOPInstanceUID, log_);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "ich-serve: could not keep instance %s from %s: %s\n", rq.AffectedSOPInstanceUID,
                   log_.calling_aet.c_str(), e.what());
      std::error_code ec;
      std::filesystem::remove(path, ec);
    }
    return sendSTOREResponse(info.presentationContextID, rq, status);
  }
  void notifyAssociationTermination() override {
    try {
      g_sink->association_ended(log_);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "ich-serve: after an association from %s: %s\n", log_.calling_aet.c_str(), e.what());
    }
    log_ = AssociationLog();
  }

 private:
  AssociationLog log_;
  std::string refused_;
};

}  // namespace

void run_receiver(const ReceiverOptions& o, StoreSink& sink, const std::atomic<bool>& stop) {
  g_sink = &sink;
  g_incoming = o.incoming;
  std::filesystem::create_directories(o.incoming);
  DcmSCPPool<StorageScp> pool;
  DcmSCPConfig& cfg = pool.getConfig();
  cfg.setAETitle(o.aet.c_str());
  cfg.setPort(Uint16(o.port));
  cfg.setConnectionBlockingMode(DUL_NOBLOCK);
  cfg.setConnectionTimeout(1);  // the accept loop wakes each second to see stop
  cfg.setDIMSEBlockingMode(DIMSE_NONBLOCKING);
  cfg.setDIMSETimeout(60);
  cfg.setACSETimeout(30);
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
  for (const char* sop : {UID_CTImageStorage, UID_EnhancedCTImageStorage})
    ICH_CHECK(cfg.addPresentationContext(sop, ts).good(), "cannot add the storage presentation context ", sop);
  ICH_CHECK(cfg.addPresentationContext(UID_VerificationSOPClass, plain).good(), "cannot add Verification");
  pool.setMaxThreads(Uint16(o.max_associations));
  OFCondition result;
  std::atomic<bool> done{false};
  std::thread listener([&] {
    result = pool.listen();  // returns when it fails (the port) or is told to stop
    done = true;
  });
  while (!stop.load() && !done.load()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  if (!done.load()) pool.stopAfterCurrentAssociations();
  listener.join();
  ICH_CHECK(stop.load(), "cannot serve DICOM on port ", o.port, ": ", result.bad() ? result.text() : "the listener stopped");
}

}  // namespace ich
