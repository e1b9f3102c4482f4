#include "data/study_metrics.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <unordered_map>

#include "data/labels.h"
#include "engine/error.h"
#include "engine/random.h"
#include "io/csv.h"

namespace ich {

std::vector<StudyScore> studies_from_slices(const std::vector<SliceScore>& slices) {
  std::vector<StudyScore> out;
  std::unordered_map<std::string, size_t> index;
  for (size_t i = 0; i < slices.size(); ++i) {
    const SliceScore& s = slices[i];
    const std::string key = s.study_uid.empty() ? "slice:" + std::to_string(i) : s.study_uid;
    auto [it, fresh] = index.emplace(key, out.size());
    if (fresh) {
      StudyScore st;
      st.patient_id = s.patient_id.empty() ? key : s.patient_id;
      st.study_uid = key;
      st.p.fill(0.0);
      out.push_back(st);
    }
    StudyScore& st = out[it->second];
    ++st.slices;
    for (size_t k = 0; k < 6; ++k) {
      st.p[k] = std::max(st.p[k], s.p[k]);
      st.y[k] |= s.y[k];
    }
  }
  return out;
}

Confusion confusion_at(const std::vector<double>& scores, const std::vector<int>& labels, double threshold) {
  Confusion c;
  for (size_t i = 0; i < scores.size(); ++i) {
    const bool pred = scores[i] >= threshold;
    if (labels[i])
      (pred ? c.tp : c.fn) += 1;
    else
      (pred ? c.fp : c.tn) += 1;
  }
  return c;
}

double ppv_at_prevalence(double se, double sp, double prev) {
  const double d = se * prev + (1 - sp) * (1 - prev);
  return d > 0 ? se * prev / d : NAN;
}

double npv_at_prevalence(double se, double sp, double prev) {
  const double d = sp * (1 - prev) + (1 - se) * prev;
  return d > 0 ? sp * (1 - prev) / d : NAN;
}

Calibration calibration(const std::vector<double>& p, const std::vector<int>& y, int bins) {
  ICH_CHECK(bins >= 1 && p.size() == y.size(), "calibration: ", p.size(), " scores, ", y.size(), " labels");
  Calibration c;
  if (p.empty()) return c;
  std::vector<double> sum_p(size_t(bins), 0), sum_y(size_t(bins), 0);
  std::vector<int64_t> n(size_t(bins), 0);
  double brier = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    brier += (p[i] - y[i]) * (p[i] - y[i]);
    const size_t b = size_t(std::clamp(int(p[i] * bins), 0, bins - 1));  // [k/B, (k+1)/B), 1.0 in the last
    sum_p[b] += p[i];
    sum_y[b] += y[i];
    ++n[b];
  }
  c.brier = brier / double(p.size());
  c.ece = 0;
  for (int b = 0; b < bins; ++b) {
    Calibration::Bin bin;
    bin.lo = double(b) / bins;
    bin.hi = double(b + 1) / bins;
    bin.n = n[size_t(b)];
    if (bin.n > 0) {
      bin.mean_p = sum_p[size_t(b)] / double(bin.n);
      bin.positive_fraction = sum_y[size_t(b)] / double(bin.n);
      c.ece += double(bin.n) / double(p.size()) * std::fabs(bin.mean_p - bin.positive_fraction);
    }
    c.bins.push_back(bin);
  }
  return c;
}

