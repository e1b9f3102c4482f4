// phantom.h: synthetic head-CT series, written as real DICOM files and laid
// out like the RSNA 2019 data, for demos and tests.
//
//   OUT/dicom/ID_<9 hex>.dcm   one slice per file (CT, little endian explicit)
//   OUT/labels.csv             stage_2_train.csv format: ID_<img>_<subtype>,Label
//   OUT/manifest.csv           the generator's truth per slice (labels, quirks,
//                              lesion sizes and boxes), for tests and ich-explore
//
// Anatomy in Hounsfield units: air, skull, a rim of CSF, gray and white
// matter, sulci, lateral ventricles; the head grows and shrinks along z.
// Acute blood (50-90 HU) drawn where each subtype appears: epidural, a lens
// against the inner table; subdural, a thin crescent along it;
// intraparenchymal, a blob in the brain; intraventricular, in the
// ventricles; subarachnoid, along sulci and the surface. Lesions span
// neighbouring slices. By default about 14% of slices have some hemorrhage.
// RSNA quirks: multi-valued WindowCenter/Width, 12-bit unsigned files with an
// intercept that needs the RSNA fix, a few non-512 and non-square series,
// and, when asked, truncated or garbage files. Deterministic for a seed.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace ich {

// The RSNA label order: five subtypes, then "any".
constexpr std::array<const char*, 6> kSubtypes = {"epidural",     "intraparenchymal", "intraventricular",
                                                  "subarachnoid", "subdural",         "any"};

struct PhantomOptions {
  std::string out;
  int patients = 80;
  int slices_per_series = 25;
  int size = 512;
  uint64_t seed = 1;
  double corrupt_fraction = 0.0;
  int threads = 0;  // 0: all cores
};

// Everything the generator decided about one slice.
struct PhantomSlice {
  std::string image_id, patient_id, study_uid, series_uid;
  int patient = 0, slice = 0, rows = 0, cols = 0;
  double z = 0;
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
