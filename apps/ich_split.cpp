// ich-split: train/validation split without patient leakage (data/split.h).
#include <cstdio>
#include <filesystem>

#include "apps/app_main.h"
#include "data/labels.h"
#include "data/split.h"

namespace {
void print_side(const char* name, const std::vector<ich::SplitRow>& rows) {
  std::array<int64_t, 6> pos{};
  for (const auto& r : rows)
    for (size_t k = 0; k < 6; ++k) pos[k] += r.y[k];
  std::printf("%-6s %8zu", name, rows.size());
  for (size_t k = 0; k < 6; ++k) std::printf(" %9.4f", rows.empty() ? 0.0 : double(pos[k]) / double(rows.size()));
  std::printf("\n");
}
void write_csv(const std::filesystem::path& path, const std::vector<const std::vector<ich::SplitRow>*>& parts) {
  std::filesystem::create_directories(path.parent_path());
  ich::CsvWriter w(path.string(), ich::split_header());
  for (const auto* rows : parts)
    for (const auto& row : *rows) w.row(ich::split_fields(row));
  w.commit();
}

int write_folds(const ich::LabelTable& lt, const ich::CsvTable& meta, int k, const ich::SplitOptions& o,
                const std::string& out) {
  const ich::FoldsResult r = ich::split_folds(lt, meta, k, o);
  const std::filesystem::path dir(out);
  for (size_t f = 0; f < r.folds.size(); ++f) {
    std::vector<const std::vector<ich::SplitRow>*> rest;
    for (size_t g = 0; g < r.folds.size(); ++g)
      if (g != f) rest.push_back(&r.folds[g]);
    const std::filesystem::path fd = dir / ("fold" + std::to_string(f));
    write_csv(fd / "train.csv", rest);
    write_csv(fd / "valid.csv", {&r.folds[f]});
  }
  {
    ich::CsvWriter w((dir / "folds.csv").string(), {"image_id", "patient_id", "fold"});
    for (size_t f = 0; f < r.folds.size(); ++f)
      for (const auto& row : r.folds[f]) w.row({row.image_id, row.patient_id, std::to_string(f)});
    w.commit();
  }
  std::printf("%lld labelled ids without an image, %lld images without labels; %d folds by %s\n",
              (long long)r.labels_without_image, (long long)r.images_without_labels, k, o.group_by.c_str());
  std::printf("fold   %8s", "images");
  for (const char* s : ich::kSubtypes) std::printf(" %9.9s", s);
  std::printf("\n");
  for (size_t f = 0; f < r.folds.size(); ++f) print_side(("fold" + std::to_string(f)).c_str(), r.folds[f]);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Split labelled slices into OUT/train.csv and OUT/valid.csv, keeping each patient (study, series) on one\n"
      "side and the subtype frequencies alike on both.\n"
      "With --folds K: K folds for cross-validation instead, each patient in exactly one: OUT/fold<k>/train.csv\n"
      "(the other folds) and OUT/fold<k>/valid.csv (fold k) for k = 0..K-1, and OUT/folds.csv (image_id, fold).\n"
      "Exit codes: 0 written, 1 failed, 2 bad flags."};
  std::string labels, meta, out;
  ich::SplitOptions o;
  int folds = 0;
  app.add_option("--labels", labels, "RSNA labels (ID,Label; e.g. stage_2_train.csv or a phantom's labels.csv)")
      ->required();
  app.add_option("--meta", meta, "meta.csv written by ich-window")->required();
  app.add_option("--out", out, "output folder")->required();
  app.add_option("--valid-fraction", o.valid_fraction, "fraction of images for validation")->capture_default_str();
  app.add_option("--group-by", o.group_by, "patient, study, series or none: what never straddles the sides")
      ->capture_default_str();
  app.add_option("--method", o.method, "grouped (stratified, by group) or seed (the seed notebook's image-level split)")
      ->capture_default_str();
  app.add_option("--seed", o.seed, "seed of the split")->capture_default_str();
  app.add_option("--folds", folds, "K >= 2: K cross-validation folds instead of one train/validation split");
  return ich::run_app("ich-split", app, argc, argv, [&] {
    const ich::LabelTable lt = ich::read_rsna_labels(labels);
    if (folds != 0) return write_folds(lt, ich::read_csv(meta), folds, o, out);
    const ich::SplitResult r = ich::split_dataset(lt, ich::read_csv(meta), o);
    std::filesystem::create_directories(out);
    for (auto [name, rows] : {std::pair{"train.csv", &r.train}, std::pair{"valid.csv", &r.valid}}) {
      ich::CsvWriter w((std::filesystem::path(out) / name).string(), ich::split_header());
      for (const auto& row : *rows) w.row(ich::split_fields(row));
      w.commit();
    }
    std::printf("%lld label rows (%lld exact duplicates dropped), %zu images; %lld labelled ids without an image, "
                "%lld images without labels\n",
                (long long)lt.rows, (long long)lt.duplicate_rows, lt.images.size(), (long long)r.labels_without_image,
                (long long)r.images_without_labels);
    std::printf("side   %8s", "images");
    for (const char* s : ich::kSubtypes) std::printf(" %9.9s", s);
    std::printf("\n");
    print_side("train", r.train);
    print_side("valid", r.valid);
    return 0;
  });
}
