// ich-embed: every slice's pooled CNN features for the sequence stage
// (seq/embed.h).
#include <cstdio>

#include "apps/app_main.h"
#include "apps/progress.h"
#include "seq/embed.h"

int main(int argc, char** argv) {
  CLI::App app{
      "Write each slice's pooled features from an ich-train checkpoint (averaged over test-time views: by default\n"
      "with its mirror image), and the\n"
      "order of every series along its normal: OUT/embeddings.npy, OUT/index.csv, OUT/info.csv.\n"
      "Exit codes: 0 done, 1 failed, 2 bad flags."};
  ich::EmbedOptions o;
  app.add_option("--checkpoint", o.checkpoint, "checkpoint from ich-train (best.ckpt)")->required();
  app.add_option("--data", o.data,
                 "split CSV(s) from ich-split, e.g. --data split/train.csv --data split/valid.csv (one folder "
                 "for both, as ich-train-seq reads it)")
      ->required();
  app.add_option("--images", o.images, "folder of .npy images from ich-window (its meta.csv gives the geometry)")
      ->required();
  app.add_option("--out", o.out, "output folder")->required();
  app.add_option("--batch", o.batch, "slices per forward pass")->capture_default_str();
  app.add_option("--device", o.device, "cpu, cuda or auto")->capture_default_str();
  std::string tta = "flip";
  app.add_option("--tta", tta,
                 "views averaged: none, flip (the slice and its mirror) or flip+transpose (and its transpose: for a "
                 "model trained with ich-train --transpose); the series model is applied with the same")
      ->capture_default_str();
  bool no_flip = false;
  app.add_flag("--no-flip", no_flip, "the same as --tta none");
  app.add_option("--precision", o.precision,
                 "fp32 (on a CPU with AVX-512F or AVX2 + FMA: batch norm folded, NHWC float32 kernels; ICH_CPU_F32=engine "
                 "for the layer-by-layer engine), or bf16: the CPU's bfloat16 inference (batch norm folded, AMX or AVX512-BF16 "
                 "kernels; refused on CPUs without them); Grad-CAM runs the engine in float32")
      ->check(CLI::IsMember({"fp32", "bf16"}))
      ->capture_default_str();
  return ich::run_app("ich-embed", app, argc, argv, [&] {
    o.views = no_flip ? ich::Tta::None : ich::parse_tta(tta);
    ich::Progress progress("ich-embed", "slices");
    const int64_t series = ich::run_embed(o, [](const std::string& s) { std::fprintf(stderr, "%s\n", s.c_str()); },
                                          std::ref(progress));
    std::printf("embeddings of %lld series in %s\n", (long long)series, o.out.c_str());
    return 0;
  });
}