std::vector<Interval> bootstrap_intervals(const std::vector<int64_t>& patient_of,
                                          const std::function<std::vector<double>(const std::vector<size_t>&)>& fn,
                                          const BootstrapOptions& o) {
  ICH_CHECK(o.replicates >= 10, "bootstrap: ", o.replicates, " replicates (at least 10)");
  int64_t patients = 0;
  for (int64_t q : patient_of) patients = std::max(patients, q + 1);
  std::vector<std::vector<size_t>> studies_of(static_cast<size_t>(patients));
  for (size_t i = 0; i < patient_of.size(); ++i) studies_of[size_t(patient_of[i])].push_back(i);
  Generator g(o.seed);
  std::vector<std::vector<double>> stats;  // per statistic, its defined replicates
  std::vector<size_t> draw;
  for (int r = 0; r < o.replicates; ++r) {
    draw.clear();
    for (int64_t j = 0; j < patients; ++j) {
      const auto& s = studies_of[size_t(g.below(uint64_t(patients)))];
      draw.insert(draw.end(), s.begin(), s.end());
    }
    const std::vector<double> v = fn(draw);
    if (stats.empty()) stats.resize(v.size());
    for (size_t k = 0; k < v.size(); ++k)
      if (!std::isnan(v[k])) stats[k].push_back(v[k]);
  }
  std::vector<Interval> out;
  for (std::vector<double>& st : stats) {
    Interval ci;
    if (st.size() >= size_t(o.replicates) / 2) {  // undefined on most draws: no interval
      std::sort(st.begin(), st.end());
      // the percentiles by linear interpolation between order statistics (numpy's default)
      auto pct = [&](double q) {
        const double pos = q * double(st.size() - 1);
        const size_t lo = size_t(pos);
        const double f = pos - double(lo);
        return lo + 1 < st.size() ? st[lo] * (1 - f) + st[lo + 1] * f : st[lo];
      };
      ci.lo = pct(0.025);
      ci.hi = pct(0.975);
    }
    out.push_back(ci);
  }
  return out;
}

Interval bootstrap_interval(const std::vector<int64_t>& patient_of,
                            const std::function<double(const std::vector<size_t>&)>& statistic,
                            const BootstrapOptions& o) {
  return bootstrap_intervals(
             patient_of, [&](const std::vector<size_t>& idx) { return std::vector<double>{statistic(idx)}; }, o)
      .front();
}

namespace {

// The true positive rate at each grid false positive rate: the highest the
// curve reaches at or below it. NaN without positives or negatives.
std::vector<double> tpr_on_grid(const std::vector<double>& s, const std::vector<int>& y, const std::vector<double>& grid) {
  const auto pos = std::count(y.begin(), y.end(), 1);
  if (pos == 0 || pos == int64_t(y.size())) return std::vector<double>(grid.size(), NAN);
  const std::vector<std::pair<double, double>> c = roc_curve(s, y);
  std::vector<double> out(grid.size(), 0.0);
  for (size_t g = 0; g < grid.size(); ++g)
    for (const auto& [f, t] : c)
      if (f <= grid[g] + 1e-12) out[g] = std::max(out[g], t);
  return out;
}

// The interpolated precision at each grid recall: the highest precision of
// any threshold whose recall is at least it. NaN without positives.
std::vector<double> precision_on_grid(const std::vector<double>& s, const std::vector<int>& y,
                                      const std::vector<double>& grid) {
  const auto pos = std::count(y.begin(), y.end(), 1);
  if (pos == 0) return std::vector<double>(grid.size(), NAN);
  std::vector<size_t> idx(s.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return s[a] > s[b]; });
  std::vector<std::pair<double, double>> pts;  // (recall, precision) at each distinct threshold
  double tp = 0, fp = 0;
  for (size_t i = 0; i < idx.size();) {
    size_t j = i;
    for (; j < idx.size() && s[idx[j]] == s[idx[i]]; ++j) (y[idx[j]] ? tp : fp) += 1;
    pts.emplace_back(tp / double(pos), tp / (tp + fp));
    i = j;
  }
  std::vector<double> out(grid.size(), 0.0);
  for (size_t g = 0; g < grid.size(); ++g)
    for (const auto& [r, p] : pts)
      if (r >= grid[g] - 1e-12) out[g] = std::max(out[g], p);
  return out;
}

// A curve on a grid and its 95% band over the patients' bootstrap.
RocBand band(const std::vector<double>& s, const std::vector<int>& y, const std::vector<int64_t>& patient_of,
             const BootstrapOptions& o, int points,
             const std::function<std::vector<double>(const std::vector<double>&, const std::vector<int>&,
                                                     const std::vector<double>&)>& on_grid) {
  RocBand b;
  for (int j = 0; j < points; ++j) b.fpr.push_back(double(j) / (points - 1));
  b.tpr = on_grid(s, y, b.fpr);
  const std::vector<Interval> ci = bootstrap_intervals(
      patient_of,
      [&](const std::vector<size_t>& idx) {
        std::vector<double> ss(idx.size());
        std::vector<int> yy(idx.size());
        for (size_t j = 0; j < idx.size(); ++j) ss[j] = s[idx[j]], yy[j] = y[idx[j]];
        return on_grid(ss, yy, b.fpr);
      },
      o);
  for (const Interval& i : ci) b.lo.push_back(i.lo), b.hi.push_back(i.hi);
  return b;
}

}  // namespace

