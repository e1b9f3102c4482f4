// j2k.h: JPEG 2000 frames of a DICOM file, decoded with OpenJPEG.
//
// DCMTK has no JPEG 2000 codec. DICOM carries each frame as a J2K codestream
// (or, from some writers, a JP2 file) in the fragments of the encapsulated
// pixel data (PS3.5 A.4.4): transfer syntaxes 1.2.840.10008.1.2.4.90
// (lossless only) and .91 (lossy or lossless). Reversible (5/3) codestreams
// decode exactly; irreversible (9/7) ones as OpenJPEG decodes them.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ich {

bool is_j2k_syntax(const std::string& transfer_syntax_uid);

struct J2kImage {
  int width = 0, height = 0, components = 0, precision = 0;
  bool is_signed = false;
  std::vector<int32_t> values;  // the first component, row-major
};

// Decodes one frame's bytes (a J2K codestream or a JP2 file) of `width` x
// `height` pixels (the header's; a codestream of another size is refused
// before anything is decoded); throws ich::Error with OpenJPEG's reason.
J2kImage decode_j2k(const uint8_t* data, size_t size, int width, int height);

// Splits encapsulated pixel data (the fragments after the Basic Offset
// Table) into `frames` codestreams: by the offset table when it has one entry
// per frame, one fragment per frame when the counts agree, else a new frame
// at each fragment that starts with a J2K start-of-codestream marker (or
// the first bytes of a JP2 file). Throws when the fragments cannot make that
// many frames.
std::vector<std::vector<uint8_t>> split_j2k_frames(const std::vector<uint32_t>& offset_table,
                                                   const std::vector<std::vector<uint8_t>>& fragments, int frames);

}  // namespace ich
