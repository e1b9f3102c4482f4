// ich-eval: a checkpoint on a labelled split, with or without the sequence
// stage (infer/evaluate.h): predictions.csv, metrics.json, the charts and the
// seed's table (plus F1, AUC and the competition metric).
#include <cstdio>

#include "apps/app_main.h"
#include "apps/progress.h"
#include "infer/evaluate.h"

int main(int argc, char** argv) {
  CLI::App app{
      "Evaluate a checkpoint on a split CSV: OUT/predictions.csv, OUT/metrics.json, the charts OUT/roc.png, OUT/pr.png\n"
      "and OUT/calibration.png, and a table.\n"
      "With --sequence, the sequence model over each series gives the predictions (several: their mean;\n"
      "OUT/per_slice/ holds the CNN's alone) and one line compares the two.\n"
      "With --studies, the study level too: a study's score is its highest slice probability; at the thresholds\n"
      "reaching each --sensitivities target (chosen here, or from a validation run's --thresholds FILE),\n"
      "sensitivity, specificity, PPV, NPV with 95% bootstrap intervals over patients, PPV/NPV at --prevalence,\n"
      "AUC and calibration: OUT/study_metrics.json, OUT/study_thresholds.csv, a section of report.html.\n"
      "External data (--study-labels FILE instead of --data): every image of --images, the truth per study from\n"
      "CQ500's reads.csv (2 of 3 readers) or a study CSV; the study level only, and which studies did not match.\n"
      "Exit codes: 0 done, 1 failed, 2 bad flags."};
  ich::EvalOptions o;
  std::vector<std::string> checkpoints;
  app.add_option("--checkpoint", checkpoints,
                 "checkpoint from ich-train (best.ckpt, ...); more than once: an ensemble, probabilities averaged")
      ->required();
  app.add_option("--tta", o.tta, "test-time views averaged: none, flip, flip+transpose")->capture_default_str();
  app.add_option("--precision", o.precision,
                 "fp32 (on a CPU with AVX-512F or AVX2 + FMA: batch norm folded, NHWC float32 kernels; ICH_CPU_F32=engine "
                 "for the layer-by-layer engine), or bf16: the CPU's bfloat16 inference (batch norm folded, AMX or AVX512-BF16 "
                 "kernels; refused on CPUs without them); Grad-CAM runs the engine in float32")
      ->check(CLI::IsMember({"fp32", "bf16"}))
      ->capture_default_str();
  app.add_option("--sequence", o.sequence,
                 "checkpoint from ich-train-seq (RUN/best.ckpt), trained on this CNN's embeddings; give it more than "
                 "once (models of other seeds) to average their probabilities");
  app.add_option("--data", o.data, "split CSV with labels (valid.csv from ich-split); or --study-labels");
  app.add_option("--study-labels", o.study_labels,
                 "external data: study-level labels (CQ500's reads.csv, or a CSV of study_uid or patient_id and label "
                 "columns); the slices are every image in --images; only the study level is evaluated");
  app.add_option("--images", o.images, "folder of .npy images from ich-window")->required();
  app.add_option("--out", o.out, "output folder")->required();
  app.add_option("--batch", o.batch, "images per forward pass")->capture_default_str();
  app.add_option("--device", o.device, "cpu, cuda or auto")->capture_default_str();
  app.add_flag("--studies", o.studies, "study-level evaluation with confidence intervals (see above)");
  app.add_option("--sensitivities", o.sensitivities, "operating points: target sensitivities")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--prevalence", o.prevalence, "re-state PPV and NPV at this prevalence (e.g. 0.06)");
  app.add_option("--thresholds", o.thresholds,
                 "study_thresholds.csv of a validation run (ich-eval --studies): apply its operating points here");
  app.add_option("--bootstrap", o.bootstrap, "bootstrap replicates for the intervals")->capture_default_str();
  return ich::run_app("ich-eval", app, argc, argv, [&] {
    o.checkpoint = checkpoints.front();
    o.ensemble.assign(checkpoints.begin() + 1, checkpoints.end());
    ich::Progress progress("ich-eval", "images");
    const ich::EvalResult r =
        ich::run_eval(o, [](const std::string& s) { std::fprintf(stderr, "%s\n", s.c_str()); }, std::ref(progress));
    if (!o.study_labels.empty()) {
      std::printf("%s: %lld studies matched; %zu labelled studies without DICOM, %zu DICOM studies without labels\n",
                  r.external.format.c_str(), (long long)r.external.matched, r.external.labels_without_dicom.size(),
                  r.external.dicom_without_labels.size());
      for (const std::string& s : r.external.labels_without_dicom) std::printf("  no DICOM: %s\n", s.c_str());
      for (const std::string& s : r.external.dicom_without_labels) std::printf("  no labels: %s\n", s.c_str());
      std::printf("\n%s", ich::format_study_table(r.study_level).c_str());
      std::printf("study level in %s: study_metrics.json, studies.csv, report.html\n", o.out.c_str());
      return 0;
    }
    std::printf("%s", ich::format_table(r.final_report).c_str());
    if (r.with_context)
      std::printf("weighted log loss (competition metric): per-slice %.3f, with series context %.3f\n",
                  r.per_slice.weighted_log_loss, r.final_report.weighted_log_loss);
    if (!r.study_level.empty()) {
      std::printf("\n%s", ich::format_study_table(r.study_level).c_str());
      if (r.study_level.front().thresholds_from_here)
        std::printf("thresholds chosen on this data (optimistic); apply a validation run's with --thresholds\n");
    }
    std::printf("charts in %s: roc.png, pr.png (precision-recall), calibration.png (reliability)\n", o.out.c_str());
    return 0;
  });
}
