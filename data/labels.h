// labels.h: the RSNA label file (stage_1_train.csv / stage_2_train.csv):
// header "ID,Label", six rows per image, ID = ID_<image>_<subtype>.
#pragma once
#include <array>
#include <string>
#include <unordered_map>
#include <vector>

namespace ich {

// The RSNA label order: five subtypes, then "any".
constexpr std::array<const char*, 6> kSubtypes = {"epidural",     "intraparenchymal", "intraventricular",
                                                  "subarachnoid", "subdural",         "any"};

struct ImageLabels {
  std::string image_id;
  std::array<int, 6> y{};  // epidural, intraparenchymal, intraventricular, subarachnoid, subdural, any
};

struct LabelTable {
  std::vector<ImageLabels> images;  // in order of first appearance
  std::unordered_map<std::string, size_t> index;
  int64_t rows = 0, duplicate_rows = 0;  // exact duplicates (stage 2 has them) are dropped
};

// Malformed lines, unknown subtypes, labels other than 0/1, conflicting
// duplicates and images without all six rows are errors naming the file and
// line (or image).
LabelTable read_rsna_labels(const std::string& path);
LabelTable parse_rsna_labels(const std::string& text, const std::string& name);

int subtype_index(const std::string& name);  // -1 if unknown

}  // namespace ich
