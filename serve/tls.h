// tls.h: DICOM TLS for ich-serve (PS3.15 Annex B) on DCMTK's dcmtls and
// OpenSSL, with the BCP 195 non-downgrading profile: TLS 1.2 or newer only,
// the profile's cipher suites (DCMTK's TSP_Profile_BCP195_ND).
//
//   receiving  --tls-key and --tls-cert: this node's identity; --tls-ca: the
//              CA whose certificates senders must present (then a sender
//              without one, or with another CA's, fails the handshake)
//   sending    --dest-tls-ca: the CA the destination's certificate must
//              chain to (TLS to the destination is on when it is given);
//              --dest-tls-key/--dest-tls-cert: the certificate ich presents
#pragma once
#include <memory>
#include <string>

class DcmTLSTransportLayer;

namespace ich {

struct TlsFiles {
  std::string key, cert, ca;  // PEM files
};

// A transport layer for accepting (server) or requesting (client)
// associations; throws one line naming the file that could not be used.
std::shared_ptr<DcmTLSTransportLayer> make_tls_layer(const TlsFiles& f, bool server);

}  // namespace ich
