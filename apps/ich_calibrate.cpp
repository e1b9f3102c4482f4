// ich-calibrate: temperature scaling of a checkpoint on validation data
// (infer/calibrate.h).
#include <cstdio>

#include "apps/app_main.h"
#include "apps/progress.h"
#include "data/labels.h"
#include "infer/calibrate.h"

int main(int argc, char** argv) {
  CLI::App app{
      "Fit one temperature per label on a labelled split (validation data, not the training data) and write the\n"
      "checkpoint again with them as OUT: ich-eval, ich-predict and ich-serve then give sigmoid(logit / T).\n"
      "The order of the slices (AUC) does not change; the log loss and the calibration error fall.\n"
      "The optimizer state is left out (a calibrated checkpoint is for inference; ich-train does not resume it).\n"
      "Exit codes: 0 written, 1 failed, 2 bad flags."};
  ich::CalibrateOptions o;
  app.add_option("--checkpoint", o.checkpoint, "checkpoint from ich-train (best.ckpt)")->required();
  app.add_option("--data", o.data, "split CSV with labels (valid.csv from ich-split)")->required();
  app.add_option("--images", o.images, "folder of .npy images from ich-window")->required();
  app.add_option("--out", o.out, "the calibrated checkpoint to write")->required();
  app.add_option("--batch", o.batch, "images per forward pass")->capture_default_str();
  app.add_option("--device", o.device, "cpu, cuda or auto")->capture_default_str();
  return ich::run_app("ich-calibrate", app, argc, argv, [&] {
    ich::Progress progress("ich-calibrate", "images");
    const ich::CalibrateResult r = ich::run_calibrate(o, std::ref(progress));
    std::printf("| label | temperature | mean BCE before | after |\n|---|---:|---:|---:|\n");
    for (size_t k = 0; k < 6; ++k)
      std::printf("| %s | %.4f%s | %.5f | %.5f |\n", ich::kSubtypes[k], r.fits[k].temperature,
                  r.fits[k].fitted ? "" : " (no positives or no negatives: not fitted)", r.fits[k].loss_before,
                  r.fits[k].loss_after);
    std::printf("weighted log loss on %lld images: %.5f before, %.5f after; wrote %s\n", (long long)r.images,
                r.weighted_log_loss_before, r.weighted_log_loss_after, o.out.c_str());
    return 0;
  });
}
