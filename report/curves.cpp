#include "report/curves.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <numeric>

#include "data/labels.h"
#include "data/metrics.h"
#include "engine/error.h"

namespace ich {

namespace {

std::string with(const char* name, const char* what, double v) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "%s (%s %.3f)", name, what, v);
  return buf;
}

void column(const Probs& p, const Labels& y, size_t k, std::vector<double>& s, std::vector<int>& l) {
  s.resize(p.size());
  l.resize(p.size());
  for (size_t i = 0; i < p.size(); ++i) s[i] = p[i][k], l[i] = y[i][k];
}

bool has_positive(const std::vector<int>& l) { return std::find(l.begin(), l.end(), 1) != l.end(); }

// The labels in the legend's order: any first, then the subtypes.
constexpr size_t kOrder[6] = {5, 0, 1, 2, 3, 4};

}  // namespace

std::vector<std::pair<double, double>> pr_curve(const std::vector<double>& scores, const std::vector<int>& labels,
                                                double* ap) {
  ICH_CHECK(scores.size() == labels.size(), "pr_curve: ", scores.size(), " scores, ", labels.size(), " labels");
  const int64_t pos = std::count(labels.begin(), labels.end(), 1);
  if (ap) *ap = NAN;
  if (pos == 0) return {};
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  std::vector<std::pair<double, double>> pts;
  int64_t tp = 0, seen = 0;
  double area = 0, last_recall = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    tp += labels[order[i]] == 1;
    ++seen;
    if (i + 1 < order.size() && scores[order[i + 1]] == scores[order[i]]) continue;  // ties: one threshold
    const double recall = double(tp) / double(pos), precision = double(tp) / double(seen);
    area += (recall - last_recall) * precision;
    last_recall = recall;
    pts.emplace_back(recall, precision);
  }
  if (ap) *ap = area;
  return pts;
}

std::vector<std::pair<double, double>> calibration_points(const std::vector<double>& scores,
                                                          const std::vector<int>& labels, int bins) {
  ICH_CHECK(bins >= 1 && scores.size() == labels.size(), "calibration_points: ", bins, " bins");
  std::vector<double> sum_p(size_t(bins), 0), sum_y(size_t(bins), 0);
  std::vector<int64_t> n(size_t(bins), 0);
  for (size_t i = 0; i < scores.size(); ++i) {
    const size_t b = size_t(std::clamp(int(scores[i] * bins), 0, bins - 1));
    sum_p[b] += scores[i];
    sum_y[b] += labels[i];
    ++n[b];
  }
  std::vector<std::pair<double, double>> pts;
  for (size_t b = 0; b < size_t(bins); ++b)
    if (n[b] > 0) pts.emplace_back(sum_p[b] / double(n[b]), sum_y[b] / double(n[b]));
  return pts;
}

namespace {

// A chart with one series per label (any first): series(k, scores, labels)
// fills it, or returns false to leave the label out (no positives).
using LabelSeries = std::function<bool(size_t k, const std::vector<double>&, const std::vector<int>&, PlotSeries&)>;
Chart per_label(const Probs& p, const Labels& y, Chart c, const LabelSeries& series) {
  std::vector<double> s;
  std::vector<int> l;
  for (size_t k : kOrder) {
    column(p, y, k, s, l);
    PlotSeries one{kSubtypes[k], {}, palette(k)};
    if (series(k, s, l, one)) c.series.push_back(std::move(one));
  }
  return c;
}

}  // namespace

Chart roc_chart(const Probs& p, const Labels& y) {
  Chart c;
  c.title = "ROC per label (" + std::to_string(p.size()) + " slices)";
  c.x_label = "false positive rate (1 - specificity)";
  c.y_label = "true positive rate (sensitivity)";
  c.diagonal = true;
  return per_label(p, y, c, [](size_t k, const std::vector<double>& s, const std::vector<int>& l, PlotSeries& out) {
    if (!has_positive(l) || std::count(l.begin(), l.end(), 0) == 0) return false;
    out.name = with(kSubtypes[k], "AUC", roc_auc(s, l));
    out.points = roc_curve(s, l);
    return true;
  });
}

namespace {

// Each label's curve on its grid, and the first label's (any) 95% band as
// two lighter lines.
Chart band_chart(const std::vector<StudyLabelReport>& r, RocBand StudyLabelReport::*which, Chart c, bool with_auc) {
  for (size_t l = 0; l < r.size(); ++l) {
    const RocBand& b = r[l].*which;
    if (b.tpr.empty() || std::isnan(b.tpr.front())) continue;
    PlotSeries s;
    s.name = with_auc ? with(r[l].label.c_str(), "AUC", r[l].auc) : r[l].label;
    s.color = palette(l);
    for (size_t j = 0; j < b.fpr.size(); ++j) s.points.emplace_back(b.fpr[j], b.tpr[j]);
    c.series.push_back(s);
    if (l != 0) continue;
    for (const auto* side : {&b.lo, &b.hi}) {
      PlotSeries e;
      e.name = r[l].label + (side == &b.lo ? " 95% band, lower" : " 95% band, upper");
      const std::array<uint8_t, 3> base = palette(l);
      for (size_t k = 0; k < 3; ++k) e.color[k] = uint8_t((base[k] + 2 * 255) / 3);  // lighter
      for (size_t j = 0; j < b.fpr.size(); ++j)
        if (!std::isnan((*side)[j])) e.points.emplace_back(b.fpr[j], (*side)[j]);
      if (!e.points.empty()) c.series.push_back(e);
    }
  }
  return c;
}

}  // namespace

