// phantom.h: synthetic head-CT series, written as real DICOM files and laid
// out like the RSNA 2019 data, for demos and tests.
//
//   OUT/dicom/ID_<9 hex>.dcm   one slice per file (CT, little endian explicit)
//   OUT/labels.csv             stage_2_train.csv format: ID_<img>_<subtype>,Label
//   OUT/manifest.csv           the generator's truth per slice (labels, quirks,
//                              lesion sizes and boxes), for tests and ich-explore
//
// Two difficulties. "realistic" (the default; phantom/phantom_realistic.cpp): a
// 3-D head sampled slice by slice, tilted in the scanner, with CT-like grey
// and white matter, sulci, ventricles, skull base, calcifications, beam
// hardening streaks and noise of a few HU; blood 45-85 HU with partial
// volume, lesions from large to one or two slices, thin subdural crescents,
// sulcal and cisternal subarachnoid blood; RSNA's prevalence (about 14% of
// slices, epidural in at least three patients of 30). "easy" (the first phantom, for
// fast tests): air, skull, grey and white matter, sulci, ventricles, and
// bright, sharp lesions (50-90 HU) of each subtype; the head grows and
// shrinks along z. In both, lesions span neighbouring slices.
// RSNA quirks: multi-valued WindowCenter/Width, 12-bit unsigned files with an
// intercept that needs the RSNA fix, a few non-512 and non-square series,
// and, when asked, truncated or garbage files. Deterministic for a seed.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/labels.h"

namespace ich {

struct PhantomOptions {
  std::string out;
  std::string difficulty = "realistic";  // or "easy"

  int patients = 80;
  int slices_per_series = 25;
  int size = 512;
  uint64_t seed = 1;
  double corrupt_fraction = 0.0;
  int threads = 0;  // 0: all cores
  // PatientID as <prefix><n> (n from 0) instead of a random hex id, e.g.
  // "CQ500-CT-" for CQ500's layout; everything else is unchanged.
  std::string patient_prefix;
};

// Everything the generator decided about one slice.
struct PhantomSlice {
  std::string image_id, patient_id, study_uid, series_uid;
  int patient = 0, slice = 0, rows = 0, cols = 0;
  double z = 0;                                   // ImagePositionPatient[2]
  std::array<double, 3> position{};               // ImagePositionPatient (mm)
  std::array<double, 6> orientation{1, 0, 0, 0, 1, 0};
  double pixel_spacing = 0.48828125;              // mm
  std::array<int, 6> labels{};
  std::array<int64_t, 5> lesion_pixels{};  // per subtype on this slice
  std::array<int, 4> lesion_box{-1, -1, -1, -1};  // x0, y0, x1, y1 of all blood (inclusive), -1 if none
  bool multi_window = false, rsna12 = false;
  std::string corrupt = "none";  // none, truncated, garbage
};

// The slices of a phantom, without rendering (cheap): ids, geometry, labels.
std::vector<PhantomSlice> plan_phantom(const PhantomOptions& o);

// The HU image of one planned slice (rows*cols, row-major), and optionally
// the subtype of blood at each pixel (-1 none, else 0..4).
std::vector<float> render_phantom_slice(const PhantomOptions& o, const PhantomSlice& s,
                                        std::vector<int8_t>* blood = nullptr);

struct PhantomSummary {
  int64_t slices = 0, positives = 0, corrupt = 0;
};
// Writes the whole phantom (DICOM files, labels.csv, manifest.csv).
PhantomSummary write_phantom(const PhantomOptions& o, const std::function<void(int64_t, int64_t)>& progress = nullptr);

}  // namespace ich
