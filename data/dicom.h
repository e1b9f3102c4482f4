// dicom.h: one CT slice from a DICOM file (through DCMTK), as stored values
// plus what windowing, splitting and exploring need from its header.
//
// Transfer syntaxes: implicit and explicit little endian, explicit big
// endian, deflate, RLE, JPEG (baseline, extended, lossless) and JPEG-LS,
// through DCMTK's codecs. Single-frame, single-sample (grayscale) images
// with 8 or 16 allocated bits. Anything else, a file that is not DICOM, or a
// truncated one is an ich::Error whose message is the reason (it ends up in
// ich-window's errors.csv).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ich {

struct DicomSlice {
  std::string path;
  std::string sop_uid, patient_id, study_uid, series_uid;
  std::string modality, photometric, transfer_syntax;
  double z = 0;            // ImagePositionPatient[2]
  bool has_z = false;
  int rows = 0, cols = 0;
  int bits_allocated = 0, bits_stored = 0, pixel_representation = 0;
  double slope = 1, intercept = 0;
  std::vector<double> window_centers, window_widths;  // every value (VM may be 2)
  double spacing_row = 0, spacing_col = 0;            // PixelSpacing, mm
  std::vector<int32_t> raw;  // rows*cols stored values (masked to BitsStored, sign-extended); empty if not decoded
};

// Reads the file; with pixels=false only the header (fast: pixel data is not
// loaded or decoded).
DicomSlice read_dicom(const std::string& path, bool pixels = true);

// The RSNA 2019 quirk: some files store 12-bit unsigned values with an
// intercept that makes no sense (> -100). Their true HU are
// ((raw + 1000) mod 4096) - 1000.
bool needs_rsna_fix(const DicomSlice& s);
// Hounsfield units of every pixel: raw*slope + intercept, after the RSNA fix
// when `rsna_fix` and the slice needs it.
std::vector<float> hounsfield(const DicomSlice& s, bool rsna_fix = true);
// The HU of one stored value (what hounsfield() does to each pixel).
float hounsfield_of(const DicomSlice& s, int32_t raw, bool rsna_fix = true);

// Registers DCMTK's decoders and silences its logger (once per process).
void dicom_init();

}  // namespace ich
