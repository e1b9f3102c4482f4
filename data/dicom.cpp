#include "data/dicom.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcrledrg.h>
#include <dcmtk/dcmdata/dcxfer.h>
#include <dcmtk/dcmjpeg/djdecode.h>
#include <dcmtk/dcmjpls/djdecode.h>
#include <dcmtk/oflog/oflog.h>

#include <bit>
#include <cstring>
#include <fstream>
#include <mutex>

#include "data/dicom_direct.h"
#include "engine/error.h"

namespace ich {

void dicom_init() {
  static std::once_flag once;
  std::call_once(once, [] {
    OFLog::configure(OFLogger::FATAL_LOG_LEVEL);  // errors come back to us as conditions
    DcmRLEDecoderRegistration::registerCodecs();
    DJDecoderRegistration::registerCodecs();
    DJLSDecoderRegistration::registerCodecs();
  });
}

namespace {

std::string get_string(DcmDataset* ds, const DcmTagKey& tag) {
  OFString v;
  if (ds->findAndGetOFString(tag, v).good()) return std::string(v.c_str());
  return "";
}

std::vector<double> get_doubles(DcmDataset* ds, const DcmTagKey& tag) {
  std::vector<double> out;
  Float64 v;
  for (unsigned long i = 0; ds->findAndGetFloat64(tag, v, i).good(); ++i) out.push_back(v);
  return out;
}

uint16_t get_u16(DcmDataset* ds, const DcmTagKey& tag, const std::string& path, const char* name) {
  Uint16 v = 0;
  ICH_CHECK(ds->findAndGetUint16(tag, v).good(), "missing or unreadable ", name, " (", path, ")");
  return v;
}

// A file is taken as DICOM if it has the "DICM" preamble, or (no preamble,
// as some old files) DCMTK parses it and it holds image attributes.
bool has_preamble(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char buf[132];
  return in.read(buf, 132) && std::memcmp(buf + 128, "DICM", 4) == 0;
}

}  // namespace

DicomSlice read_dicom(const std::string& path, bool pixels) {
  dicom_init();
  DicomSlice s;
  s.path = path;
  const bool preamble = has_preamble(path);
  DcmFileFormat ff;
  // Without pixels, large elements stay on disk (read lazily, never here).
  const OFCondition load = ff.loadFile(path.c_str(), EXS_Unknown, EGL_noChange,
                                       pixels ? DCM_MaxReadLength : 256);
  ICH_CHECK(load.good(), preamble ? "unreadable DICOM (truncated or corrupt?): " : "not a DICOM file (no DICM preamble, not a parseable dataset): ", load.text());
  DcmDataset* ds = ff.getDataset();
  ICH_CHECK(preamble || ds->tagExists(DCM_Rows), "not a DICOM file (no preamble and no image attributes)");
  s.transfer_syntax = DcmXfer(ds->getOriginalXfer()).getXferName();
  s.sop_uid = get_string(ds, DCM_SOPInstanceUID);
  s.patient_id = get_string(ds, DCM_PatientID);
  s.study_uid = get_string(ds, DCM_StudyInstanceUID);
  s.series_uid = get_string(ds, DCM_SeriesInstanceUID);
  s.modality = get_string(ds, DCM_Modality);
  s.photometric = get_string(ds, DCM_PhotometricInterpretation);
  const std::vector<double> pos = get_doubles(ds, DCM_ImagePositionPatient);
  if (pos.size() >= 3) {
    s.z = pos[2];
    s.has_z = true;
  }
  s.rows = get_u16(ds, DCM_Rows, path, "Rows");
  s.cols = get_u16(ds, DCM_Columns, path, "Columns");
  s.bits_allocated = get_u16(ds, DCM_BitsAllocated, path, "BitsAllocated");
  s.bits_stored = get_u16(ds, DCM_BitsStored, path, "BitsStored");
  s.pixel_representation = get_u16(ds, DCM_PixelRepresentation, path, "PixelRepresentation");
  const std::vector<double> slope = get_doubles(ds, DCM_RescaleSlope), icpt = get_doubles(ds, DCM_RescaleIntercept);
  if (!slope.empty()) s.slope = slope[0];
  if (!icpt.empty()) s.intercept = icpt[0];
  s.window_centers = get_doubles(ds, DCM_WindowCenter);
  s.window_widths = get_doubles(ds, DCM_WindowWidth);
  const std::vector<double> sp = get_doubles(ds, DCM_PixelSpacing);
  if (sp.size() >= 2) {
    s.spacing_row = sp[0];
    s.spacing_col = sp[1];
  }
  ICH_CHECK(s.rows > 0 && s.cols > 0, "image of ", s.rows, "x", s.cols, " pixels");
  ICH_CHECK(s.bits_allocated == 8 || s.bits_allocated == 16, "BitsAllocated ", s.bits_allocated,
            " is not supported (8 or 16)");
  ICH_CHECK(s.bits_stored >= 1 && s.bits_stored <= s.bits_allocated, "BitsStored ", s.bits_stored,
            " with BitsAllocated ", s.bits_allocated);
  Uint16 spp = 1;
  ds->findAndGetUint16(DCM_SamplesPerPixel, spp);
  ICH_CHECK(spp == 1, "SamplesPerPixel ", spp, ": colour images are not CT slices");
  Sint32 frames = 1;
  if (ds->findAndGetSint32(DCM_NumberOfFrames, frames).good())
    ICH_CHECK(frames == 1, "NumberOfFrames ", frames, ": multi-frame images are not supported");
  ICH_CHECK(s.photometric == "MONOCHROME1" || s.photometric == "MONOCHROME2", "PhotometricInterpretation '",
            s.photometric, "' (need MONOCHROME1 or MONOCHROME2)");
  if (!pixels) return s;

  ICH_CHECK(ds->tagExists(DCM_PixelData), "no PixelData");
  const OFCondition rep = ds->chooseRepresentation(EXS_LittleEndianExplicit, nullptr);
  ICH_CHECK(rep.good(), "cannot decode pixel data of transfer syntax '", s.transfer_syntax, "': ", rep.text());
  const size_t n = size_t(s.rows) * size_t(s.cols);
  s.raw.resize(n);
  unsigned long count = 0;
  const uint8_t* bytes = nullptr;  // little-endian stored values, as read_dicom_direct() gives them
  if (s.bits_allocated == 16) {
    const Uint16* p = nullptr;
    ICH_CHECK(ds->findAndGetUint16Array(DCM_PixelData, p, &count).good() && p, "cannot read 16-bit PixelData");
    static_assert(std::endian::native == std::endian::little, "stored values are read as little endian");
    bytes = reinterpret_cast<const uint8_t*>(p);  // DCMTK holds them in host order
  } else {
    const Uint8* p = nullptr;
    ICH_CHECK(ds->findAndGetUint8Array(DCM_PixelData, p, &count).good() && p, "cannot read 8-bit PixelData");
    bytes = p;
  }
  ICH_CHECK(count >= n, "PixelData holds ", count, " values for ", s.rows, "x", s.cols, " pixels (truncated?)");
  // Masked to BitsStored, sign-extended when PixelRepresentation is 1: the
  // one decoding both readers share.
  for_each_stored(s, bytes, n, [&](size_t i, int32_t v) { s.raw[i] = v; });
  return s;
}

bool needs_rsna_fix(const DicomSlice& s) {
  return s.bits_stored == 12 && s.pixel_representation == 0 && s.intercept > -100;
}

namespace {
// raw -> HU for one slice, the RSNA fix decided once.
struct Rescale {
  bool fix;
  double slope, intercept;
  Rescale(const DicomSlice& s, bool rsna_fix)
      : fix(rsna_fix && needs_rsna_fix(s)), slope(s.slope), intercept(fix ? -1000.0 : s.intercept) {}
  float operator()(int32_t v) const {
    if (fix) {
      v += 1000;
      if (v >= 4096) v -= 4096;
    }
    return float(double(v) * slope + intercept);
  }
};
}  // namespace

float hounsfield_of(const DicomSlice& s, int32_t v, bool rsna_fix) { return Rescale(s, rsna_fix)(v); }

std::vector<float> hounsfield(const DicomSlice& s, bool rsna_fix) {
  const Rescale hu_of(s, rsna_fix);
  std::vector<float> hu(s.raw.size());
  for (size_t i = 0; i < hu.size(); ++i) hu[i] = hu_of(s.raw[i]);
  return hu;
}

}  // namespace ich