Chart study_roc_chart(const std::vector<StudyLabelReport>& r) {
  Chart c;
  c.title = "ROC per label (" + std::to_string(r.empty() ? 0 : r.front().studies) + " studies), 95% band of " +
            (r.empty() ? std::string("-") : r.front().label);
  c.x_label = "false positive rate (1 - specificity)";
  c.y_label = "true positive rate (sensitivity)";
  c.diagonal = true;
  return band_chart(r, &StudyLabelReport::roc, c, true);
}

Chart study_pr_chart(const std::vector<StudyLabelReport>& r) {
  Chart c;
  c.title = "Precision-recall per label (" + std::to_string(r.empty() ? 0 : r.front().studies) +
            " studies), 95% band of " + (r.empty() ? std::string("-") : r.front().label);
  c.x_label = "recall (sensitivity)";
  c.y_label = "precision (PPV), interpolated";
  c.legend = Chart::Corner::LowerLeft;
  return band_chart(r, &StudyLabelReport::pr, c, false);
}

Chart pr_chart(const Probs& p, const Labels& y) {
  Chart c;
  c.title = "Precision-recall per label";
  c.x_label = "recall (sensitivity)";
  c.y_label = "precision (PPV)";
  c.legend = Chart::Corner::LowerLeft;
  return per_label(p, y, c, [](size_t k, const std::vector<double>& s, const std::vector<int>& l, PlotSeries& out) {
    double ap = 0;
    out.points = pr_curve(s, l, &ap);
    out.name = with(kSubtypes[k], "AP", ap);
    return !out.points.empty();
  });
}

Chart calibration_chart(const Probs& p, const Labels& y) {
  Chart c;
  c.title = "Reliability (10 bins of predicted probability)";
  c.x_label = "mean predicted probability";
  c.y_label = "observed fraction positive";
  c.diagonal = true;
  c.legend = Chart::Corner::UpperLeft;
  return per_label(p, y, c, [](size_t, const std::vector<double>& s, const std::vector<int>& l, PlotSeries& out) {
    out.points = calibration_points(s, l);
    out.markers = true;
    return has_positive(l);
  });
}

namespace {

// Columns of log.csv against the epoch, skipping empty fields.
Chart epochs_chart(const CsvTable& log, const std::vector<std::pair<std::string, std::string>>& cols, bool unit_range) {
  ICH_CHECK(!log.rows.empty(), log.path, ": no epochs yet");
  const size_t ce = log.column("epoch");
  Chart c;
  c.x_label = "epoch";
  c.x0 = 0;
  c.x1 = 1;
  double lo = INFINITY, hi = -INFINITY;
  size_t colour = 0;
  for (const auto& [name, label] : cols) {
    if (!log.has_column(name)) continue;
    const size_t cc = log.column(name);
    PlotSeries s{label, {}, palette(colour++), true};
    for (size_t r = 0; r < log.rows.size(); ++r) {
      if (log.rows[r][cc].empty()) continue;
      double e = 0, v = 0;
      try {
        e = std::stod(log.rows[r][ce]);
        v = std::stod(log.rows[r][cc]);
      } catch (const std::exception&) {
        throw Error(log.path + " line " + std::to_string(log.line_of[r]) + ": '" + log.rows[r][cc] +
                    "' is not a number");
      }
      s.points.emplace_back(e, v);
      c.x1 = std::max(c.x1, e);
      lo = std::min(lo, v), hi = std::max(hi, v);
    }
    if (!s.points.empty()) c.series.push_back(std::move(s));
  }
  if (c.series.empty()) lo = 0, hi = 1;
  if (unit_range) {
    c.y0 = std::max(0.0, std::floor(lo * 10) / 10);
    c.y1 = 1;
    if (c.y0 >= c.y1) c.y0 = 0;
  } else {
    c.y0 = 0;
    c.y1 = hi > 0 ? hi * 1.1 : 1;
  }
  return c;
}

}  // namespace

Chart loss_chart(const CsvTable& log) {
  Chart c = epochs_chart(log, {{"train_loss", "train loss"}, {"valid_loss", "validation loss (mean BCE)"}}, false);
  c.title = "Training and validation loss";
  c.y_label = "loss";
  c.legend = Chart::Corner::UpperRight;
  return c;
}

Chart metric_chart(const CsvTable& log) {
  Chart c = epochs_chart(log, {{"valid_weighted_log_loss", "validation weighted log loss"}}, false);
  c.title = "Competition metric (weighted log loss, any x2)";
  c.y_label = "weighted log loss";
  c.legend = Chart::Corner::UpperRight;
  return c;
}

Chart auc_chart(const CsvTable& log) {
  std::vector<std::pair<std::string, std::string>> cols{{"valid_auc_any", "any"}, {"valid_auc_mean", "mean of labels"}};
  for (size_t k = 0; k < 5; ++k) cols.emplace_back(std::string("valid_auc_") + kSubtypes[k], kSubtypes[k]);
  Chart c = epochs_chart(log, cols, true);
  c.title = "Validation AUC per epoch";
  c.y_label = "ROC AUC";
  return c;
}

}  // namespace ich