RocBand roc_band(const std::vector<double>& s, const std::vector<int>& y, const std::vector<int64_t>& patient_of,
                 const BootstrapOptions& o, int points) {
  return band(s, y, patient_of, o, points, tpr_on_grid);
}

RocBand pr_band(const std::vector<double>& s, const std::vector<int>& y, const std::vector<int64_t>& patient_of,
                const BootstrapOptions& o, int points) {
  return band(s, y, patient_of, o, points, precision_on_grid);
}

StudyLabelReport study_label_report(const std::vector<StudyScore>& studies, size_t label, const StudyReportOptions& o) {
  ICH_CHECK(label < 6, "study report: label ", label);
  ICH_CHECK(o.thresholds.empty() || o.thresholds.size() == o.targets.size(), "study report: ", o.thresholds.size(),
            " thresholds for ", o.targets.size(), " operating points");
  ICH_CHECK(std::isnan(o.prevalence) || (o.prevalence > 0 && o.prevalence < 1), "--prevalence ", o.prevalence,
            ": expected a fraction in (0, 1)");
  StudyLabelReport r;
  r.label = kSubtypes[label];
  r.studies = int64_t(studies.size());
  std::vector<double> s(studies.size());
  std::vector<int> y(studies.size());
  std::map<std::string, int64_t> patient_index;
  std::vector<int64_t> patient_of(studies.size());
  for (size_t i = 0; i < studies.size(); ++i) {
    s[i] = studies[i].p[label];
    y[i] = studies[i].y[label];
    r.positives += y[i];
    patient_of[i] = patient_index.emplace(studies[i].patient_id, int64_t(patient_index.size())).first->second;
  }
  auto subset = [&](const std::vector<size_t>& idx, std::vector<double>& ss, std::vector<int>& yy) {
    ss.resize(idx.size());
    yy.resize(idx.size());
    for (size_t j = 0; j < idx.size(); ++j) ss[j] = s[idx[j]], yy[j] = y[idx[j]];
  };
  r.auc = roc_auc(s, y);
  r.auc_ci = bootstrap_interval(
      patient_of,
      [&](const std::vector<size_t>& idx) {
        std::vector<double> ss;
        std::vector<int> yy;
        subset(idx, ss, yy);
        return roc_auc(ss, yy);
      },
      o.bootstrap);
  r.thresholds_from_here = o.thresholds.empty();
  for (size_t t = 0; t < o.targets.size(); ++t) {
    StudyOperatingPoint op;
    op.target = o.targets[t];
    op.threshold = r.thresholds_from_here ? operating_point(s, y, op.target).threshold : o.thresholds[t];
    op.prevalence = o.prevalence;
    if (!std::isnan(op.threshold)) {
      op.c = confusion_at(s, y, op.threshold);
      op.sensitivity = op.c.sensitivity();
      op.specificity = op.c.specificity();
      op.ppv = op.c.ppv();
      op.npv = op.c.npv();
      op.ppv_prev = ppv_at_prevalence(op.sensitivity, op.specificity, op.prevalence);
      op.npv_prev = npv_at_prevalence(op.sensitivity, op.specificity, op.prevalence);
      // one bootstrap per statistic, each from the same seed: the same draws
      auto ci = [&](const std::function<double(const Confusion&)>& f) {
        return bootstrap_interval(
            patient_of,
            [&](const std::vector<size_t>& idx) {
              Confusion c;
              for (size_t i : idx)
                if (y[i])
                  (s[i] >= op.threshold ? c.tp : c.fn) += 1;
                else
                  (s[i] >= op.threshold ? c.fp : c.tn) += 1;
              return f(c);
            },
            o.bootstrap);
      };
      op.sensitivity_ci = ci([](const Confusion& c) { return c.sensitivity(); });
      op.specificity_ci = ci([](const Confusion& c) { return c.specificity(); });
      op.ppv_ci = ci([](const Confusion& c) { return c.ppv(); });
      op.npv_ci = ci([](const Confusion& c) { return c.npv(); });
      if (!std::isnan(op.prevalence)) {
        const double pr = op.prevalence;
        op.ppv_prev_ci = ci([pr](const Confusion& c) { return ppv_at_prevalence(c.sensitivity(), c.specificity(), pr); });
        op.npv_prev_ci = ci([pr](const Confusion& c) { return npv_at_prevalence(c.sensitivity(), c.specificity(), pr); });
      }
    }
    r.points.push_back(op);
  }
  r.cal = calibration(s, y);
  r.roc = roc_band(s, y, patient_of, o.bootstrap);
  r.pr = pr_band(s, y, patient_of, o.bootstrap);
  return r;
}

