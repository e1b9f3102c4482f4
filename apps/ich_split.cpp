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
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Split labelled slices into OUT/train.csv and OUT/valid.csv, keeping each patient (study, series) on one\n"
      "side and the subtype frequencies alike on both. Exit codes: 0 written, 1 failed, 2 bad flags."};
  std::string labels, meta, out;
  ich::SplitOptions o;
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
  return ich::run_app("ich-split", app, argc, argv, [&] {
    const ich::LabelTable lt = ich::read_rsna_labels(labels);
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
