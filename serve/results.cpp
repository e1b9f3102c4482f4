// results.cpp: the SR (dcmsr's DSRDocument) and the Secondary Capture key
// images (a dataset built element by element), as results.h describes.
#include "serve/results.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmsr/dsrdoc.h>

#include <filesystem>

#include "data/labels.h"
#include "engine/error.h"
#include "io/atomic_file.h"

namespace ich {

namespace fs = std::filesystem;

const FindingCode kFindingCodes[6] = {
    {"EDH", "99ICH", "Epidural hemorrhage", "epidural hemorrhage"},
    {"274100004", "SCT", "Cerebral hemorrhage", "intraparenchymal hemorrhage"},
    {"IVH", "99ICH", "Intraventricular hemorrhage", "intraventricular hemorrhage"},
    {"21454007", "SCT", "Subarachnoid hemorrhage", "subarachnoid hemorrhage"},
    {"SDH", "99ICH", "Subdural hemorrhage", "subdural hemorrhage"},
    {"1386000", "SCT", "Intracranial hemorrhage", "intracranial hemorrhage (any subtype)"},
};

namespace {

// Patient and General Study modules (type 1 and 2 first, then type 3 kept when present).
const char* kHeaderTags[] = {"SpecificCharacterSet", "PatientName",     "PatientID",        "IssuerOfPatientID",
                             "PatientBirthDate",     "PatientSex",      "StudyDate",        "StudyTime",
                             "AccessionNumber",      "ReferringPhysicianName", "StudyID", "StudyDescription"};
const char* kType2[] = {"PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
                        "StudyTime",   "AccessionNumber", "ReferringPhysicianName", "StudyID"};

DcmTagKey tag_of(const std::string& keyword) {
  DcmTag tag;
  ICH_CHECK(DcmTag::findTagFromName(keyword.c_str(), tag).good(), "no DICOM keyword ", keyword);
  return tag;
}

void put(DcmItem& d, const DcmTagKey& tag, const std::string& v, const std::string& where) {
  const OFCondition c = d.putAndInsertString(tag, v.c_str());
  ICH_CHECK(c.good(), where, ": cannot set ", DcmTag(tag).getTagName(), " to '", v, "': ", c.text());
}

void put_header(DcmItem& d, const StudyHeader& h, const std::string& study_uid, const std::string& where) {
  for (const auto& [k, v] : h.values) put(d, tag_of(k), v, where);
  for (const char* k : kType2)
    if (!d.tagExists(tag_of(k))) put(d, tag_of(k), "", where);
  put(d, DCM_StudyInstanceUID, study_uid, where);
}

std::string today(bool time) {
  char buf[32];
  const OFDateTime now = OFDateTime::getCurrentDateTime();
  OFString s;
  if (time) now.getTime().getISOFormattedTime(s, true, false, false, false);
  else now.getDate().getISOFormattedDate(s, false);
  std::snprintf(buf, sizeof buf, "%s", s.c_str());
  return buf;
}

// Contributing Equipment (PS3.3 C.12.1.1.5 via the SOP Common module): ich
// as processing equipment, as IHE AI Results asks of an AI result object.
void put_contributing_equipment(DcmItem& d, const StudyFindings& f, const std::string& where) {
  DcmItem* item = nullptr;
  ICH_CHECK(d.findOrCreateSequenceItem(DCM_ContributingEquipmentSequence, item, -2).good() && item, where,
            ": cannot add the Contributing Equipment Sequence");
  put(*item, DCM_Manufacturer, "ich", where);
  put(*item, DCM_ManufacturerModelName, f.algorithm_name.substr(0, 64), where);
  put(*item, DCM_SoftwareVersions, f.algorithm_version.substr(0, 64), where);
  put(*item, DCM_StationName, f.station_aet.substr(0, 16), where);
  put(*item, DCM_ContributionDateTime, today(false) + today(true), where);
  put(*item, DCM_ContributionDescription, "AI triage results (intracranial hemorrhage); not for diagnostic use", where);
  DcmItem* code = nullptr;
  ICH_CHECK(item->findOrCreateSequenceItem(DCM_PurposeOfReferenceCodeSequence, code, -2).good() && code, where,
            ": cannot add the purpose of reference");
  put(*code, DCM_CodeValue, "109102", where);
  put(*code, DCM_CodingSchemeDesignator, "DCM", where);
  put(*code, DCM_CodeMeaning, "Processing Equipment", where);
}

// Written under a temporary name, flushed to disk, then renamed: a result
// the node sends (now, or again after a restart) is whole even after a
// power cut, as the study's state that says it was written. The name is
// fixed ("<path>.tmp", one writer a study at a time): what a killed node
// left is written over by the restart, not left beside.
void save_atomic(DcmFileFormat& ff, const std::string& path) {
  const std::string tmp = path + ".tmp";
  const OFCondition c = ff.saveFile(tmp.c_str(), EXS_LittleEndianExplicit);
  if (c.bad()) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw Error(path + ": cannot write: " + c.text());
  }
  commit_written_file(tmp, path);
}

// The private coding scheme of the codes for which no standard one was
// confirmed (PS3.3 C.12.1.1.4), declared in the SR.
void put_private_scheme(DcmItem& d, const std::string& where) {
  DcmItem* cs = nullptr;
  ICH_CHECK(d.findOrCreateSequenceItem(DCM_CodingSchemeIdentificationSequence, cs, -2).good() && cs, where,
            ": cannot add the Coding Scheme Identification Sequence");
  put(*cs, DCM_CodingSchemeDesignator, "99ICH", where);
  put(*cs, DCM_CodingSchemeName, "ich findings and model outputs", where);
  put(*cs, DCM_CodingSchemeResponsibleOrganization, "ich", where);
}

void check(const OFCondition& c, const char* what) { ICH_CHECK(c.good(), "SR: ", what, ": ", c.text()); }

// The SR's content tree: addContentItem below the current item, then goUp().
class Tree {
 public:
  explicit Tree(DSRDocument& doc) : t_(doc.getTree()) {}
  DSRContentItem& add(DSRTypes::E_RelationshipType rel, DSRTypes::E_ValueType type, const DSRCodedEntryValue& name,
                      bool child) {
    const size_t id = t_.addContentItem(rel, type, child ? DSRTypes::AM_belowCurrent : DSRTypes::AM_afterCurrent);
    ICH_CHECK(id > 0, "SR: cannot add a content item with concept ", name.getCodeMeaning().c_str(),
              " (relationship not allowed in a Comprehensive SR)");
    ICH_CHECK(t_.getCurrentContentItem().setConceptName(name).good(), "SR: bad concept name ",
              name.getCodeMeaning().c_str());
    return t_.getCurrentContentItem();
  }
  // One content item of each value type, its value set and checked (`what` names it in the error).
  void text(DSRTypes::E_RelationshipType rel, const DSRCodedEntryValue& name, const std::string& v, bool child,
            const char* what) {
    check(add(rel, DSRTypes::VT_Text, name, child).setStringValue(v.c_str()), what);
  }
  void uid(DSRTypes::E_RelationshipType rel, const DSRCodedEntryValue& name, const std::string& v, bool child,
           const char* what) {
    check(add(rel, DSRTypes::VT_UIDRef, name, child).setStringValue(v.c_str()), what);
  }
  void code(DSRTypes::E_RelationshipType rel, const DSRCodedEntryValue& name, const DSRCodedEntryValue& v, bool child,
            const char* what) {
    check(add(rel, DSRTypes::VT_Code, name, child).setCodeValue(v), what);
  }
  void num(DSRTypes::E_RelationshipType rel, const DSRCodedEntryValue& name, const std::string& v,
           const DSRCodedEntryValue& unit, bool child, const char* what) {
    check(add(rel, DSRTypes::VT_Num, name, child).setNumericValue(DSRNumericMeasurementValue(v.c_str(), unit)), what);
  }
  void image(DSRTypes::E_RelationshipType rel, const DSRCodedEntryValue& name, const DSRImageReferenceValue& v, bool child,
             const char* what) {
    check(add(rel, DSRTypes::VT_Image, name, child).setImageReference(v, OFFalse), what);
  }
  // A container's template identification (ContentTemplateSequence; DCMR).
  void templ(const char* id) { check(t_.getCurrentContentItem().setTemplateIdentification(id, "DCMR"), "template identification"); }
  void up() { t_.goUp(); }
  DSRDocumentTree& t_;
};

}  // namespace

