// sender.h: results back to the destination with C-STORE (DCMTK's DcmSCU),
// one association per study. Sending is idempotent: every object keeps the
// SOP Instance UID it was written with, so a resend after a kill or a
// failure stores nothing twice at a PACS (which keeps one instance per UID).
#pragma once
#include <memory>
#include <string>
#include <vector>

class DcmTLSTransportLayer;

namespace ich {

struct Destination {
  std::string aet, host, calling_aet = "ICH";
  int port = 0;
  int timeout_s = 30;
  std::shared_ptr<DcmTLSTransportLayer> tls;  // null: plain TCP (serve/tls.h)
};
std::string where(const Destination& d);  // "AET@host:port" (+ " over TLS")

// Sends the files in order; throws with one line (destination, file,
// DICOM status or network error) unless every one was stored (success or a
// warning status).
void send_files(const Destination& d, const std::vector<std::string>& files);

// C-ECHO: empty when the destination answers, else why not.
std::string echo(const Destination& d);

}  // namespace ich
