// sender.cpp: DcmSCU with one presentation context per SOP class sent.
#include "serve/sender.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmnet/scu.h>
#include <dcmtk/dcmtls/tlslayer.h>

#include <set>

#include "engine/error.h"

namespace ich {

std::string where(const Destination& d) {
  return d.aet + "@" + d.host + ":" + std::to_string(d.port) + (d.tls ? " over TLS" : "");
}

namespace {

// DCMTK 3.6.7 keeps DcmSCU::useSecureConnection() protected.
class Scu : public DcmSCU {
 public:
  using DcmSCU::useSecureConnection;
};

void connect(Scu& scu, const Destination& d, const std::set<std::string>& classes) {
  scu.setAETitle(d.calling_aet.c_str());
  scu.setPeerAETitle(d.aet.c_str());
  scu.setPeerHostName(d.host.c_str());
  scu.setPeerPort(Uint16(d.port));
  scu.setConnectionTimeout(d.timeout_s);
  scu.setACSETimeout(Uint32(d.timeout_s));
  scu.setDIMSETimeout(Uint32(d.timeout_s));
  scu.setDIMSEBlockingMode(DIMSE_NONBLOCKING);
  OFList<OFString> ts;
  ts.push_back(UID_LittleEndianExplicitTransferSyntax);
  ts.push_back(UID_LittleEndianImplicitTransferSyntax);
  for (const std::string& c : classes) scu.addPresentationContext(c.c_str(), ts);
  OFCondition c = scu.initNetwork();
  ICH_CHECK(c.good(), where(d), ": cannot set up the network: ", c.text());
  if (d.tls) {
    c = scu.useSecureConnection(d.tls.get());
    ICH_CHECK(c.good(), where(d), ": cannot use TLS: ", c.text());
  }
  c = scu.negotiateAssociation();
  ICH_CHECK(c.good(), where(d), ": association failed: ", c.text());
}

}  // namespace

void send_files(const Destination& d, const std::vector<std::string>& files) {
  std::vector<std::pair<std::string, DcmFileFormat>> loaded(files.size());
  std::set<std::string> classes;
  for (size_t i = 0; i < files.size(); ++i) {
    loaded[i].first = files[i];
    const OFCondition c = loaded[i].second.loadFile(files[i].c_str());
    ICH_CHECK(c.good(), files[i], ": cannot read: ", c.text());
    OFString sop;
    ICH_CHECK(loaded[i].second.getDataset()->findAndGetOFString(DCM_SOPClassUID, sop).good(), files[i],
              ": no SOP Class UID");
    classes.insert(sop.c_str());
  }
  Scu scu;
  connect(scu, d, classes);
  for (auto& [path, ff] : loaded) {
    OFString sop;
    ff.getDataset()->findAndGetOFString(DCM_SOPClassUID, sop);
    const T_ASC_PresentationContextID id = scu.findAnyPresentationContextID(sop, UID_LittleEndianExplicitTransferSyntax);
    ICH_CHECK(id != 0, where(d), " accepted no presentation context for ", sop.c_str(), " (", path, ")");
    Uint16 status = 0xFFFF;
    const OFCondition c = scu.sendSTORERequest(id, "", ff.getDataset(), status);
    ICH_CHECK(c.good(), where(d), ": C-STORE of ", path, " failed: ", c.text());
    // 0x0000 success; 0xB000, 0xB006, 0xB007 warnings: stored (PS3.4 B.2.3)
    ICH_CHECK(status == 0 || (status & 0xF000) == 0xB000, where(d), ": C-STORE of ", path, " answered status 0x",
              [&] { char b[8]; std::snprintf(b, sizeof b, "%04X", status); return std::string(b); }());
  }
  scu.releaseAssociation();
}

std::string echo(const Destination& d) {
  try {
    Scu scu;
    connect(scu, d, {UID_VerificationSOPClass});
    const OFCondition c = scu.sendECHORequest(0);
    scu.releaseAssociation();
    return c.good() ? "" : where(d) + ": C-ECHO failed: " + c.text();
  } catch (const std::exception& e) {
    return e.what();
  }
}

}  // namespace ich
