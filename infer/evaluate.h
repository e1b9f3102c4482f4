// evaluate.h: what ich-eval does: a checkpoint on a labelled split, and with
// a sequence checkpoint the second stage too. Writes OUT/predictions.csv
// (the final probabilities, and the labels), OUT/metrics.json, OUT/roc.png, pr.png and calibration.png (report/curves.h);
// with --sequence also OUT/per_slice/ (the same three for the CNN alone);
// with --studies the study-level evaluation (study_metrics.json,
// study_thresholds.csv and report.html's "Study level").
#pragma once
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "data/metrics.h"
#include "data/study_metrics.h"

namespace ich {

struct EvalOptions {
  std::string checkpoint, data, images, out, device = "auto";
  // Sequence checkpoints: none (the CNN alone), one, or several trained on
  // the same embeddings (other seeds): their probabilities are averaged.
  std::vector<std::string> sequence;
  // More slice models averaged with `checkpoint`, and test-time views
  // (infer/ensemble.h): none, flip, flip+transpose. Not with `sequence`.
  std::vector<std::string> ensemble;
  std::string tta = "none";
  std::string precision = "fp32";  // or bf16: the CPU's bf16 inference (layers/resnext_compiled.h)
  int64_t batch = 16;
  // --studies: study-level evaluation (data/study_metrics.h) of the final
  // probabilities: OUT/study_metrics.json, OUT/study_thresholds.csv and a
  // section of report.html. thresholds: a study_thresholds.csv of a
  // validation run whose operating points are applied here.
  bool studies = false;
  std::vector<double> sensitivities{0.90, 0.95, 0.99};
  double prevalence = NAN;
  std::string thresholds;
  int bootstrap = 2000;
  // External validation (--study-labels FILE, data/study_metrics.h
  // read_study_labels): no split CSV; the slices are every converted image
  // of the images folder (its meta.csv), the truth is per study (CQ500's
  // reads.csv or a plain study CSV). Only the study level is evaluated;
  // the report names the labelled studies without DICOM and the DICOM
  // studies without labels.
  std::string study_labels;
};

struct ExternalMatch {
  std::string format;
  int64_t matched = 0;
  std::vector<std::string> labels_without_dicom, dicom_without_labels;
};

struct EvalResult {
  EvalReport final_report;        // the sequence model's when given, else the CNN's
  EvalReport per_slice;           // the CNN's
  bool with_context = false;
  std::vector<StudyLabelReport> study_level;  // --studies
  ExternalMatch external;                     // --study-labels
};

EvalResult run_eval(const EvalOptions& o, const std::function<void(const std::string&)>& log = nullptr,
                    const std::function<void(int64_t, int64_t)>& progress = nullptr);

}  // namespace ich
