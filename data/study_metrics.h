// study_metrics.h: what a clinical reader asks of a triage model, at the
// level a radiologist reads: the study.
//
//   a study's score     the highest p(label) over its slices (and over its
//                       series); its truth: some slice of it is positive.
//                       RSNA labels slices; a study-labelled set (CQ500)
//                       gives the truth per study instead.
//   operating points    the highest threshold whose sensitivity reaches a
//                       target (90, 95, 99%), chosen on validation data and
//                       carried to other data as a threshold
//   at a threshold      sensitivity, specificity, PPV, NPV, and PPV and NPV
//                       re-stated at a prevalence the user gives (Bayes:
//                       PPV = se p / (se p + (1 - sp)(1 - p))), since a
//                       test set's prevalence is rarely the ward's
//   intervals           95% percentile bootstrap: patients are resampled
//                       with replacement (all studies of a drawn patient
//                       together, as the studies of one patient are not
//                       independent), the statistic recomputed per
//                       replicate, the 2.5th and 97.5th percentiles kept;
//                       seeded, so the same data give the same interval on
//                       every machine
//   calibration         Brier score (mean squared error of p), expected
//                       calibration error (10 equal-width bins: sum over
//                       bins of n_b / n |mean p - fraction positive|), and
//                       the bins themselves (the reliability diagram)
#pragma once
#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "data/metrics.h"

