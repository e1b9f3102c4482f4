// fhir.cpp: the FHIR R4 Bundle of a study's results, and its POST (fhir.h).
#include "serve/fhir.h"

#include <fstream>
#include <random>
#include <sstream>

#include "engine/error.h"
#include "io/json.h"
#include "serve/dicomweb.h"

namespace ich {

const char* const kPrivateCodeSystem = "urn:ich:codes:99ICH";

namespace {

std::string system_of(const std::string& scheme) {
  if (scheme == "SCT") return "http://snomed.info/sct";
  if (scheme == "DCM") return "http://dicom.nema.org/resources/ontology/DCM";
  if (scheme == "UCUM") return "http://unitsofmeasure.org";
  return kPrivateCodeSystem;
}

std::string coding(const std::string& scheme, const std::string& code, const std::string& display) {
  return "{\"system\":" + json_quote(system_of(scheme)) + ",\"code\":" + json_quote(code) +
         ",\"display\":" + json_quote(display) + "}";
}
std::string codeable(const std::string& scheme, const std::string& code, const std::string& display) {
  return "{\"coding\":[" + coding(scheme, code, display) + "]}";
}
std::string dicom_uid(const std::string& uid) {
  return "{\"system\":\"urn:dicom:uid\",\"value\":" + json_quote("urn:oid:" + uid) + "}";
}

// A random version-4 UUID, for the Bundle's fullUrls (urn:uuid:).
std::string uuid4(std::mt19937_64& g) {
  const uint64_t a = g(), b = g();
  char buf[40];
  std::snprintf(buf, sizeof buf, "%08x-%04x-4%03x-%04x-%012llx", unsigned(a >> 32), unsigned((a >> 16) & 0xffff),
                unsigned(a & 0xfff), unsigned(0x8000 | ((b >> 48) & 0x3fff)), (unsigned long long)(b & 0xffffffffffffULL));
  return buf;
}

std::string header_value(const StudyFindings& f, const std::string& keyword) {
  for (const auto& [k, v] : f.header.values)
    if (k == keyword) return v;
  return "";
}

// A DICOM DA (YYYYMMDD) as a FHIR date, "" when it is not one.
std::string fhir_date(const std::string& da) {
  if (da.size() != 8 || da.find_first_not_of("0123456789") != std::string::npos) return "";
  return da.substr(0, 4) + "-" + da.substr(4, 2) + "-" + da.substr(6, 2);
}

// A JSON number from ich-predict's text of a probability ("0.51147").
std::string number(const std::string& text) {
  ICH_CHECK(!text.empty() && text.find_first_not_of("0123456789.eE+-") == std::string::npos, "FHIR: '", text,
            "' is not a number");
  return text;
}

}  // namespace

std::string fhir_bundle(const StudyFindings& f, const WrittenResults& w, const std::string& issued) {
  std::mt19937_64 g(std::random_device{}());
  const std::string patient_id = header_value(f, "PatientID"), date = fhir_date(header_value(f, "StudyDate"));
  const std::string subject =
      patient_id.empty() ? "" : ",\"subject\":{\"identifier\":{\"value\":" + json_quote(patient_id) + "}}";
  const std::string when = (date.empty() ? "" : ",\"effectiveDateTime\":\"" + date + "\"") + ",\"issued\":" + json_quote(issued);
  const std::string study = "{\"identifier\":" + dicom_uid(f.study_uid) + "}";
  const std::string device = "{\"display\":" + json_quote(f.algorithm_name + ", " + f.algorithm_version) + "}";
  std::vector<std::string> obs_urls, obs_entries;
  const int order[6] = {5, 0, 1, 2, 3, 4};  // as the SR: any first
  for (int i = 0; i < 6; ++i) {
    const size_t k = size_t(order[i]);
    const FindingCode& fc = kFindingCodes[k];
    const std::string url = "urn:uuid:" + uuid4(g);
    obs_urls.push_back(url);
    const std::string id = w.tracking_uids[k].empty() ? "" : dicom_uid(w.tracking_uids[k]);
    std::string o = "{\"resourceType\":\"Observation\"";
    if (!id.empty()) o += ",\"identifier\":[" + id + "]";
    o += ",\"status\":\"preliminary\",\"category\":[" +
         std::string("{\"coding\":[{\"system\":\"http://terminology.hl7.org/CodeSystem/observation-category\",\"code\":"
                     "\"imaging\",\"display\":\"Imaging\"}]}]") +
         ",\"code\":" + codeable(fc.scheme, fc.value, fc.meaning) + subject + when +
         ",\"valueCodeableConcept\":" +
         (f.found[k] ? codeable("SCT", "52101004", "Present") : codeable("SCT", "2667000", "Absent")) +
         ",\"bodySite\":" + codeable("SCT", "128319008", "Intracranial structure") + ",\"device\":" + device +
         ",\"derivedFrom\":[" + study + "]" + ",\"note\":[{\"text\":" + json_quote(kResultDisclaimer) + "}]" +
         ",\"component\":[{\"code\":" + codeable("DCM", "122157", "Probability") +
         ",\"valueQuantity\":{\"value\":" + number(f.p[k]) +
         ",\"unit\":\"1\",\"system\":\"http://unitsofmeasure.org\",\"code\":\"1\"}},{\"code\":" +
         codeable("99ICH", "THRESHOLD", "Operating threshold of the probability") + ",\"valueQuantity\":{\"value\":" +
         number(f.threshold[k]) + ",\"unit\":\"1\",\"system\":\"http://unitsofmeasure.org\",\"code\":\"1\"}}]}";
    std::string e = "{\"fullUrl\":" + json_quote(url) + ",\"resource\":" + o + ",\"request\":{\"method\":\"POST\",\"url\":\"Observation\"";
    if (!id.empty()) e += ",\"ifNoneExist\":" + json_quote("identifier=urn:dicom:uid|urn:oid:" + w.tracking_uids[k]);
    obs_entries.push_back(e + "}}");
  }
  std::string conclusion = std::string("AI triage of head CT: intracranial hemorrhage ") +
                           (f.present ? "present" : "absent") + " (p(any) " + f.p[5] + ", operating threshold " +
                           f.threshold[5] + "; " + f.operating_point + ")";
  std::string found;
  for (size_t k = 0; k < 5; ++k)
    if (f.found[k]) found += std::string(found.empty() ? "" : ", ") + kFindingCodes[k].tracking + " " + f.p[k];
  if (!found.empty()) conclusion += "; subtypes at or above it: " + found;
  conclusion += ". " + std::string(kResultDisclaimer);
  std::string r = "{\"resourceType\":\"DiagnosticReport\"";
  if (!w.sr_sop_uid.empty()) r += ",\"identifier\":[" + dicom_uid(w.sr_sop_uid) + "]";
  r += ",\"status\":\"preliminary\",\"category\":[{\"coding\":[{\"system\":\"http://terminology.hl7.org/CodeSystem/v2-0074\","
       "\"code\":\"RAD\",\"display\":\"Radiology\"}]}]" +
       std::string(",\"code\":") + codeable("SCT", "303653007", "Computed tomography of head") + subject + when +
       ",\"imagingStudy\":[" + study + "],\"result\":[";
  for (size_t i = 0; i < obs_urls.size(); ++i) r += std::string(i ? "," : "") + "{\"reference\":" + json_quote(obs_urls[i]) + "}";
  r += "],\"conclusion\":" + json_quote(conclusion);
  if (f.present) r += ",\"conclusionCode\":[" + codeable("SCT", "1386000", "Intracranial hemorrhage") + "]";
  r += "}";
  std::string bundle = "{\"resourceType\":\"Bundle\",\"type\":\"transaction\"";
  if (!w.sr_sop_uid.empty()) bundle += ",\"identifier\":" + dicom_uid(w.sr_sop_uid);
  bundle += ",\"entry\":[{\"fullUrl\":" + json_quote("urn:uuid:" + uuid4(g)) + ",\"resource\":" + r +
            ",\"request\":{\"method\":\"POST\",\"url\":\"DiagnosticReport\"";
  if (!w.sr_sop_uid.empty()) bundle += ",\"ifNoneExist\":" + json_quote("identifier=urn:dicom:uid|urn:oid:" + w.sr_sop_uid);
  bundle += "}}";
  for (const std::string& e : obs_entries) bundle += "," + e;
  bundle += "]}\n";
  return bundle;
}

void post_fhir_bundle(const FhirDestination& d, const std::string& bundle_path) {
  std::ifstream in(bundle_path, std::ios::binary);
  ICH_CHECK(in.good(), "FHIR ", d.url, ": cannot read ", bundle_path);
  std::ostringstream s;
  s << in.rdbuf();
  const auto [status, answer] =
      http_post(d.url, "FHIR", d.auth, d.ca_file, d.timeout_s, "application/fhir+json", "application/fhir+json", s.str());
  ICH_CHECK(status == 200 || status == 201, "FHIR ", d.url, ": HTTP ", status, ": ", answer.substr(0, 300));
}

}  // namespace ich
