// tls.cpp: DcmTLSTransportLayer set up as tls.h says.
#include "serve/tls.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmtls/tlslayer.h>

#include <filesystem>
#include <mutex>

#include "engine/error.h"

namespace ich {

std::shared_ptr<DcmTLSTransportLayer> make_tls_layer(const TlsFiles& f, bool server) {
  static std::once_flag once;
  std::call_once(once, [] { DcmTLSTransportLayer::initializeOpenSSL(); });
  const char* side = server ? "--tls" : "--dest-tls";
  for (const std::string* p : {&f.key, &f.cert, &f.ca})
    ICH_CHECK(p->empty() || std::filesystem::is_regular_file(*p), *p, ": no such file (", side, "-* options)");
  ICH_CHECK(f.key.empty() == f.cert.empty(), side, "-key and ", side, "-cert go together (a certificate and its private key)");
  if (server) ICH_CHECK(!f.cert.empty(), "--tls-cert and --tls-key are needed to accept TLS associations");
  else ICH_CHECK(!f.ca.empty(), "--dest-tls-ca is needed to send over TLS (the CA that signed the destination's certificate)");
  auto layer = std::make_shared<DcmTLSTransportLayer>(server ? NET_ACCEPTOR : NET_REQUESTOR, nullptr, OFFalse);
  ICH_CHECK(bool(*layer), side, ": cannot create a TLS context (OpenSSL)");
  if (!f.cert.empty()) {
    layer->setPrivateKeyPasswd("");  // an encrypted key fails here instead of asking on a terminal
    ICH_CHECK(layer->setPrivateKeyFile(f.key.c_str(), DCF_Filetype_PEM).good(), f.key,
              ": cannot load the private key (PEM, unencrypted)");
    ICH_CHECK(layer->setCertificateFile(f.cert.c_str(), DCF_Filetype_PEM).good(), f.cert, ": cannot load the certificate (PEM)");
    ICH_CHECK(layer->checkPrivateKeyMatchesCertificate(), f.key, " does not belong to the certificate ", f.cert);
  }
  if (!f.ca.empty())
    ICH_CHECK(layer->addTrustedCertificateFile(f.ca.c_str(), DCF_Filetype_PEM).good(), f.ca, ": cannot load the CA certificate (PEM)");
  OFCondition c = layer->setTLSProfile(TSP_Profile_BCP195_ND);
  ICH_CHECK(c.good(), side, ": the BCP 195 TLS profile is not available: ", c.text());
  c = layer->activateCipherSuites();
  ICH_CHECK(c.good(), side, ": cannot activate the BCP 195 cipher suites: ", c.text());
  // A server with a CA requires a client certificate chaining to it; a
  // client always verifies the server.
  layer->setCertificateVerification(f.ca.empty() ? DCV_ignoreCertificate : DCV_requireCertificate);
  return layer;
}

}  // namespace ich