std::string new_dicom_uid() {
  char buf[100];
  dcmGenerateUniqueIdentifier(buf, SITE_INSTANCE_UID_ROOT);
  return buf;
}

StudyHeader read_study_header(const std::string& path) {
  DcmFileFormat ff;
  const OFCondition c = ff.loadFile(path.c_str(), EXS_Unknown, EGL_noChange, 4096);
  ICH_CHECK(c.good(), path, ": cannot read: ", c.text());
  StudyHeader h;
  for (const char* k : kHeaderTags) {
    OFString v;
    if (ff.getDataset()->findAndGetOFStringArray(tag_of(k), v).good()) h.values.emplace_back(k, v.c_str());
  }
  return h;
}

const char* const kResultDisclaimer =
    "For research use only. Not for diagnostic use. Results of an AI model (ich), UNVERIFIED: a radiologist "
    "must read the study.";

namespace {

// Series numbers of a round's results: the SR, the key images, the KOS.
std::string series_number(const StudyFindings& f, int k) { return std::to_string(9900 + 3 * f.round + k); }

// The key images as Secondary Capture (RGB, burned-in caption), in a new
// series of the study: DIR/key_<k>.dcm; fills each key's sop_uid and w's
// series and paths.
void write_key_images(const StudyFindings& f, std::vector<KeyImage>& keys, const std::string& dir, WrittenResults& w) {
  w.sc_series_uid = new_dicom_uid();
  const std::string disclaimer = kResultDisclaimer;
  const std::string date = today(false), time = today(true);
  for (size_t k = 0; k < keys.size(); ++k) {
    KeyImage& key = keys[k];
    key.sop_uid = new_dicom_uid();
    const std::string path = dir + "/key_" + std::to_string(k + 1) + ".dcm";
    DcmFileFormat ff;
    DcmDataset& d = *ff.getDataset();
    put_header(d, f.header, f.study_uid, path);
    put(d, DCM_SOPClassUID, UID_SecondaryCaptureImageStorage, path);
    put(d, DCM_SOPInstanceUID, key.sop_uid, path);
    put(d, DCM_SeriesInstanceUID, w.sc_series_uid, path);
    put(d, DCM_Modality, "OT", path);
    put(d, DCM_BodyPartExamined, "HEAD", path);  // not a paired structure: no Laterality
    put(d, DCM_SeriesNumber, series_number(f, 1), path);
    put(d, DCM_InstanceNumber, std::to_string(k + 1), path);
    put(d, DCM_SeriesDescription, "ICH AI key images - NOT FOR DIAGNOSTIC USE", path);
    put(d, DCM_Manufacturer, "ich", path);
    put(d, DCM_ConversionType, "WSD", path);
    put(d, DCM_ImageType, "DERIVED\\SECONDARY", path);
    put(d, DCM_ContentDate, date, path);
    put(d, DCM_ContentTime, time, path);
    put(d, DCM_PatientOrientation, "", path);
    put(d, DCM_BurnedInAnnotation, "YES", path);
    put(d, DCM_LossyImageCompression, "00", path);
    put(d, DCM_DerivationDescription,
        "Brain window of the source slice with the Grad-CAM heatmap of p(any); probabilities burned in", path);
    put(d, DCM_ImageComments, disclaimer, path);
    DcmItem* src = nullptr;
    ICH_CHECK(d.findOrCreateSequenceItem(DCM_SourceImageSequence, src, -2).good() && src, path,
              ": cannot add the Source Image Sequence");
    put(*src, DCM_ReferencedSOPClassUID, key.source.sop_class_uid, path);
    put(*src, DCM_ReferencedSOPInstanceUID, key.source.sop_uid, path);
    if (key.source.frame > 0) put(*src, DCM_ReferencedFrameNumber, std::to_string(key.source.frame), path);
    ICH_CHECK(d.putAndInsertUint16(DCM_SamplesPerPixel, 3).good() && d.putAndInsertUint16(DCM_PlanarConfiguration, 0).good() &&
                  d.putAndInsertUint16(DCM_Rows, Uint16(key.h)).good() && d.putAndInsertUint16(DCM_Columns, Uint16(key.w)).good() &&
                  d.putAndInsertUint16(DCM_BitsAllocated, 8).good() && d.putAndInsertUint16(DCM_BitsStored, 8).good() &&
                  d.putAndInsertUint16(DCM_HighBit, 7).good() && d.putAndInsertUint16(DCM_PixelRepresentation, 0).good(),
              path, ": cannot set the image pixel attributes");
    put(d, DCM_PhotometricInterpretation, "RGB", path);
    ICH_CHECK(key.rgb.size() == size_t(key.w) * size_t(key.h) * 3, path, ": key image has ", key.rgb.size(),
              " bytes for ", key.w, "x", key.h, " RGB");
    ICH_CHECK(d.putAndInsertUint8Array(DCM_PixelData, key.rgb.data(), key.rgb.size()).good(), path,
              ": cannot set the pixel data");
    put_contributing_equipment(d, f, path);
    save_atomic(ff, path);
    w.sc_paths.push_back(path);
  }
}

DSRCodedEntryValue code_of(const FindingCode& f) { return DSRCodedEntryValue(f.value, f.scheme, f.meaning); }

DSRImageReferenceValue image_ref(const SliceRef& r) {
  DSRImageReferenceValue ref(r.sop_class_uid.c_str(), r.sop_uid.c_str(), OFFalse);
  if (r.frame > 0) ref.getFrameList().addItem(Sint32(r.frame));
  return ref;
}


// A new series of the study for one SR document (the SR, the KOS): series
// number 9900 + 3 x round + k. The study's UIDs are copied as they came
// (de-identified sets such as RSNA's are not PS3.5 UIDs), so dcmsr's UID
// checks are off for them.
void new_series(DSRDocument& doc, const StudyFindings& f, const char* description, int k) {
  check(doc.createNewSeriesInStudy(f.study_uid.c_str(), OFFalse), "new series in the study");
  check(doc.setSeriesDescription(description), "series description");
  check(doc.setSeriesNumber(series_number(f, k).c_str()), "series number");
  check(doc.setInstanceNumber("1"), "instance number");
  check(doc.setManufacturer("ich"), "manufacturer");
}

// The document encoded with the study's patient and study attributes and
// Contributing Equipment, saved atomically at path; returns its SOP
// Instance UID (and its series', when asked).
std::string save_document(DSRDocument& doc, const StudyFindings& f, const std::string& path, bool private_scheme,
                          std::string* series_uid = nullptr) {
  DcmFileFormat ff;
  DcmDataset& d = *ff.getDataset();
  check(doc.write(d), "encoding");
  put_header(d, f.header, f.study_uid, path);
  put_contributing_equipment(d, f, path);
  OFString v;
  ICH_CHECK(d.findAndGetOFString(DCM_SOPInstanceUID, v).good(), path, ": no SOP Instance UID");
  const std::string sop = v.c_str();
  if (series_uid) {
    ICH_CHECK(d.findAndGetOFString(DCM_SeriesInstanceUID, v).good(), path, ": no Series Instance UID");
    *series_uid = v.c_str();
  }
  if (private_scheme) put_private_scheme(d, path);
  save_atomic(ff, path);
  return sop;
}

// The Comprehensive SR, a TID 1500 Imaging Measurement Report in a new
// series of the study: DIR/sr.dcm.
void write_report(const StudyFindings& f, const std::vector<KeyImage>& keys, const std::string& dir, WrittenResults& w) {
  using T = DSRTypes;
  using C = DSRCodedEntryValue;
  w.sr_path = dir + "/sr.dcm";
  DSRDocument doc(T::DT_ComprehensiveSR);
  new_series(doc, f, "ICH AI triage report - NOT FOR DIAGNOSTIC USE", 0);
  check(doc.setManufacturerModelName(f.algorithm_name.substr(0, 64).c_str()), "model name");
  check(doc.setSoftwareVersions(f.algorithm_version.substr(0, 64).c_str()), "software versions");
  Tree t(doc);
  // TID 1500: the title, its template, language (TID 1204), the device as observer (TID 1001/1004), the procedure
  t.add(T::RT_isRoot, T::VT_Container, C("126000", "DCM", "Imaging Measurement Report"), true);
  t.templ("1500");
  t.code(T::RT_hasConceptMod, C("121049", "DCM", "Language of Content Item and Descendants"),
         C("en-US", "RFC5646", "English (United States)"), true, "language");
  t.code(T::RT_hasObsContext, C("121005", "DCM", "Observer Type"), C("121007", "DCM", "Device"), false, "observer type");
  t.uid(T::RT_hasObsContext, C("121012", "DCM", "Device Observer UID"), f.observer_uid, false, "device observer UID");
  t.text(T::RT_hasObsContext, C("121013", "DCM", "Device Observer Name"), f.station_aet, false, "device observer name");
  t.text(T::RT_hasObsContext, C("121014", "DCM", "Device Observer Manufacturer"), "ich", false,
         "device observer manufacturer");
  t.text(T::RT_hasObsContext, C("121015", "DCM", "Device Observer Model Name"), f.algorithm_name, false,
         "device observer model name");
  t.code(T::RT_hasConceptMod, C("121058", "DCM", "Procedure reported"), C("303653007", "SCT", "Computed tomography of head"),
         false, "procedure reported");
  // Imaging Measurements: one TID 1501 group per label, "any" first
  t.add(T::RT_contains, T::VT_Container, C("126010", "DCM", "Imaging Measurements"), false);
  const C no_units("1", "UCUM", "no units");
  const int order[6] = {5, 0, 1, 2, 3, 4};
  for (int i = 0; i < 6; ++i) {
    const size_t k = size_t(order[i]);
    const FindingCode& fd = kFindingCodes[k];
    t.add(T::RT_contains, T::VT_Container, C("125007", "DCM", "Measurement Group"), i == 0);
    t.templ("1501");
    t.text(T::RT_hasObsContext, C("112039", "DCM", "Tracking Identifier"), "ICH AI: " + std::string(fd.tracking), true,
           "tracking identifier");
    w.tracking_uids[k] = new_dicom_uid();
    t.uid(T::RT_hasObsContext, C("112040", "DCM", "Tracking Unique Identifier"), w.tracking_uids[k], false,
          "tracking unique identifier");
    t.code(T::RT_contains, C("121071", "DCM", "Finding"), code_of(fd), false, "finding");
    t.code(T::RT_hasConceptMod, C("363698007", "SCT", "Finding Site"), C("128319008", "SCT", "Intracranial structure"),
           false, "finding site");
    t.text(T::RT_hasConceptMod, C("111001", "DCM", "Algorithm Name"), f.algorithm_name, false, "algorithm name");
    t.text(T::RT_hasConceptMod, C("111003", "DCM", "Algorithm Version"), f.algorithm_version, false, "algorithm version");
    // the probability (TID 300), inferred from the slice that has it
    t.num(T::RT_contains, C("122157", "DCM", "Probability"), f.p[k], no_units, false, "probability");
    if (!f.source[k].sop_uid.empty()) {
      t.image(T::RT_inferredFrom, C("121112", "DCM", "Source of Measurement"), image_ref(f.source[k]), true,
              "source of measurement");
      t.up();
    }
    t.num(T::RT_contains, C("THRESHOLD", "99ICH", "Operating threshold of the probability"), f.threshold[k], no_units,
          false, "threshold");
    // the qualitative evaluation: the finding present or absent at the threshold
    t.code(T::RT_contains, code_of(fd), f.found[k] ? C("52101004", "SCT", "Present") : C("2667000", "SCT", "Absent"), false,
           "qualitative evaluation");
    if (k == 5)  // the study's key slices, the source of the finding
      for (const KeyImage& key : keys)
        t.image(T::RT_contains, C("260753009", "SCT", "Source"), image_ref(key.source), false, "key slice");
    t.up();
  }
  t.up();
  const C comment("121106", "DCM", "Comment");
  t.text(T::RT_contains, comment, kResultDisclaimer, false, "disclaimer");
  t.text(T::RT_contains, comment, ("Operating thresholds: " + f.operating_point).substr(0, 1024), false, "operating point");
  for (const std::string& u : f.unreadable)
    t.text(T::RT_contains, comment, ("Instance not read, left out of the analysis: " + u).substr(0, 1024), false,
           "unreadable instance");
  for (const SliceRef& e : f.evidence)
    check(doc.getCurrentRequestedProcedureEvidence().addItem(f.study_uid.c_str(), e.series_uid.c_str(),
                                                             e.sop_class_uid.c_str(), e.sop_uid.c_str(), OFFalse),
          "evidence");
  for (const KeyImage& key : keys)
    check(doc.getPertinentOtherEvidence().addItem(f.study_uid.c_str(), w.sc_series_uid.c_str(),
                                                  UID_SecondaryCaptureImageStorage, key.sop_uid.c_str(), OFFalse),
          "key image evidence");
  check(doc.completeDocument(), "completion flag");
  w.sr_sop_uid = save_document(doc, f, w.sr_path, /*private_scheme=*/true, &w.sr_series_uid);
}

// The Key Object Selection document ("Of Interest", TID 2010): the key
// slices and their key images, in a new series of the study: DIR/kos.dcm.
void write_kos(const StudyFindings& f, const std::vector<KeyImage>& keys, const std::string& dir, WrittenResults& w) {
  using T = DSRTypes;
  w.kos_path = dir + "/kos.dcm";
  DSRDocument doc(T::DT_KeyObjectSelectionDocument);
  new_series(doc, f, "ICH AI key objects - NOT FOR DIAGNOSTIC USE", 2);
  Tree t(doc);
  t.add(T::RT_isRoot, T::VT_Container, DSRCodedEntryValue("113000", "DCM", "Of Interest"), true);
  t.templ("2010");
  const std::string description = "Slices with the highest probability of intracranial hemorrhage (p(any) " + f.p[5] +
                                  "), and their Grad-CAM key images. " + kResultDisclaimer;
  t.text(T::RT_contains, DSRCodedEntryValue("113012", "DCM", "Key Object Description"), description.substr(0, 1024), true,
         "KOS: description");
  // the key slices, then their key images: each an IMAGE item (no concept name) and in the evidence
  auto reference = [&](const std::string& series, const std::string& sop_class, const DSRImageReferenceValue& ref) {
    t.t_.addContentItem(T::RT_contains, T::VT_Image, T::AM_afterCurrent);
    check(t.t_.getCurrentContentItem().setImageReference(ref, OFFalse), "KOS: key object");
    check(doc.getCurrentRequestedProcedureEvidence().addItem(f.study_uid.c_str(), series.c_str(), sop_class.c_str(),
                                                             ref.getSOPInstanceUID().c_str(), OFFalse),
          "KOS: evidence");
  };
  for (const KeyImage& key : keys) reference(key.source.series_uid, key.source.sop_class_uid, image_ref(key.source));
  for (const KeyImage& key : keys)
    reference(w.sc_series_uid, UID_SecondaryCaptureImageStorage,
              DSRImageReferenceValue(UID_SecondaryCaptureImageStorage, key.sop_uid.c_str()));
  w.kos_sop_uid = save_document(doc, f, w.kos_path, /*private_scheme=*/false);
}

}  // namespace

WrittenResults write_study_results(const StudyFindings& f, std::vector<KeyImage>& keys, const std::string& dir) {
  fs::create_directories(dir);
  WrittenResults w;
  write_key_images(f, keys, dir, w);  // first: the SR and the KOS reference them
  write_report(f, keys, dir, w);
  write_kos(f, keys, dir, w);
  return w;
}

}  // namespace ich