namespace {

// A number of study_thresholds.csv; errors name the file and line.
double parse_number(const std::string& v, const std::string& path, int64_t line) {
  char* end = nullptr;
  const double d = std::strtod(v.c_str(), &end);
  ICH_CHECK(!v.empty() && end && *end == 0 && std::isfinite(d), path, " line ", line, ": '", v, "' is not a number");
  return d;
}

std::string num(double v) {
  if (std::isnan(v)) return "null";
  char b[32];
  std::snprintf(b, sizeof b, "%.6f", v);
  return b;
}
std::string interval(const Interval& i) { return "[" + num(i.lo) + ", " + num(i.hi) + "]"; }

}  // namespace

std::string study_report_json(const std::vector<StudyLabelReport>& rs, const StudyReportOptions& o,
                              const std::string& extra) {
  std::string j = "{\n  \"level\": \"study\",\n  \"score\": \"the highest slice probability in the study\",\n";
  j += "  \"bootstrap\": {\"replicates\": " + std::to_string(o.bootstrap.replicates) +
       ", \"seed\": " + std::to_string(o.bootstrap.seed) + ", \"resampled\": \"patients\", \"interval\": \"95% percentile\"},\n";
  j += "  \"prevalence\": " + num(o.prevalence) + ",\n";
  if (!extra.empty()) j += extra + ",\n";
  j += "  \"labels\": {\n";
  for (size_t l = 0; l < rs.size(); ++l) {
    const StudyLabelReport& r = rs[l];
    j += "    \"" + r.label + "\": {\n      \"studies\": " + std::to_string(r.studies) +
         ", \"positives\": " + std::to_string(r.positives) + ", \"auc\": " + num(r.auc) +
         ", \"auc_ci\": " + interval(r.auc_ci) + ",\n      \"thresholds_chosen_on\": \"" +
         (r.thresholds_from_here ? "this data" : "validation data (--thresholds)") + "\",\n      \"operating_points\": [\n";
    for (size_t i = 0; i < r.points.size(); ++i) {
      const StudyOperatingPoint& p = r.points[i];
      j += "        {\"target_sensitivity\": " + num(p.target) + ", \"threshold\": " + num(p.threshold) +
           ", \"tp\": " + std::to_string(p.c.tp) + ", \"fp\": " + std::to_string(p.c.fp) +
           ", \"tn\": " + std::to_string(p.c.tn) + ", \"fn\": " + std::to_string(p.c.fn) +
           ", \"sensitivity\": " + num(p.sensitivity) + ", \"sensitivity_ci\": " + interval(p.sensitivity_ci) +
           ", \"specificity\": " + num(p.specificity) + ", \"specificity_ci\": " + interval(p.specificity_ci) +
           ", \"ppv\": " + num(p.ppv) + ", \"ppv_ci\": " + interval(p.ppv_ci) + ", \"npv\": " + num(p.npv) +
           ", \"npv_ci\": " + interval(p.npv_ci) + ", \"ppv_at_prevalence\": " + num(p.ppv_prev) +
           ", \"ppv_at_prevalence_ci\": " + interval(p.ppv_prev_ci) + ", \"npv_at_prevalence\": " + num(p.npv_prev) +
           ", \"npv_at_prevalence_ci\": " + interval(p.npv_prev_ci) + "}" + (i + 1 < r.points.size() ? "," : "") + "\n";
    }
    j += "      ],\n      \"calibration\": {\"brier\": " + num(r.cal.brier) + ", \"ece\": " + num(r.cal.ece) +
         ", \"bins\": [";
    for (size_t b = 0; b < r.cal.bins.size(); ++b) {
      const auto& bin = r.cal.bins[b];
      j += std::string(b ? ", " : "") + "{\"lo\": " + num(bin.lo) + ", \"hi\": " + num(bin.hi) +
           ", \"n\": " + std::to_string(bin.n) + ", \"mean_p\": " + num(bin.mean_p) +
           ", \"positive_fraction\": " + num(bin.positive_fraction) + "}";
    }
    auto arr = [](const std::vector<double>& v) {
      std::string a = "[";
      for (size_t i = 0; i < v.size(); ++i) a += (i ? ", " : "") + num(v[i]);
      return a + "]";
    };
    j += "]},\n      \"roc_band\": {\"fpr\": " + arr(r.roc.fpr) + ",\n        \"tpr\": " + arr(r.roc.tpr) +
         ",\n        \"lo\": " + arr(r.roc.lo) + ",\n        \"hi\": " + arr(r.roc.hi) + "}";
    j += ",\n      \"pr_band\": {\"recall\": " + arr(r.pr.fpr) + ",\n        \"precision\": " + arr(r.pr.tpr) +
         ",\n        \"lo\": " + arr(r.pr.lo) + ",\n        \"hi\": " + arr(r.pr.hi) + "}";
    j += "\n    }" + std::string(l + 1 < rs.size() ? "," : "") + "\n";
  }
  return j + "  }\n}\n";
}

