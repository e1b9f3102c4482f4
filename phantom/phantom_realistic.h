// phantom_realistic.h: the model behind ich-phantom --difficulty realistic
// (phantom/phantom_realistic.cpp explains what it draws); phantom/phantom.cpp
// plans the slices and writes the files for both difficulties.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "phantom/phantom.h"

namespace ich {

struct SliceGeometryInfo {
  std::array<double, 3> position{};     // ImagePositionPatient (mm)
  std::array<double, 6> orientation{};  // ImageOrientationPatient
  double pixel_spacing = 0;             // mm, rows and columns
};

class RealisticModel {
 public:
  // sizes[p] = {rows, cols} of patient p's series.
  RealisticModel(const PhantomOptions& o, const std::vector<std::array<int, 2>>& sizes);
  SliceGeometryInfo geometry(int patient, int k) const;
  // Slice k of a patient's series: HU (integers, as stored; noise from
  // noise_seed), the pixels of each subtype's blood (fraction >= 0.5) and the
  // subtype at each pixel (-1 none). Any output may be null; with hu null
  // only the blood is evaluated (cheap: for the labels).
  void render(int patient, int k, uint64_t noise_seed, std::vector<float>* hu, std::array<int64_t, 5>* blood_pixels,
              std::vector<int8_t>* blood) const;
  // Pixels a subtype must cover on a slice to be labelled present.
  double min_blood_pixels(int patient) const;

 private:
  struct Impl;
  std::shared_ptr<const Impl> impl_;
};

}  // namespace ich
