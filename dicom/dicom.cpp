#include "dicom/dicom.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmdata/dcvr.h>
#include <dcmtk/dcmdata/dcpixel.h>
#include <dcmtk/dcmdata/dcpixseq.h>
#include <dcmtk/dcmdata/dcpxitem.h>
#include <dcmtk/dcmdata/dcrledrg.h>
#include <dcmtk/dcmdata/dcxfer.h>
#include <dcmtk/dcmjpeg/djdecode.h>
#include <dcmtk/dcmjpls/djdecode.h>
#include <dcmtk/oflog/oflog.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>

#include "dicom/dicom_direct.h"
#include "dicom/j2k.h"
#include "engine/error.h"

namespace ich {

void dicom_init() {
  static std::once_flag once;
  std::call_once(once, [] {
    OFLog::configure(OFLogger::FATAL_LOG_LEVEL);  // errors come back to us as conditions
    // PS3.5 6.2.2: an element of a known tag written with VR UN (some
    // converters do) is read with the data dictionary's VR: Modality "CT",
    // not the bytes "43\54"; RescaleSlope a number.
    dcmEnableUnknownVRConversion.set(OFTrue);
    DcmRLEDecoderRegistration::registerCodecs();
    DJDecoderRegistration::registerCodecs();
    DJLSDecoderRegistration::registerCodecs();
  });
}

namespace {

std::string get_string(DcmItem* ds, const DcmTagKey& tag) {
  OFString v;
  if (ds && ds->findAndGetOFString(tag, v).good()) return std::string(v.c_str());
  return "";
}

std::vector<double> get_doubles(DcmItem* ds, const DcmTagKey& tag) {
  std::vector<double> out;
  Float64 v;
  for (unsigned long i = 0; ds && ds->findAndGetFloat64(tag, v, i).good(); ++i) out.push_back(v);
  return out;
}

uint16_t get_u16(DcmItem* ds, const DcmTagKey& tag, const std::string& path, const char* name) {
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

// The first item of sequence `tag` in `item`, or nullptr.
DcmItem* first_item(DcmItem* item, const DcmTagKey& tag) {
  DcmItem* out = nullptr;
  if (item && item->findAndGetSequenceItem(tag, out, 0).good()) return out;
  return nullptr;
}

// A functional group macro of one frame (PS3.3 C.7.6.16): the frame's own
// item of Per-frame Functional Groups, else the Shared Functional Groups'.
DcmItem* frame_macro(DcmItem* per_frame, DcmItem* shared, const DcmTagKey& tag) {
  if (DcmItem* m = first_item(per_frame, tag)) return m;
  return first_item(shared, tag);
}

// Modality LUT Sequence (PS3.3 C.11.1.1), first item.
std::shared_ptr<const ModalityLut> modality_lut(DcmDataset* ds, int pixel_representation) {
  DcmItem* item = first_item(ds, DCM_ModalityLUTSequence);
  if (!item) return nullptr;
  auto lut = std::make_shared<ModalityLut>();
  // LUTDescriptor: entries (0 means 65536), first value mapped (US or SS,
  // as PixelRepresentation says), bits per entry (8 or 16).
  Uint16 d[3] = {0, 0, 0};
  for (unsigned long i = 0; i < 3; ++i) {
    Sint16 v = 0;  // an explicit-VR file may give the descriptor as SS
    ICH_CHECK(item->findAndGetUint16(DCM_LUTDescriptor, d[i], i).good() ||
                  (item->findAndGetSint16(DCM_LUTDescriptor, v, i).good() && ((d[i] = Uint16(v)), true)),
              "Modality LUT Sequence: LUTDescriptor needs three values");
  }
  const size_t entries = d[0] == 0 ? 65536 : d[0];
  lut->first = pixel_representation == 1 ? int32_t(int16_t(d[1])) : int32_t(d[1]);
  ICH_CHECK(d[2] == 8 || d[2] == 16, "Modality LUT Sequence: ", d[2], " bits per LUT entry (8 or 16)");
  const Uint16* words = nullptr;
  unsigned long count = 0;
  ICH_CHECK(item->findAndGetUint16Array(DCM_LUTData, words, &count).good() && words,
            "Modality LUT Sequence: no readable LUTData");
  if (d[2] == 8 && count * 2 >= entries && count < entries) {
    // 8-bit entries packed two to a 16-bit word (OW), low byte first.
    for (size_t i = 0; i < entries; ++i) lut->data.push_back(uint16_t((words[i / 2] >> (8 * (i % 2))) & 0xFF));
  } else {
    ICH_CHECK(count >= entries, "Modality LUT Sequence: LUTData holds ", count, " entries, LUTDescriptor says ",
              entries);
    lut->data.assign(words, words + entries);
    if (d[2] == 8)
      for (uint16_t& v : lut->data) v &= 0xFF;
  }
  lut->type = get_string(item, DCM_ModalityLUTType);
  return lut;
}

// The fragments of encapsulated pixel data and its Basic Offset Table.
void encapsulated_fragments(DcmDataset* ds, std::vector<uint32_t>& offsets, std::vector<std::vector<uint8_t>>& frags) {
  DcmElement* el = nullptr;
  ICH_CHECK(ds->findAndGetElement(DCM_PixelData, el).good() && el, "no PixelData");
  DcmPixelData* pd = dynamic_cast<DcmPixelData*>(el);
  DcmPixelSequence* seq = nullptr;
  ICH_CHECK(pd && pd->getEncapsulatedRepresentation(ds->getOriginalXfer(), nullptr, seq).good() && seq,
            "pixel data of a compressed transfer syntax is not encapsulated");
  for (unsigned long i = 0; i < seq->card(); ++i) {
    DcmPixelItem* item = nullptr;
    ICH_CHECK(seq->getItem(item, i).good() && item, "encapsulated pixel data: item ", i, " unreadable");
    Uint8* p = nullptr;
    const Uint32 len = item->getLength();
    if (len > 0) ICH_CHECK(item->getUint8Array(p).good() && p, "encapsulated pixel data: item ", i, " unreadable");
    if (i == 0) {  // the Basic Offset Table: little-endian 32-bit offsets
      for (Uint32 k = 0; k + 4 <= len; k += 4)
        offsets.push_back(uint32_t(p[k]) | uint32_t(p[k + 1]) << 8 | uint32_t(p[k + 2]) << 16 | uint32_t(p[k + 3]) << 24);
    } else {
      frags.emplace_back(p, p + len);
    }
  }
}

// Stored value of a decoded JPEG 2000 sample, as for uncompressed data:
// masked to BitsStored and sign-extended when PixelRepresentation is 1 (a
// codestream whose signedness disagrees with the header, as some writers
// make, is read by the header: pydicom does the same).
int32_t stored_from_j2k(int32_t v, int bits_stored, int pixel_representation) {
  const int shift = 32 - bits_stored;
  const uint32_t u = uint32_t(v) & (0xffffffffu >> shift);
  return pixel_representation == 1 ? int32_t(u << shift) >> shift : int32_t(u);
}

}  // namespace

bool is_ct(const DicomSlice& s) {
  if (!s.modality.empty()) return s.modality == "CT";
  return s.sop_class == UID_CTImageStorage || s.sop_class == UID_EnhancedCTImageStorage ||
         s.sop_class == UID_LegacyConvertedEnhancedCTImageStorage;
}

std::string image_id_for(const DicomSlice& s) {
  const std::string& u = s.sop_uid;
  const bool safe = !u.empty() && u.size() <= 128 && u != "." && u != ".." &&
                    std::all_of(u.begin(), u.end(), [](char c) {
                      return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
                    });
  const std::string id = safe ? u : std::filesystem::path(s.path).stem().string();
  return s.frames > 1 ? id + "_f" + std::to_string(s.frame) : id;
}

void read_dicom_frames(const std::string& path, const std::function<void(DicomSlice&)>& f, bool pixels) {
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
  const DcmXfer xfer(ds->getOriginalXfer());
  s.transfer_syntax = xfer.getXferName();
  s.transfer_syntax_uid = xfer.getXferID();
  s.sop_uid = get_string(ds, DCM_SOPInstanceUID);
  s.patient_id = get_string(ds, DCM_PatientID);
  s.study_uid = get_string(ds, DCM_StudyInstanceUID);
  s.series_uid = get_string(ds, DCM_SeriesInstanceUID);
  s.modality = get_string(ds, DCM_Modality);
  s.sop_class = get_string(ds, DCM_SOPClassUID);
  s.photometric = get_string(ds, DCM_PhotometricInterpretation);
  s.rows = get_u16(ds, DCM_Rows, path, "Rows");
  s.cols = get_u16(ds, DCM_Columns, path, "Columns");
  s.bits_allocated = get_u16(ds, DCM_BitsAllocated, path, "BitsAllocated");
  s.bits_stored = get_u16(ds, DCM_BitsStored, path, "BitsStored");
  s.pixel_representation = get_u16(ds, DCM_PixelRepresentation, path, "PixelRepresentation");
  ICH_CHECK(s.rows > 0 && s.cols > 0, "image of ", s.rows, "x", s.cols, " pixels");
  ICH_CHECK(s.bits_allocated == 8 || s.bits_allocated == 16, "BitsAllocated ", s.bits_allocated,
            " is not supported (8 or 16)");
  ICH_CHECK(s.bits_stored >= 1 && s.bits_stored <= s.bits_allocated, "BitsStored ", s.bits_stored,
            " with BitsAllocated ", s.bits_allocated);
  Uint16 spp = 1;
  ds->findAndGetUint16(DCM_SamplesPerPixel, spp);
  ICH_CHECK(spp == 1, "SamplesPerPixel ", spp, ": colour images are not CT slices");
  Sint32 frames = 1;
  if (ds->tagExists(DCM_NumberOfFrames))
    ICH_CHECK(ds->findAndGetSint32(DCM_NumberOfFrames, frames).good() && frames >= 1 && frames <= 100000,
              "NumberOfFrames '", get_string(ds, DCM_NumberOfFrames), "' is not a frame count");
  s.frames = int(frames);
  ICH_CHECK(s.photometric == "MONOCHROME1" || s.photometric == "MONOCHROME2", "PhotometricInterpretation '",
            s.photometric, "' (need MONOCHROME1 or MONOCHROME2)");
  s.lut = modality_lut(ds, s.pixel_representation);
  // Attributes for every frame (top level), which a functional group of the
  // frame, where the file has them, replaces.
  const std::vector<double> pos = get_doubles(ds, DCM_ImagePositionPatient), ori = get_doubles(ds, DCM_ImageOrientationPatient);
  const std::vector<double> slope = get_doubles(ds, DCM_RescaleSlope), icpt = get_doubles(ds, DCM_RescaleIntercept);
  const std::vector<double> wc = get_doubles(ds, DCM_WindowCenter), ww = get_doubles(ds, DCM_WindowWidth);
  const std::vector<double> sp = get_doubles(ds, DCM_PixelSpacing);
  DcmItem* shared = first_item(ds, DCM_SharedFunctionalGroupsSequence);
  const bool per_frame_groups = ds->tagExists(DCM_PerFrameFunctionalGroupsSequence);
  auto describe_frame = [&](DicomSlice& t, int frame) {
    t.frame = frame;
    DcmItem* own = nullptr;
    if (per_frame_groups)
      ICH_CHECK(ds->findAndGetSequenceItem(DCM_PerFrameFunctionalGroupsSequence, own, frame - 1).good() && own,
                "Per-frame Functional Groups Sequence has no item for frame ", frame, " of ", s.frames);
    auto pick = [&](const DcmTagKey& macro, const DcmTagKey& tag, const std::vector<double>& top) {
      DcmItem* m = frame_macro(own, shared, macro);
      return m && m->tagExists(tag) ? get_doubles(m, tag) : top;
    };
    const std::vector<double> p = pick(DCM_PlanePositionSequence, DCM_ImagePositionPatient, pos);
    t.has_z = p.size() >= 3;
    t.z = t.has_z ? p[2] : 0;
    if (t.has_z) std::copy(p.begin(), p.begin() + 3, t.position);
    const std::vector<double> o = pick(DCM_PlaneOrientationSequence, DCM_ImageOrientationPatient, ori);
    t.has_orientation = o.size() >= 6;
    if (t.has_orientation) std::copy(o.begin(), o.begin() + 6, t.orientation);
    const std::vector<double> sl = pick(DCM_PixelValueTransformationSequence, DCM_RescaleSlope, slope);
    const std::vector<double> ic = pick(DCM_PixelValueTransformationSequence, DCM_RescaleIntercept, icpt);
    t.slope = sl.empty() ? 1.0 : sl[0];
    t.intercept = ic.empty() ? 0.0 : ic[0];
    t.window_centers = pick(DCM_FrameVOILUTSequence, DCM_WindowCenter, wc);
    t.window_widths = pick(DCM_FrameVOILUTSequence, DCM_WindowWidth, ww);
    const std::vector<double> q = pick(DCM_PixelMeasuresSequence, DCM_PixelSpacing, sp);
    t.spacing_row = q.size() >= 2 ? q[0] : 0;
    t.spacing_col = q.size() >= 2 ? q[1] : 0;
  };
  if (!pixels) {
    for (int k = 1; k <= s.frames; ++k) {
      DicomSlice t = s;
      describe_frame(t, k);
      f(t);
    }
    return;
  }

  ICH_CHECK(ds->tagExists(DCM_PixelData), "no PixelData");
  const size_t n = size_t(s.rows) * size_t(s.cols);
  if (is_j2k_syntax(s.transfer_syntax_uid)) {
    std::vector<uint32_t> offsets;
    std::vector<std::vector<uint8_t>> frags;
    encapsulated_fragments(ds, offsets, frags);
    const std::vector<std::vector<uint8_t>> codestreams = split_j2k_frames(offsets, frags, s.frames);
    for (int k = 1; k <= s.frames; ++k) {
      const J2kImage img =
          decode_j2k(codestreams[size_t(k - 1)].data(), codestreams[size_t(k - 1)].size(), s.cols, s.rows);
      ICH_CHECK(img.components == 1, "JPEG 2000 frame ", k, " has ", img.components, " components (colour?)");
      ICH_CHECK(img.width == s.cols && img.height == s.rows, "JPEG 2000 frame ", k, " is ", img.width, "x",
                img.height, ", the header says ", s.cols, "x", s.rows);
      DicomSlice t = s;
      describe_frame(t, k);
      t.raw.resize(n);
      for (size_t i = 0; i < n; ++i) t.raw[i] = stored_from_j2k(img.values[i], s.bits_stored, s.pixel_representation);
      f(t);
    }
    return;
  }
  const OFCondition rep = ds->chooseRepresentation(EXS_LittleEndianExplicit, nullptr);
  ICH_CHECK(rep.good(), "cannot decode pixel data of transfer syntax '", s.transfer_syntax, "': ", rep.text());
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
  ICH_CHECK(count >= n * size_t(s.frames), "PixelData holds ", count, " values for ", s.frames, " frame(s) of ",
            s.rows, "x", s.cols, " pixels (truncated?)");
  for (int k = 1; k <= s.frames; ++k) {
    DicomSlice t = s;
    describe_frame(t, k);
    t.raw.resize(n);
    // Masked to BitsStored, sign-extended when PixelRepresentation is 1: the
    // one decoding both readers share.
    const uint8_t* frame_bytes = bytes + size_t(k - 1) * n * size_t(s.bits_allocated / 8);
    for_each_stored(t, frame_bytes, n, [&](size_t i, int32_t v) { t.raw[i] = v; });
    f(t);
  }
}

DicomSlice read_dicom(const std::string& path, bool pixels) {
  DicomSlice out;
  int seen = 0;
  read_dicom_frames(
      path,
      [&](DicomSlice& s) {
        ICH_CHECK(s.frames == 1, "NumberOfFrames ", s.frames, ": a multi-frame file (read it frame by frame)");
        out = std::move(s);
        ++seen;
      },
      pixels);
  ICH_CHECK(seen == 1, "no frame read");
  return out;
}

}  // namespace ich
