// split.h: train/validation split of a labelled set of slices.
//
// The default keeps every patient (or study, or series) on one side and
// stratifies the five subtypes and "any" across the sides: iterative
// multi-label stratification (Sechidis et al. 2011) over groups. Labels are
// taken rarest first; each group holding the current label goes to the side
// that still most wants that label (ties: the side that wants more images,
// then the generator), and the groups without positives fill the sides up to
// their sizes. "seed" reproduces the seed notebook's image-level method
// (patients leak across sides) for comparison.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "data/labels.h"
#include "io/csv.h"

namespace ich {

struct SplitRow {
  std::string image_id;
  std::array<int, 6> y{};
  std::string patient_id, study_uid, series_uid, z;
};

struct SplitOptions {
  double valid_fraction = 0.16;
  std::string group_by = "patient";  // patient, study, series, none
  std::string method = "grouped";    // grouped, seed
  uint64_t seed = 0;
};

struct SplitResult {
  std::vector<SplitRow> train, valid;
  int64_t labels_without_image = 0;  // labelled ids with no converted image in meta.csv
  int64_t images_without_labels = 0;
};

// Joins the labels with ich-window's meta.csv (rows with status ok) and splits.
SplitResult split_dataset(const LabelTable& labels, const CsvTable& meta, const SplitOptions& o);

// K folds for cross-validation (ich-split --folds K): the same grouped,
// stratified method with K equal fractions, so every group lies in exactly
// one fold and every fold holds positives of each subtype where the data
// has at least K groups with it. Fold k's model trains on the other folds
// and is validated on fold k; its predictions there are out of fold.
struct FoldsResult {
  std::vector<std::vector<SplitRow>> folds;
  int64_t labels_without_image = 0, images_without_labels = 0;
};
FoldsResult split_folds(const LabelTable& labels, const CsvTable& meta, int folds, const SplitOptions& o);

std::vector<std::string> split_header();
std::vector<std::string> split_fields(const SplitRow& r);
// Reads a train.csv/valid.csv written by ich-split (errors name file and line).
std::vector<SplitRow> read_split(const std::string& path);

}  // namespace ich
