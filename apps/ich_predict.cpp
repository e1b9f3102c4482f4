// ich-predict: DICOM in, probabilities out, in the Kaggle submission format
// (infer/predict.h).
#include <cstdio>
#include <cstdlib>

#include "apps/app_main.h"
#include "apps/progress.h"
#include "infer/predict.h"

int main(int argc, char** argv) {
  CLI::App app{
      "Predict the five subtypes and any for DICOM slices, windowed as the checkpoint's training images were.\n"
      "Writes ID_<image>_<subtype>,Label rows (the Kaggle submission format), one image per frame of a\n"
      "multi-frame file. Only CT is read unless --any-modality. Files that cannot be read are listed on stderr\n"
      "and left out. A run killed at any moment goes on with --resume (same flags; the journal is OUT.journal).\n"
      "Exit codes: 0 all predicted, 3 some files failed, 1 failed (e.g. --resume with another checkpoint),\n"
      "2 bad flags."};
  ich::PredictOptions o;
  std::vector<std::string> checkpoints;
  app.add_option("--checkpoint", checkpoints,
                 "checkpoint from ich-train; more than once: an ensemble, probabilities averaged")
      ->required();
  app.add_option("--tta", o.tta, "test-time views averaged: none, flip, flip+transpose")->capture_default_str();
  app.add_option("--precision", o.precision,
                 "fp32 (on a CPU with AVX-512F or AVX2 + FMA: batch norm folded, NHWC float32 kernels; ICH_CPU_F32=engine "
                 "for the layer-by-layer engine), or bf16: the CPU's bfloat16 inference (batch norm folded, AMX or AVX512-BF16 "
                 "kernels; refused on CPUs without them); Grad-CAM runs the engine in float32")
      ->check(CLI::IsMember({"fp32", "bf16"}))
      ->capture_default_str();
  std::string shard;
  // "k/n" with n >= 2 and 0 <= k < n, into o.shard and o.shards
  const auto parse_shard = [&o](const std::string& text) {
    const size_t slash = text.find('/');
    if (slash == std::string::npos || slash == 0 || slash + 1 == text.size()) return false;
    char* end = nullptr;
    o.shard = int(std::strtol(text.c_str(), &end, 10));
    if (end != text.c_str() + slash) return false;
    o.shards = int(std::strtol(text.c_str() + slash + 1, &end, 10));
    return *end == 0 && o.shards >= 2 && o.shard >= 0 && o.shard < o.shards;
  };
  app.add_option("--shard", shard,
                 "k/n: this machine's part of the archive (the files whose index in the sorted list is k mod n; "
                 "with a --context checkpoint, whole series k mod n, every header read first); join the parts with "
                 "--merge")
      ->check(CLI::Validator(
          [&](std::string& text) {
            return parse_shard(text) ? std::string() : "expected k/n with n >= 2 and 0 <= k < n (e.g. 0/4)";
          },
          "k/n"));
  app.add_option("--merge", o.merge,
                 "a shard's --out, once per shard: join the finished shards into --out (with the same --input, "
                 "--checkpoint and --sequence; in sequence mode the series models run here, over whole series)");
  app.add_option("--input", o.input, "a DICOM file or a folder of them")->required();
  app.add_option("--out", o.out, "submission CSV to write")->required();
  app.add_option("--batch", o.batch, "slices per forward pass")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--device", o.device, "cpu, cuda or auto")->capture_default_str();
  app.add_flag("--any-modality", o.any_modality, "predict for slices of any modality (MR, CR, ...), not only CT");
  app.add_flag("--resume", o.resume, "go on with an interrupted run into the same --out (same checkpoint and input); with nothing to resume, start fresh (one command line for a retry loop)");
  app.add_option("--sequence", o.sequence,
                 "checkpoint from ich-train-seq trained on this CNN's embeddings (give several to average them): "
                 "the slices are grouped into series, ordered by their geometry, and the sequence model's "
                 "probabilities are written; also writes --studies");
  app.add_option("--studies", o.studies,
                 "with --sequence: one row per series (highest probability per label, key slices); default "
                 "studies.csv beside --out");
  app.add_option("--chunk", o.chunk, "files predicted between two records of the resume journal")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  return ich::run_app("ich-predict", app, argc, argv, [&] {
    o.checkpoint = checkpoints.front();
    o.ensemble.assign(checkpoints.begin() + 1, checkpoints.end());
    ich::Progress progress("ich-predict", "files");
    const ich::PredictReport r = ich::predict_dicoms(o, std::ref(progress));
    for (const auto& [path, why] : r.skipped) std::fprintf(stderr, "ich-predict: skipped %s: %s\n", path.c_str(), why.c_str());
    std::printf("%lld files (%lld done by an earlier run): %lld slices predicted, %lld files skipped -> %s\n",
                (long long)r.files, (long long)r.resumed, (long long)r.slices, (long long)r.failed, o.out.c_str());
    if (!o.sequence.empty()) std::printf("%lld series with series context -> studies.csv\n", (long long)r.series);
    return r.failed > 0 ? 3 : 0;
  });
}