std::vector<std::vector<std::string>> study_threshold_rows(const std::vector<StudyLabelReport>& rs) {
  std::vector<std::vector<std::string>> rows;
  for (const StudyLabelReport& r : rs)
    for (const StudyOperatingPoint& p : r.points)
      rows.push_back({r.label, fmt_double(p.target, 17), fmt_double(p.threshold, 17)});
  return rows;
}

std::vector<double> read_study_thresholds(const std::string& csv_path, const std::string& label,
                                          const std::vector<double>& targets) {
  const CsvTable t = read_csv(csv_path);
  const size_t c_label = t.column("label"), c_target = t.column("target_sensitivity"), c_t = t.column("threshold");
  std::vector<double> out;
  for (double target : targets) {
    double found = NAN;
    bool have = false;
    for (size_t r = 0; r < t.rows.size(); ++r) {
      if (t.rows[r][c_label] != label) continue;
      const double tv = parse_number(t.rows[r][c_target], csv_path, t.line_of[r]);
      if (std::fabs(tv - target) > 1e-9) continue;
      const std::string& v = t.rows[r][c_t];
      found = v.empty() ? NAN : parse_number(v, csv_path, t.line_of[r]);
      have = true;
    }
    ICH_CHECK(have, csv_path, ": no threshold for ", label, " at sensitivity ", target,
              " (it holds the operating points of the run that wrote it; ask for the same --sensitivities)");
    out.push_back(found);
  }
  return out;
}

std::string format_study_table(const std::vector<StudyLabelReport>& rs) {
  std::string s =
      "| study level | target sens. | threshold | sensitivity (95% CI) | specificity (95% CI) | PPV (95% CI) | NPV (95% CI) |\n"
      "|---|---:|---:|---|---|---|---|\n";
  auto cell = [](double v, const Interval& i) {
    char b[80];
    if (std::isnan(v)) return std::string("n/a");
    std::snprintf(b, sizeof b, "%.3f (%.3f-%.3f)", v, i.lo, i.hi);
    return std::string(b);
  };
  for (const StudyLabelReport& r : rs)
    for (const StudyOperatingPoint& p : r.points) {
      char head[160];
      std::snprintf(head, sizeof head, "| %s (%lld/%lld) | %.2f | ", r.label.c_str(), (long long)r.positives,
                    (long long)r.studies, p.target);
      char thr[32] = "n/a";
      if (!std::isnan(p.threshold)) std::snprintf(thr, sizeof thr, "%.4g", p.threshold);
      s += head + std::string(thr) + " | " + cell(p.sensitivity, p.sensitivity_ci) + " | " + cell(p.specificity, p.specificity_ci) + " | " +
           cell(p.ppv, p.ppv_ci) + " | " + cell(p.npv, p.npv_ci) + " |\n";
    }
  return s;
}

