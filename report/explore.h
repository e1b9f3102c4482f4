// explore.h: what ich-explore does, the seed's three EDA notebooks as one
// command: the label table, the DICOM attributes, and example images per
// category, written as OUT/report.md with a CSV of every table and PNG
// contact sheets.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace ich {

struct ExploreOptions {
  std::string labels;      // RSNA labels CSV (required)
  std::string dicom;       // a DICOM folder to scan headers of (without decoding pixels), or
  std::string meta;        // ich-window's meta.csv instead
  std::string images;      // ich-window's .npy folder for the contact sheets (else drawn from `dicom`)
  std::string out;
  int examples = 8;        // slices per contact sheet
  int threads = 0;
};

struct LabelStats {
  int64_t rows = 0, images = 0, duplicate_rows = 0, conflicting_rows = 0, malformed_lines = 0, incomplete_images = 0;
  std::array<int64_t, 6> positives{};  // the five subtypes and any
  int64_t normal = 0;
  std::array<std::array<int64_t, 5>, 5> cooccurrence{};  // images with both subtypes
  std::array<int64_t, 6> subtypes_per_positive{};         // index k: positive images with k subtypes
  int64_t subtype_without_any = 0, any_without_subtype = 0;
  int64_t labelled_without_dicom = -1, dicom_without_labels = -1;  // -1: not known (no DICOM folder or meta)
  std::vector<std::string> problems;  // the first few oddities, with their lines
};

struct AttributeStats {
  int64_t files = 0, readable = 0, rsna_fix = 0 /* files with the RSNA 12-bit header */, multi_window = 0, multi_window_differing = 0;
  std::map<std::string, std::map<std::string, int64_t>> tables;  // attribute -> value -> count
  std::vector<std::pair<std::string, std::string>> unreadable;  // path, reason
  double files_per_second = 0;
};

struct ExploreReport {
  LabelStats labels;
  AttributeStats attributes;
  bool has_attributes = false;
  std::map<std::string, double> prevalence;  // "patients with any" etc., fractions, when grouping ids are known
  std::vector<std::string> sheets;            // contact sheet paths written
  std::vector<std::pair<std::string, std::string>> sheet_skipped;  // slices passed over (id, reason)
};

ExploreReport explore(const ExploreOptions& o, const std::function<void(int64_t, int64_t)>& progress = nullptr);
std::string summary_text(const ExploreReport& r);

}  // namespace ich
