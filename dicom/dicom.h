// dicom.h: CT slices from a DICOM file (through DCMTK, and OpenJPEG for
// JPEG 2000), as stored values plus what windowing, splitting and exploring
// need from the header.
//
// Transfer syntaxes: implicit and explicit little endian, explicit big
// endian, deflate, RLE, JPEG (baseline, extended, lossless) and JPEG-LS
// through DCMTK's codecs; JPEG 2000 (lossless only, and lossy or lossless)
// through OpenJPEG (dicom/j2k.h). Single-sample (grayscale) images with 8 or
// 16 allocated bits, one frame or many: a multi-frame file gives one slice
// per frame, each with its own position, rescale and window where the file
// has them per frame (Enhanced CT's functional groups, PS3.3 C.7.6.16).
// Anything else, a file that is not DICOM, or a truncated one is an
// ich::Error whose message is the reason (it ends up in ich-window's
// errors.csv). Hounsfield units: dicom/hounsfield.h.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace ich {

// A Modality LUT Sequence's first item (PS3.3 C.11.1.1): stored value v
// maps to data[clamp(v - first, 0, size - 1)].
struct ModalityLut {
  int32_t first = 0;           // LUTDescriptor[1], signed when PixelRepresentation is 1
  std::vector<uint16_t> data;  // LUTData, LUTDescriptor[0] entries (0 means 65536)
  std::string type;            // ModalityLUTType, e.g. "HU"
};

struct DicomSlice {
  std::string path;
  std::string sop_uid, patient_id, study_uid, series_uid;
  std::string sop_class;  // SOPClassUID: says CT where de-identification removed Modality
  std::string modality, photometric, transfer_syntax;
  std::string transfer_syntax_uid;  // e.g. 1.2.840.10008.1.2.4.90
  int frame = 1;            // 1-based frame number; a single-frame file's one slice is frame 1
  int frames = 1;           // NumberOfFrames of the file
  double z = 0;             // ImagePositionPatient[2] (the frame's own in Enhanced CT)
  bool has_z = false;
  double position[3] = {0, 0, 0};  // ImagePositionPatient, all three (valid when has_z)
  double orientation[6] = {1, 0, 0, 0, 1, 0};  // ImageOrientationPatient (the frame's own in Enhanced CT)
  bool has_orientation = false;
  int rows = 0, cols = 0;
  int bits_allocated = 0, bits_stored = 0, pixel_representation = 0;
  double slope = 1, intercept = 0;                    // unused when lut is set
  std::shared_ptr<const ModalityLut> lut;             // from a Modality LUT Sequence
  std::vector<double> window_centers, window_widths;  // every value (VM may be 2)
  double spacing_row = 0, spacing_col = 0;            // PixelSpacing, mm
  std::vector<int32_t> raw;  // rows*cols stored values (masked to BitsStored, sign-extended); empty if not decoded
};

// Every frame of a file, in frame order, one call of f each (one for a
// single-frame file). The file's pixel data is decoded once, each frame's
// stored values are put in its slice's raw just before its call; with
// pixels=false only the header is read (fast: pixel data is not loaded or
// decoded) and raw stays empty.
void read_dicom_frames(const std::string& path, const std::function<void(DicomSlice&)>& f, bool pixels = true);
// Whether a slice is CT: Modality CT, or, where the file has no Modality (a
// de-identification tool removed it), a CT SOP class (CT Image Storage,
// Enhanced CT, Legacy Converted Enhanced CT): the SOP class says what the
// object is (PS3.4 B.5). A Modality other than CT is not CT, whatever the class.
bool is_ct(const DicomSlice& s);
// A single-frame file's slice (a multi-frame file is an error that says so).
DicomSlice read_dicom(const std::string& path, bool pixels = true);
// The id of a slice: the SOPInstanceUID when it is a safe file name
// (letters, digits, '.', '_', '-'; at most 128 characters), else the file's
// name without extension; plus "_f<frame>" when the file holds more than one
// frame.
std::string image_id_for(const DicomSlice& s);

// Registers DCMTK's decoders and silences its logger (once per process).
void dicom_init();

}  // namespace ich