std::string normalised_study_key(const std::string& s) {
  std::string k;
  for (char c : s)
    if (c != ' ' && c != '-' && c != '_') k += char(std::tolower(static_cast<unsigned char>(c)));
  return k;
}

StudyLabels read_study_labels(const std::string& path) {
  const CsvTable t = read_csv(path);
  StudyLabels out;
  auto value = [&](size_t r, size_t c) {
    const std::string& v = t.rows[r][c];
    ICH_CHECK(v == "0" || v == "1", path, " line ", t.line_of[r], ": column '", t.header[c], "' is '", v,
              "', not 0 or 1");
    return v == "1";
  };
  auto add = [&](size_t r, const std::string& name, const std::array<int, 6>& y) {
    ICH_CHECK(!name.empty(), path, " line ", t.line_of[r], ": empty study name");
    const std::string k = normalised_study_key(name);
    ICH_CHECK(out.labels.emplace(k, y).second, path, " line ", t.line_of[r], ": '", name, "' is listed twice");
    out.names[k] = name;
  };
  if (t.has_column("name") && t.has_column("R1:ICH")) {
    // CQ500: RSNA's label order -> CQ500's finding names
    const char* finding[6] = {"EDH", "IPH", "IVH", "SAH", "SDH", "ICH"};
    std::array<std::array<size_t, 3>, 6> col{};
    for (size_t k = 0; k < 6; ++k)
      for (int reader = 0; reader < 3; ++reader)
        col[k][size_t(reader)] = t.column("R" + std::to_string(reader + 1) + ":" + finding[k]);
    const size_t c_name = t.column("name");
    for (size_t r = 0; r < t.rows.size(); ++r) {
      std::array<int, 6> y{};
      for (size_t k = 0; k < 6; ++k) y[k] = int(value(r, col[k][0])) + value(r, col[k][1]) + value(r, col[k][2]) >= 2;
      add(r, t.rows[r][c_name], y);
    }
    out.format = "CQ500 reads.csv: a finding present when 2 of the 3 readers marked it; matched by PatientID";
    out.by_patient = true;
    out.known.fill(true);
    return out;
  }
  ICH_CHECK(t.has_column("study_uid") || t.has_column("patient_id"), path,
            ": neither CQ500's reads.csv (name, R1:ICH, ...) nor a CSV with a study_uid or patient_id column");
  out.by_patient = !t.has_column("study_uid");
  const size_t c_key = t.column(out.by_patient ? "patient_id" : "study_uid");
  std::array<int64_t, 6> col{-1, -1, -1, -1, -1, -1};
  for (size_t k = 0; k < 6; ++k)
    if (t.has_column(kSubtypes[k])) col[k] = int64_t(t.column(kSubtypes[k]));
  if (col[5] < 0 && t.has_column("label")) col[5] = int64_t(t.column("label"));
  for (size_t k = 0; k < 6; ++k) out.known[k] = col[k] >= 0;
  ICH_CHECK(std::find(out.known.begin(), out.known.end(), true) != out.known.end(), path,
            ": no label column (any, epidural, intraparenchymal, intraventricular, subarachnoid, subdural or label)");
  for (size_t r = 0; r < t.rows.size(); ++r) {
    std::array<int, 6> y{};
    for (size_t k = 0; k < 6; ++k)
      if (col[k] >= 0) y[k] = value(r, size_t(col[k]));
    add(r, t.rows[r][c_key], y);
  }
  out.format = std::string("study labels by ") + (out.by_patient ? "PatientID" : "StudyInstanceUID");
  return out;
}

}  // namespace ich
