// html.h: RUN's evaluation as one self-contained report.html (ich-eval
// --out DIR): every image inlined (data: URIs), no script, no external file,
// so it opens anywhere and can be mailed.
//
// Sections: the seed's table (accuracy, precision, recall per subtype and
// Normal) with our additions (F1, AUC, the competition's weighted log loss);
// the charts (ROC, precision-recall, reliability, and the training curves
// when the checkpoint's run folder has its log.csv); operating points per
// label (the threshold where sensitivity first reaches 90%, 95% and 99%,
// with the specificity and PPV there); the confusion counts at 0.5; the
// slices the model missed worst (false negatives: bleeding slices with the
// lowest p(any)) and the worst false alarms (normal slices with the highest
// p(any)) as brain-window thumbnails with their probabilities and, where the
// model was at hand, the Grad-CAM heatmap of "any" over them; with a
// sequence model, one row per series (the highest probability per label and
// the key slices).
//
// Every number that metrics.json also has carries data-key="<label>.<metric>"
// and data-value="<metrics.json's text>", so a test (or a reader) can hold
// the page to the file.
#pragma once
#include <array>
#include <cmath>
#include <string>
#include <vector>

#include "data/metrics.h"
#include "data/study_metrics.h"
#include "report/curves.h"

namespace ich {

struct Thumbnail {
  std::string image_id;
  std::vector<uint8_t> gray;  // size x size, brain window
  std::vector<uint8_t> rgb;   // or size x size x 3: the brain window with the Grad-CAM heatmap of "any" over it
  int size = 0;
  std::array<double, 6> probs{};
  std::array<int, 6> labels{};
};

// One series of a study (with a sequence model: the probabilities after
// series context), as studies.csv has it.
struct StudyRow {
  std::string patient_id, study_uid, series_uid;
  int64_t slices = 0;
  std::array<double, 6> p{};  // per label, the highest over the series
  std::vector<std::string> key_slices;
};

struct HtmlReport {
  std::string title;
  EvalReport report;
  Probs probs;
  Labels labels;
  std::vector<std::pair<std::string, std::string>> charts;  // caption, the chart as PNG bytes (chart_png)
  std::vector<Thumbnail> false_negatives, false_positives;
  std::vector<StudyRow> studies;  // empty: no section
  // ich-eval --studies: the study-level operating points with their
  // intervals, AUC and calibration per label (empty: no section); the cells
  // carry data-study="<label>.<point>.<metric>" and study_metrics.json's text.
  std::vector<StudyLabelReport> study_level;
  double prevalence = NAN;
  // false: external data with study labels only (ich-eval --study-labels):
  // no slice-level sections (their labels are unknown); the charts given
  // are the study level's.
  bool slice_level = true;
};

std::string render_report_html(const HtmlReport& r);

// base64 (RFC 4648), for data: URIs.
std::string base64(const std::string& bytes);

}  // namespace ich
