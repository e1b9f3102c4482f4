// curves.h: the charts of an evaluation and of a training run (report/plot.h),
// from probabilities and labels (N x 6, RSNA order: five subtypes, "any")
// or from ich-train's log.csv.
#pragma once
#include <array>
#include <vector>

#include "data/study_metrics.h"
#include "io/csv.h"
#include "report/plot.h"

namespace ich {

using Probs = std::vector<std::array<double, 6>>;
using Labels = std::vector<std::array<int, 6>>;

// Precision-recall points (recall, precision) as the threshold falls past
// each distinct score; average precision (the step-wise area, sklearn's
// average_precision_score) in `ap`. Empty without positives.
std::vector<std::pair<double, double>> pr_curve(const std::vector<double>& scores, const std::vector<int>& labels,
                                                double* ap = nullptr);

// Reliability: `bins` equal-width bins of the predicted probability; per
// non-empty bin (mean predicted, observed fraction of positives).
std::vector<std::pair<double, double>> calibration_points(const std::vector<double>& scores,
                                                          const std::vector<int>& labels, int bins = 10);

// One series per label with positives, each named with its figure:
// "any (AUC 0.966)", "subdural (AP 0.52)".
Chart roc_chart(const Probs& p, const Labels& y);
Chart pr_chart(const Probs& p, const Labels& y);
Chart calibration_chart(const Probs& p, const Labels& y);

// The study level's ROC per label (ich-eval --studies): each label's curve
// on the false positive rate grid, and the first label's (any) 95%
// bootstrap band as two lighter lines.
Chart study_roc_chart(const std::vector<StudyLabelReport>& r);
// The same for precision-recall (interpolated precision on a recall grid).
Chart study_pr_chart(const std::vector<StudyLabelReport>& r);

// From log.csv: losses (train, valid), the competition metric, and AUCs
// (any, mean, each subtype logged) per epoch.
Chart loss_chart(const CsvTable& log);
Chart metric_chart(const CsvTable& log);
Chart auc_chart(const CsvTable& log);

}  // namespace ich
