// results.h: the DICOM objects ich-serve sends back into the study.
//
// All three go into the original study (its StudyInstanceUID and
// patient/study attributes, copied from a received instance), each in a new
// series, with Contributing Equipment naming ich as processing equipment
// (IHE AI Results), and say that they are not for diagnostic use:
//   - a Comprehensive SR, a TID 1500 Imaging Measurement Report
//     (docs/serve.md has the tree and the codes): language, the device as
//     observer, the procedure reported (CT of the head), and one TID 1501
//     measurement group per label (intracranial hemorrhage, then each
//     subtype): tracking identifier and UID, the finding and its site, the
//     algorithm, the model's probability (the study's highest over its
//     slices, as ich-predict writes it) inferred from the slice that has
//     it, the operating threshold, the finding present or absent at it, and
//     the key slices as its source; a comment for each instance that could
//     not be read; VerificationFlag UNVERIFIED;
//   - Secondary Capture key images: RGB, the slice in the brain window under
//     the Grad-CAM heatmap of p(any), the probabilities burned in;
//   - a Key Object Selection document ("Of Interest") naming the key slices
//     and the key images, so that a viewer can jump to them.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace ich {

// Patient and study attributes copied from a received instance (tag -> value);
// PS3.3's type 2 ones are written empty when the instance lacks them.
struct StudyHeader {
  std::vector<std::pair<std::string, std::string>> values;  // keyword, value
};
StudyHeader read_study_header(const std::string& dicom_path);

struct SliceRef {
  std::string sop_class_uid, sop_uid, series_uid;
  int frame = 0;  // 1-based frame of a multi-frame instance; 0 when single-frame
};

struct KeyImage {
  SliceRef source;
  std::array<std::string, 6> p;  // as written by ich-predict
  int w = 0, h = 0;
  std::vector<uint8_t> rgb;  // h x w x 3, caption burned in
  std::string sop_uid;       // of the Secondary Capture
};

struct StudyFindings {
  std::string study_uid;
  StudyHeader header;
  std::vector<SliceRef> evidence;  // every slice read (the SR's Current Requested Procedure Evidence)
  std::array<std::string, 6> p;    // the study's highest probability per label (ich-predict's text)
  std::array<SliceRef, 6> source;  // per label: the slice that has that probability
  std::array<std::string, 6> threshold;  // per label: its operating threshold (the same one, or from validation)
  std::string operating_point;           // where they come from, in words (the SR's and the Bundle's comment)
  std::array<bool, 6> found{};           // per label: p >= its threshold
  bool present = false;            // found[any]
  std::vector<std::string> unreadable;  // "what: why" per instance not read
  std::string algorithm_name, algorithm_version;
  std::string station_aet;           // Device Observer Name
  std::string observer_uid;          // Device Observer UID (this node's)
  int64_t round = 1;                 // series numbers 9900 + 3 * round: + 0 the SR, + 1 the key images, + 2 the KOS
};

struct WrittenResults {
  std::string sr_path, sr_sop_uid, sr_series_uid, sc_series_uid, kos_path, kos_sop_uid;
  std::vector<std::string> sc_paths;
  std::array<std::string, 6> tracking_uids;  // each label's measurement group's (kSubtypes' order)
};

// The codes of the findings, in kSubtypes' order (docs/serve.md lists them
// with their sources): SNOMED CT where this project could confirm the
// concept, the declared private scheme 99ICH otherwise.
struct FindingCode {
  const char *value, *scheme, *meaning, *tracking;
};
extern const FindingCode kFindingCodes[6];

// What every result says of itself (the SR's comment, the key images, the
// KOS's description, the FHIR resources' notes).
extern const char* const kResultDisclaimer;

// Writes DIR/key_<k>.dcm, DIR/sr.dcm and DIR/kos.dcm (each atomically), in
// Explicit VR Little Endian; fills key images' sop_uid.
WrittenResults write_study_results(const StudyFindings& f, std::vector<KeyImage>& keys, const std::string& dir);

std::string new_dicom_uid();

}  // namespace ich