namespace ich {

struct StudyScore {
  std::string patient_id, study_uid;
  int64_t slices = 0;
  std::array<double, 6> p{};  // per label, the highest over the study's slices
  std::array<int, 6> y{};     // per label, 1 if any slice of the study is positive
};

// One slice's result, as ich-eval has it.
struct SliceScore {
  std::string patient_id, study_uid;
  std::array<double, 6> p{};
  std::array<int, 6> y{};
};
// Studies in order of first appearance; a slice without a study UID is its
// own study (named by its position).
std::vector<StudyScore> studies_from_slices(const std::vector<SliceScore>& slices);

struct Interval {
  double lo = NAN, hi = NAN;
};

struct Confusion {
  int64_t tp = 0, fp = 0, tn = 0, fn = 0;
  double sensitivity() const { return tp + fn ? double(tp) / double(tp + fn) : NAN; }
  double specificity() const { return tn + fp ? double(tn) / double(tn + fp) : NAN; }
  double ppv() const { return tp + fp ? double(tp) / double(tp + fp) : NAN; }
  double npv() const { return tn + fn ? double(tn) / double(tn + fn) : NAN; }
};
// Positive when score >= threshold.
Confusion confusion_at(const std::vector<double>& scores, const std::vector<int>& labels, double threshold);

// Bayes at prevalence `prev`: NaN where undefined.
double ppv_at_prevalence(double sensitivity, double specificity, double prev);
double npv_at_prevalence(double sensitivity, double specificity, double prev);

struct StudyOperatingPoint {
  double target = NAN;  // the sensitivity it was chosen for (on validation data)
  double threshold = NAN;
  Confusion c;
  double sensitivity = NAN, specificity = NAN, ppv = NAN, npv = NAN;
  Interval sensitivity_ci, specificity_ci, ppv_ci, npv_ci;
  double prevalence = NAN;  // the re-statement's (NaN: none asked)
  double ppv_prev = NAN, npv_prev = NAN;
  Interval ppv_prev_ci, npv_prev_ci;
};

struct Calibration {
  double brier = NAN, ece = NAN;
  struct Bin {
    double lo = 0, hi = 0, mean_p = NAN, positive_fraction = NAN;
    int64_t n = 0;
  };
  std::vector<Bin> bins;
};
Calibration calibration(const std::vector<double>& p, const std::vector<int>& y, int bins = 10);

struct BootstrapOptions {
  int replicates = 2000;
  uint64_t seed = 0;
};

// Percentile bootstrap of statistic(indices of the studies drawn) over
// patients: `patient_of[i]` is study i's patient index (0..P-1). NaN
// replicates (a statistic undefined on that draw) are left out.
Interval bootstrap_interval(const std::vector<int64_t>& patient_of,
                            const std::function<double(const std::vector<size_t>&)>& statistic,
                            const BootstrapOptions& o);

// Several statistics of the same bootstrap draws (fn gives them all for one
// draw): their 95% intervals, NaNs left out per statistic.
std::vector<Interval> bootstrap_intervals(const std::vector<int64_t>& patient_of,
                                          const std::function<std::vector<double>(const std::vector<size_t>&)>& fn,
                                          const BootstrapOptions& o);

// The ROC curve with its 95% band: the true positive rate at each false
// positive rate of a grid (the highest reached at or below it: vertical
// averaging), and its percentile interval over the patients' bootstrap.
struct RocBand {
  std::vector<double> fpr, tpr, lo, hi;
};
RocBand roc_band(const std::vector<double>& scores, const std::vector<int>& labels,
                 const std::vector<int64_t>& patient_of, const BootstrapOptions& o, int points = 51);

// The precision-recall curve with its 95% band, the same way: the
// interpolated precision (the highest at this recall or above) at each
// recall of a grid. Same fields: fpr holds the recalls, tpr the precisions.
RocBand pr_band(const std::vector<double>& scores, const std::vector<int>& labels,
                const std::vector<int64_t>& patient_of, const BootstrapOptions& o, int points = 51);

// The study-level report of one label: AUC with its interval, the operating
// points (each at its threshold: `thresholds` when given, from validation
// data; else chosen here for `targets`, and marked so), calibration.
struct StudyLabelReport {
  std::string label;
  int64_t studies = 0, positives = 0;
  double auc = NAN;
  Interval auc_ci;
  bool thresholds_from_here = true;  // chosen on the data they are reported on (optimistic)
  std::vector<StudyOperatingPoint> points;
  Calibration cal;
  RocBand roc, pr;
};
struct StudyReportOptions {
  std::vector<double> targets{0.90, 0.95, 0.99};
  std::vector<double> thresholds;  // one per target, from validation; empty: chosen on this data
  double prevalence = NAN;         // re-state PPV/NPV at it (NaN: no)
  BootstrapOptions bootstrap;
};
StudyLabelReport study_label_report(const std::vector<StudyScore>& studies, size_t label, const StudyReportOptions& o);

// study_metrics.json: every label's report; `extra`: more members of the
// top object (JSON text without braces, e.g. the external data's matching).
std::string study_report_json(const std::vector<StudyLabelReport>& r, const StudyReportOptions& o,
                              const std::string& extra = "");
// study_thresholds.csv (label,target_sensitivity,threshold): the operating
// points of a validation run, written beside study_metrics.json and read
// back by ich-eval --thresholds; a target it lacks is an error naming it.
std::vector<std::vector<std::string>> study_threshold_rows(const std::vector<StudyLabelReport>& r);
std::vector<double> read_study_thresholds(const std::string& csv_path, const std::string& label,
                                          const std::vector<double>& targets);
// External study-level labels (ich-eval --study-labels), either
//   CQ500's reads.csv: name, Category, R1:ICH, R1:IPH, R1:IVH, R1:SDH,
//     R1:EDH, R1:SAH, ... R3:SAH: a finding is present when at least two of
//     the three readers marked it (ICH -> any, IPH intraparenchymal, IVH
//     intraventricular, SDH subdural, EDH epidural, SAH subarachnoid);
//     rows are matched to DICOM by PatientID = name;
//   or a plain CSV: study_uid (or patient_id) and any of the RSNA label
//     names as 0/1 columns ("label" stands for any).
// Keys are compared without case, spaces, '-' and '_' ("CQ500-CT-7" is
// "CQ500CT7"). Labels the file does not give are not evaluated.
struct StudyLabels {
  std::string format;  // what was read, for the report
  bool by_patient = false;  // matched by PatientID (else by StudyInstanceUID)
  std::map<std::string, std::array<int, 6>> labels;  // normalised key -> labels
  std::map<std::string, std::string> names;          // normalised key -> the file's spelling
  std::array<bool, 6> known{};
};
StudyLabels read_study_labels(const std::string& path);
std::string normalised_study_key(const std::string& s);

// A markdown table: one row per label and operating point.
std::string format_study_table(const std::vector<StudyLabelReport>& r);

}  // namespace ich
