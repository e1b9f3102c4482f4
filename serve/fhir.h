// fhir.h: a study's results for the EHR, as HL7 FHIR R4 (JSON): one
// transaction Bundle per study and round, written beside the DICOM results
// (results/fhir.json) and, with ich-serve --fhir URL, POSTed to that FHIR
// server's base, retried on its own schedule (serve/server.cpp): a FHIR
// server that is down never holds the DICOM results back.
//
// The Bundle follows the HL7 "DICOM SR to FHIR" mapping's choices, applied
// to what the SR says (serve/results.h):
//   DiagnosticReport  status preliminary (an unverified AI result), category
//                     RAD, code = the procedure (SNOMED CT 303653007, CT of
//                     head), the patient by identifier, the ImagingStudy by
//                     its Study Instance UID (urn:oid:), issued now, the
//                     conclusion in words with the disclaimer, conclusionCode
//                     the finding when present, result = the Observations;
//                     identifier = the SR's SOP Instance UID
//   Observation       one per label (the SR's measurement groups): status
//                     preliminary, category imaging, code = the finding
//                     (SNOMED CT, or the private system for 99ICH codes),
//                     bodySite intracranial structure, value = present or
//                     absent (SNOMED CT), components: the probability (DCM
//                     122157, UCUM 1) and the operating threshold; device =
//                     the algorithm; derivedFrom the study; identifier = the
//                     group's Tracking Unique Identifier
// Every entry is a conditional create (ifNoneExist on its identifier), so a
// resend after kill -9 creates nothing twice at the server.
#pragma once
#include <array>
#include <string>
#include <vector>

#include "serve/results.h"

namespace ich {

// The system URI of the private 99ICH codes in FHIR.
extern const char* const kPrivateCodeSystem;

// The Bundle (JSON text). `issued`: an instant, e.g. "2026-12-05T10:00:00Z".
std::string fhir_bundle(const StudyFindings& f, const WrittenResults& w, const std::string& issued);

struct FhirDestination {
  std::string url;   // the server's base: http(s)://host[:port]/path
  std::string auth;  // the Authorization header ("" for none)
  std::string ca_file;
  int timeout_s = 30;
};
// POSTs the Bundle file to the base URL; throws one line unless the server
// answers 200 or 201.
void post_fhir_bundle(const FhirDestination& d, const std::string& bundle_path);

}  // namespace ich
