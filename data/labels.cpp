#include "data/labels.h"

#include "engine/error.h"
#include "io/csv.h"

namespace ich {

LabelTable parse_rsna_labels_table(const CsvTable& csv, const std::string& path);

int subtype_index(const std::string& name) {
  for (size_t i = 0; i < kSubtypes.size(); ++i)
    if (name == kSubtypes[i]) return int(i);
  return -1;
}

LabelTable read_rsna_labels(const std::string& path) { return parse_rsna_labels_table(read_csv(path), path); }

LabelTable parse_rsna_labels(const std::string& text, const std::string& name) {
  return parse_rsna_labels_table(parse_csv(text, name), name);
}

LabelTable parse_rsna_labels_table(const CsvTable& csv, const std::string& path) {
  ICH_CHECK(csv.header.size() == 2 && csv.header[0] == "ID" && csv.header[1] == "Label", "labels ", path,
            ": header must be 'ID,Label' (the RSNA stage_*_train.csv format)");
  LabelTable t;
  std::vector<std::array<int64_t, 6>> line_of;  // line where each (image, subtype) was set, 0 if not yet
  for (size_t r = 0; r < csv.rows.size(); ++r) {
    const int64_t line = csv.line_of[r];
    const std::string& id = csv.rows[r][0];
    const std::string& label = csv.rows[r][1];
    const size_t us = id.rfind('_');
    ICH_CHECK(us != std::string::npos && us > 0, "labels ", path, " line ", line, ": ID '", id,
              "' is not ID_<image>_<subtype>");
    const std::string image = id.substr(0, us), subtype = id.substr(us + 1);
    const int k = subtype_index(subtype);
    ICH_CHECK(k >= 0, "labels ", path, " line ", line, ": unknown subtype '", subtype, "' in '", id, "'");
    ICH_CHECK(label == "0" || label == "1", "labels ", path, " line ", line, ": label '", label,
              "' is not 0 or 1");
    ++t.rows;
    auto [it, fresh] = t.index.emplace(image, t.images.size());
    if (fresh) {
      t.images.push_back({image, {}});
      line_of.push_back({});
    }
    const size_t i = it->second;
    const int v = label == "1" ? 1 : 0;
    if (line_of[i][size_t(k)] != 0) {
      ICH_CHECK(t.images[i].y[size_t(k)] == v, "labels ", path, " line ", line, ": '", id, "' is ", v,
                " here but ", t.images[i].y[size_t(k)], " on line ", line_of[i][size_t(k)]);
      ++t.duplicate_rows;
      continue;
    }
    t.images[i].y[size_t(k)] = v;
    line_of[i][size_t(k)] = line;
  }
  for (size_t i = 0; i < t.images.size(); ++i)
    for (size_t k = 0; k < 6; ++k)
      ICH_CHECK(line_of[i][k] != 0, "labels ", path, ": image ", t.images[i].image_id, " has no row for subtype ",
                kSubtypes[k]);
  return t;
}

}  // namespace ich
