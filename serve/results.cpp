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

void save_atomic(DcmFileFormat& ff, const std::string& path) {
  const std::string tmp = path + ".tmp";
  const OFCondition c = ff.saveFile(tmp.c_str(), EXS_LittleEndianExplicit);
  ICH_CHECK(c.good(), path, ": cannot write: ", c.text());
  fs::rename(tmp, path);
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
  void up() { t_.goUp(); }
  DSRDocumentTree& t_;
};

void check(const OFCondition& c, const char* what) { ICH_CHECK(c.good(), "SR: ", what, ": ", c.text()); }

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

namespace {

const char* const kDisclaimer =
    "For research use only. Not for diagnostic use. Results of an AI model (ich), UNVERIFIED: a radiologist "
    "must read the study.";

// Series numbers of a round's results: the SR, the key images, the KOS.
std::string series_number(const StudyFindings& f, int k) { return std::to_string(9900 + 3 * f.round + k); }

// The key images as Secondary Capture (RGB, burned-in caption), in a new
// series of the study: DIR/key_<k>.dcm; fills each key's sop_uid and w's
// series and paths.
void write_key_images(const StudyFindings& f, std::vector<KeyImage>& keys, const std::string& dir, WrittenResults& w) {
  w.sc_series_uid = new_dicom_uid();
  const std::string disclaimer = kDisclaimer;
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


// The Comprehensive SR, a TID 1500 Imaging Measurement Report in a new
// series of the study: DIR/sr.dcm.
void write_report(const StudyFindings& f, const std::vector<KeyImage>& keys, const std::string& dir, WrittenResults& w) {
  const std::string disclaimer = kDisclaimer;
  w.sr_path = dir + "/sr.dcm";
  DSRDocument doc(DSRTypes::DT_ComprehensiveSR);
  // The study's UIDs are copied as they came (de-identified sets such as
  // RSNA's are not PS3.5 UIDs), so dcmsr's UID checks are off for them.
  check(doc.createNewSeriesInStudy(f.study_uid.c_str(), OFFalse), "new series in the study");
  check(doc.setSeriesDescription("ICH AI triage report - NOT FOR DIAGNOSTIC USE"), "series description");
  check(doc.setSeriesNumber(series_number(f, 0).c_str()), "series number");
  check(doc.setInstanceNumber("1"), "instance number");
  check(doc.setManufacturer("ich"), "manufacturer");
  check(doc.setManufacturerModelName(f.algorithm_name.substr(0, 64).c_str()), "model name");
  check(doc.setSoftwareVersions(f.algorithm_version.substr(0, 64).c_str()), "software versions");
  Tree t(doc);
  // TID 1500: the title, its template, language (TID 1204), the device as observer (TID 1001/1004), the procedure
  t.add(DSRTypes::RT_isRoot, DSRTypes::VT_Container, DSRCodedEntryValue("126000", "DCM", "Imaging Measurement Report"), true);
  check(t.t_.getCurrentContentItem().setTemplateIdentification("1500", "DCMR"), "template identification");
  check(t.add(DSRTypes::RT_hasConceptMod, DSRTypes::VT_Code,
              DSRCodedEntryValue("121049", "DCM", "Language of Content Item and Descendants"), true)
            .setCodeValue(DSRCodedEntryValue("en-US", "RFC5646", "English (United States)")),
        "language");
  check(t.add(DSRTypes::RT_hasObsContext, DSRTypes::VT_Code, DSRCodedEntryValue("121005", "DCM", "Observer Type"), false)
            .setCodeValue(DSRCodedEntryValue("121007", "DCM", "Device")),
        "observer type");
  check(t.add(DSRTypes::RT_hasObsContext, DSRTypes::VT_UIDRef, DSRCodedEntryValue("121012", "DCM", "Device Observer UID"), false)
            .setStringValue(f.observer_uid.c_str()),
        "device observer UID");
  check(t.add(DSRTypes::RT_hasObsContext, DSRTypes::VT_Text, DSRCodedEntryValue("121013", "DCM", "Device Observer Name"), false)
            .setStringValue(f.station_aet.c_str()),
        "device observer name");
  check(t.add(DSRTypes::RT_hasObsContext, DSRTypes::VT_Text,
              DSRCodedEntryValue("121014", "DCM", "Device Observer Manufacturer"), false)
            .setStringValue("ich"),
        "device observer manufacturer");
  check(t.add(DSRTypes::RT_hasObsContext, DSRTypes::VT_Text, DSRCodedEntryValue("121015", "DCM", "Device Observer Model Name"), false)
            .setStringValue(f.algorithm_name.c_str()),
        "device observer model name");
  check(t.add(DSRTypes::RT_hasConceptMod, DSRTypes::VT_Code, DSRCodedEntryValue("121058", "DCM", "Procedure reported"), false)
            .setCodeValue(DSRCodedEntryValue("303653007", "SCT", "Computed tomography of head")),
        "procedure reported");
  // Imaging Measurements: one TID 1501 group per label, "any" first
  t.add(DSRTypes::RT_contains, DSRTypes::VT_Container, DSRCodedEntryValue("126010", "DCM", "Imaging Measurements"), false);
  const DSRCodedEntryValue no_units("1", "UCUM", "no units");
  const int order[6] = {5, 0, 1, 2, 3, 4};
  for (int i = 0; i < 6; ++i) {
    const size_t k = size_t(order[i]);
    const FindingCode& fd = kFindingCodes[k];
    t.add(DSRTypes::RT_contains, DSRTypes::VT_Container, DSRCodedEntryValue("125007", "DCM", "Measurement Group"), i == 0);
    check(t.t_.getCurrentContentItem().setTemplateIdentification("1501", "DCMR"), "group template identification");
    check(t.add(DSRTypes::RT_hasObsContext, DSRTypes::VT_Text, DSRCodedEntryValue("112039", "DCM", "Tracking Identifier"), true)
              .setStringValue(("ICH AI: " + std::string(fd.tracking)).c_str()),
          "tracking identifier");
    w.tracking_uids[k] = new_dicom_uid();
    check(t.add(DSRTypes::RT_hasObsContext, DSRTypes::VT_UIDRef,
                DSRCodedEntryValue("112040", "DCM", "Tracking Unique Identifier"), false)
              .setStringValue(w.tracking_uids[k].c_str()),
          "tracking unique identifier");
    check(t.add(DSRTypes::RT_contains, DSRTypes::VT_Code, DSRCodedEntryValue("121071", "DCM", "Finding"), false)
              .setCodeValue(code_of(fd)),
          "finding");
    check(t.add(DSRTypes::RT_hasConceptMod, DSRTypes::VT_Code, DSRCodedEntryValue("363698007", "SCT", "Finding Site"), false)
              .setCodeValue(DSRCodedEntryValue("128319008", "SCT", "Intracranial structure")),
          "finding site");
    check(t.add(DSRTypes::RT_hasConceptMod, DSRTypes::VT_Text, DSRCodedEntryValue("111001", "DCM", "Algorithm Name"), false)
              .setStringValue(f.algorithm_name.c_str()),
          "algorithm name");
    check(t.add(DSRTypes::RT_hasConceptMod, DSRTypes::VT_Text, DSRCodedEntryValue("111003", "DCM", "Algorithm Version"), false)
              .setStringValue(f.algorithm_version.c_str()),
          "algorithm version");
    // the probability (TID 300), inferred from the slice that has it
    check(t.add(DSRTypes::RT_contains, DSRTypes::VT_Num, DSRCodedEntryValue("122157", "DCM", "Probability"), false)
              .setNumericValue(DSRNumericMeasurementValue(f.p[k].c_str(), no_units)),
          "probability");
    if (!f.source[k].sop_uid.empty()) {
      check(t.add(DSRTypes::RT_inferredFrom, DSRTypes::VT_Image, DSRCodedEntryValue("121112", "DCM", "Source of Measurement"),
                  true)
                .setImageReference(image_ref(f.source[k]), OFFalse),
            "source of measurement");
      t.up();
    }
    check(t.add(DSRTypes::RT_contains, DSRTypes::VT_Num,
                DSRCodedEntryValue("THRESHOLD", "99ICH", "Operating threshold of the probability"), false)
              .setNumericValue(DSRNumericMeasurementValue(f.threshold[k].c_str(), no_units)),
          "threshold");
    // the qualitative evaluation: the finding present or absent at the threshold
    check(t.add(DSRTypes::RT_contains, DSRTypes::VT_Code, code_of(fd), false)
              .setCodeValue(f.found[k] ? DSRCodedEntryValue("52101004", "SCT", "Present")
                                       : DSRCodedEntryValue("2667000", "SCT", "Absent")),
          "qualitative evaluation");
    if (k == 5)  // the study's key slices, the source of the finding
      for (const KeyImage& key : keys)
        check(t.add(DSRTypes::RT_contains, DSRTypes::VT_Image, DSRCodedEntryValue("260753009", "SCT", "Source"), false)
                  .setImageReference(image_ref(key.source), OFFalse),
              "key slice");
    t.up();
  }
  t.up();
  check(t.add(DSRTypes::RT_contains, DSRTypes::VT_Text, DSRCodedEntryValue("121106", "DCM", "Comment"), false)
            .setStringValue(disclaimer.c_str()),
        "disclaimer");
  check(t.add(DSRTypes::RT_contains, DSRTypes::VT_Text, DSRCodedEntryValue("121106", "DCM", "Comment"), false)
            .setStringValue(("Operating thresholds: " + f.operating_point).substr(0, 1024).c_str()),
        "operating point");
  for (const std::string& u : f.unreadable)
    check(t.add(DSRTypes::RT_contains, DSRTypes::VT_Text, DSRCodedEntryValue("121106", "DCM", "Comment"), false)
              .setStringValue(("Instance not read, left out of the analysis: " + u).substr(0, 1024).c_str()),
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
  DcmFileFormat ff;
  DcmDataset& d = *ff.getDataset();
  check(doc.write(d), "encoding");
  put_header(d, f.header, f.study_uid, w.sr_path);
  put_contributing_equipment(d, f, w.sr_path);
  OFString v;
  ICH_CHECK(d.findAndGetOFString(DCM_SOPInstanceUID, v).good(), w.sr_path, ": no SOP Instance UID");
  w.sr_sop_uid = v.c_str();
  ICH_CHECK(d.findAndGetOFString(DCM_SeriesInstanceUID, v).good(), w.sr_path, ": no Series Instance UID");
  w.sr_series_uid = v.c_str();
  put_private_scheme(d, w.sr_path);
  save_atomic(ff, w.sr_path);
}

// The Key Object Selection document ("Of Interest", TID 2010): the key
// slices and their key images, in a new series of the study: DIR/kos.dcm.
void write_kos(const StudyFindings& f, const std::vector<KeyImage>& keys, const std::string& dir, WrittenResults& w) {
  w.kos_path = dir + "/kos.dcm";
  DSRDocument doc(DSRTypes::DT_KeyObjectSelectionDocument);
  check(doc.createNewSeriesInStudy(f.study_uid.c_str(), OFFalse), "KOS: new series in the study");
  check(doc.setSeriesDescription("ICH AI key objects - NOT FOR DIAGNOSTIC USE"), "KOS: series description");
  check(doc.setSeriesNumber(series_number(f, 2).c_str()), "KOS: series number");
  check(doc.setInstanceNumber("1"), "KOS: instance number");
  check(doc.setManufacturer("ich"), "KOS: manufacturer");
  Tree t(doc);
  t.add(DSRTypes::RT_isRoot, DSRTypes::VT_Container, DSRCodedEntryValue("113000", "DCM", "Of Interest"), true);
  check(t.t_.getCurrentContentItem().setTemplateIdentification("2010", "DCMR"), "KOS: template identification");
  const std::string description = "Slices with the highest probability of intracranial hemorrhage (p(any) " + f.p[5] +
                                  "), and their Grad-CAM key images. " + kDisclaimer;
  check(t.add(DSRTypes::RT_contains, DSRTypes::VT_Text, DSRCodedEntryValue("113012", "DCM", "Key Object Description"), true)
            .setStringValue(description.substr(0, 1024).c_str()),
        "KOS: description");
  for (const KeyImage& key : keys) {
    t.t_.addContentItem(DSRTypes::RT_contains, DSRTypes::VT_Image, DSRTypes::AM_afterCurrent);
    check(t.t_.getCurrentContentItem().setImageReference(image_ref(key.source), OFFalse), "KOS: key slice");
    check(doc.getCurrentRequestedProcedureEvidence().addItem(f.study_uid.c_str(), key.source.series_uid.c_str(),
                                                             key.source.sop_class_uid.c_str(), key.source.sop_uid.c_str(),
                                                             OFFalse),
          "KOS: key slice evidence");
  }
  for (const KeyImage& key : keys) {
    t.t_.addContentItem(DSRTypes::RT_contains, DSRTypes::VT_Image, DSRTypes::AM_afterCurrent);
    check(t.t_.getCurrentContentItem().setImageReference(
              DSRImageReferenceValue(UID_SecondaryCaptureImageStorage, key.sop_uid.c_str()), OFFalse),
          "KOS: key image");
    check(doc.getCurrentRequestedProcedureEvidence().addItem(f.study_uid.c_str(), w.sc_series_uid.c_str(),
                                                             UID_SecondaryCaptureImageStorage, key.sop_uid.c_str(), OFFalse),
          "KOS: key image evidence");
  }
  DcmFileFormat ff;
  DcmDataset& d = *ff.getDataset();
  check(doc.write(d), "KOS: encoding");
  put_header(d, f.header, f.study_uid, w.kos_path);
  put_contributing_equipment(d, f, w.kos_path);
  OFString v;
  ICH_CHECK(d.findAndGetOFString(DCM_SOPInstanceUID, v).good(), w.kos_path, ": no SOP Instance UID");
  w.kos_sop_uid = v.c_str();
  save_atomic(ff, w.kos_path);
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
