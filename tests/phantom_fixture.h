// phantom_fixture.h: the small phantom data set several tests start from:
// ich-phantom's slices, windowed as ich-window does, and split by patient as
// ich-split does (train.csv, valid.csv), under a fresh temporary folder.
// For tests that link ich_dicom.
#pragma once
#include <unistd.h>

#include <filesystem>
#include <string>

#include "data/labels.h"
#include "data/split.h"
#include "dicom/window_job.h"
#include "io/csv.h"
#include "phantom/phantom.h"

namespace ich::test {

// <tmp>/<name>_<pid>, emptied.
inline std::string fresh_dir(const std::string& name) {
  const std::string dir =
      (std::filesystem::temp_directory_path() / (name + "_" + std::to_string(::getpid()))).string();
  std::filesystem::remove_all(dir);
  return dir;
}

struct PhantomSet {
  std::string phantom, images, train_csv, valid_csv;  // DIR/ph, DIR/img, DIR/train.csv, DIR/valid.csv
};

// Writes the phantom `po` into dir/ph; with `windowed`, its images into
// dir/img; with `split` too, dir/train.csv and dir/valid.csv.
inline PhantomSet make_phantom_set(const std::string& dir, PhantomOptions po, bool windowed = true,
                                   bool split = true) {
  PhantomSet s{dir + "/ph", dir + "/img", dir + "/train.csv", dir + "/valid.csv"};
  po.out = s.phantom;
  write_phantom(po);
  if (!windowed) return s;
  WindowOptions wo;
  wo.input = s.phantom + "/dicom";
  wo.out = s.images;
  window_dicoms(wo);
  if (!split) return s;
  const SplitResult sp = split_dataset(read_rsna_labels(s.phantom + "/labels.csv"), read_csv(s.images + "/meta.csv"), {});
  for (auto [path, rows] : {std::pair{s.train_csv, &sp.train}, std::pair{s.valid_csv, &sp.valid}}) {
    CsvWriter w(path, split_header());
    for (const auto& r : *rows) w.row(split_fields(r));
    w.commit();
  }
  return s;
}

}  // namespace ich::test
