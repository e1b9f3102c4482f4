// series.h: the slices of each CT series in order along the scanner's axis,
// from the DICOM geometry, for everything that looks across slices
// (ich-train --context, ich-embed, ich-train-seq, the series reports).
//
// A slice's place in its series (PS3.3 C.7.6.2.1.1) is its position
// projected on the series' normal:
//   n = row x column   (the cross product of ImageOrientationPatient's two
//                       direction cosines)
//   d = ImagePositionPatient . n   (mm)
// which orders a tilted-gantry or oblique stack correctly where z alone
// (ImagePositionPatient[2]) does not: for a sagittal stack z is the same on
// every slice. Slices without an orientation use the first slice's with one
// in the series, or the axial (1,0,0,0,1,0); slices without a position are
// ordered by their id at the end, and counted.
//
// Irregularities are reported, not hidden: ties (neighbours less than
// 0.01 mm apart along n: duplicated positions, ordered by image id) and
// gaps (neighbours further apart than 1.5 x the series' median spacing, a
// missing slice or a second stack). The spacing is kept per slice (the gap
// to each neighbour), which the 1st place of RSNA 2019 fed its model.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "io/csv.h"

namespace ich {

struct SliceGeometry {
  std::string image_id, patient_id, study_uid, series_uid;
  bool has_position = false, has_orientation = false;
  std::array<double, 3> position{};
  std::array<double, 6> orientation{1, 0, 0, 0, 1, 0};
};

struct SeriesOrder {
  std::string patient_id, study_uid, series_uid;
  std::vector<size_t> slices;     // indices into the input, in order along the normal
  std::vector<double> position;   // each slice's distance along the normal (mm); NaN without a position
  double spacing = 0;             // median gap between neighbours (mm), 0 for one slice
  int64_t ties = 0, gaps = 0, unplaced = 0;  // see above; unplaced: slices without a position
};

// Groups by (study, series) and orders each along its normal; series in
// order of their first appearance in the input.
std::vector<SeriesOrder> order_series(const std::vector<SliceGeometry>& slices);

// The gap (mm) from the slice at `k` of a series to its previous and next
// neighbours (0 at the ends or without positions).
std::array<double, 2> neighbour_gaps(const SeriesOrder& s, size_t k);

// One line describing a series' ties, gaps and unplaced slices; "" when it
// has none.
std::string describe_irregularities(const SeriesOrder& s);

// The geometry of every row of ich-window's meta.csv with status ok (the
// position and orientation columns; a meta.csv from before them has z alone,
// taken as the position (0, 0, z) of an axial slice).
std::vector<SliceGeometry> read_geometry(const CsvTable& meta);

}  // namespace ich
