// ich-eval: a checkpoint on a labelled split: predictions.csv, metrics.json,
// roc.png and the seed's table (plus F1, AUC and the competition metric).
#include <cstdio>
#include <filesystem>

#include "apps/app_main.h"
#include "apps/progress.h"
#include "data/metrics.h"
#include "data/phantom.h"
#include "data/plot.h"
#include "engine/device_select.h"
#include "train/checkpoint.h"
#include "train/trainer.h"
#include "weights/atomic_file.h"

int main(int argc, char** argv) {
  CLI::App app{
      "Evaluate a checkpoint on a split CSV: OUT/predictions.csv, OUT/metrics.json, OUT/roc.png, and a table.\n"
      "Exit codes: 0 done, 1 failed, 2 bad flags."};
  std::string ckpt, data, images, out, device = "auto";
  int64_t batch = 16;
  app.add_option("--checkpoint", ckpt, "checkpoint from ich-train (best.ckpt, last.ckpt, ...)")->required();
  app.add_option("--data", data, "split CSV with labels (valid.csv from ich-split)")->required();
  app.add_option("--images", images, "folder of .npy images from ich-window")->required();
  app.add_option("--out", out, "output folder")->required();
  app.add_option("--batch", batch, "images per forward pass")->capture_default_str();
  app.add_option("--device", device, "cpu, cuda or auto")->capture_default_str();
  return ich::run_app("ich-eval", app, argc, argv, [&] {
    namespace fs = std::filesystem;
    fs::create_directories(out);
    const ich::Device dev = ich::pick_device(device);
    ich::LoadedCheckpoint c = ich::load_checkpoint(ckpt);
    c.model->to(dev);
    const ich::SliceDataset ds(ich::read_split(data), images);
    ich::Progress progress("ich-eval", "images");
    const auto p = ich::predict_probs(*c.model, ds, c.meta.size, batch, dev, std::ref(progress));
    std::vector<std::array<int, 6>> y(ds.size());
    std::vector<std::string> header{"image_id"};
    for (const char* s : ich::kSubtypes) header.push_back(std::string("p_") + s);
    for (const char* s : ich::kSubtypes) header.push_back(s);
    ich::CsvWriter w((fs::path(out) / "predictions.csv").string(), header);
    for (size_t i = 0; i < ds.size(); ++i) {
      y[i] = ds.row(i).y;
      std::vector<std::string> row{ds.row(i).image_id};
      for (double v : p[i]) row.push_back(ich::fmt_double(v, 6));
      for (int v : y[i]) row.push_back(std::to_string(v));
      w.row(row);
    }
    w.commit();
    const ich::EvalReport r = ich::evaluate(p, y);
    ich::write_file_atomic((fs::path(out) / "metrics.json").string(), ich::to_json(r));
    std::vector<ich::Series> curves;
    for (size_t k = 0; k < 6; ++k) {
      std::vector<double> s(p.size());
      std::vector<int> l(p.size());
      for (size_t i = 0; i < p.size(); ++i) s[i] = p[i][k], l[i] = y[i][k];
      curves.push_back({ich::kSubtypes[k], ich::roc_curve(s, l), ich::palette(k)});
    }
    ich::write_line_plot((fs::path(out) / "roc.png").string(), curves, 0, 1, 0, 1, true);
    std::printf("%s", ich::format_table(r).c_str());
    std::printf("ROC curves in %s/roc.png (colours, top left down: epidural, intraparenchymal, intraventricular, "
                "subarachnoid, subdural, any)\n", out.c_str());
    return 0;
  });
}
