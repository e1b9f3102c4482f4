// Study-level metrics (data/study_metrics.h): a hand-computed example; the
// bootstrap's 95% interval holding a known sensitivity in 93-97% of 1,000
// draws; resampling by patient, not by study; the thresholds carried from
// validation to other data. Temperature scaling (data/calibrate.h).
#include <unistd.h>

#include <cmath>
#include <cstdio>

#include "data/calibrate.h"
#include "data/study_metrics.h"
#include "engine/random.h"
#include "io/csv.h"
#include "tests/test_util.h"

namespace ich {
namespace {

SliceScore slice(const std::string& patient, const std::string& study, double p_any, int y_any) {
  SliceScore s;
  s.patient_id = patient;
  s.study_uid = study;
  s.p[5] = p_any;
  s.y[5] = y_any;
  return s;
}

// Five studies of four patients, by hand:
//   A (P1) slices 0.2/0, 0.9/1 -> 0.9, positive    B (P1) 0.1/0, 0.3/0 -> 0.3
//   C (P2) 0.6/0 -> 0.6                              D (P3) 0.4/1, 0.7/0 -> 0.7, positive
//   E (P4) 0.05/0 -> 0.05
std::vector<StudyScore> example() {
  return studies_from_slices({slice("P1", "A", 0.2, 0), slice("P1", "A", 0.9, 1), slice("P1", "B", 0.1, 0),
                              slice("P1", "B", 0.3, 0), slice("P2", "C", 0.6, 0), slice("P3", "D", 0.4, 1),
                              slice("P3", "D", 0.7, 0), slice("P4", "E", 0.05, 0)});
}

TEST(StudyMetrics, HandComputedExample) {
  const std::vector<StudyScore> st = example();
  ASSERT_EQ(st.size(), 5u);
  EXPECT_EQ(st[0].study_uid, "A");
  EXPECT_EQ(st[0].slices, 2);
  EXPECT_EQ(st[0].p[5], 0.9);
  EXPECT_EQ(st[0].y[5], 1);
  EXPECT_EQ(st[3].p[5], 0.7);  // D: the highest slice, though the positive slice scored 0.4
  EXPECT_EQ(st[3].y[5], 1);
  std::vector<double> s;
  std::vector<int> y;
  for (const StudyScore& x : st) s.push_back(x.p[5]), y.push_back(x.y[5]);
  const Confusion c = confusion_at(s, y, 0.5);  // A, C, D called positive
  EXPECT_EQ(c.tp, 2);
  EXPECT_EQ(c.fp, 1);
  EXPECT_EQ(c.tn, 2);
  EXPECT_EQ(c.fn, 0);
  EXPECT_DOUBLE_EQ(c.sensitivity(), 1.0);
  EXPECT_DOUBLE_EQ(c.specificity(), 2.0 / 3);
  EXPECT_DOUBLE_EQ(c.ppv(), 2.0 / 3);
  EXPECT_DOUBLE_EQ(c.npv(), 1.0);
  // PPV and NPV at 6% prevalence for sensitivity 0.9, specificity 0.8
  EXPECT_NEAR(ppv_at_prevalence(0.9, 0.8, 0.06), 0.054 / (0.054 + 0.188), 1e-15);
  EXPECT_NEAR(npv_at_prevalence(0.9, 0.8, 0.06), 0.752 / 0.758, 1e-15);
  // calibration: one study per bin, |p - y| = 0.1, 0.3, 0.6, 0.3, 0.05
  const Calibration cal = calibration(s, y);
  EXPECT_NEAR(cal.ece, 1.35 / 5, 1e-12);
  EXPECT_NEAR(cal.brier, (0.01 + 0.09 + 0.36 + 0.09 + 0.0025) / 5, 1e-12);
  ASSERT_EQ(cal.bins.size(), 10u);
  EXPECT_EQ(cal.bins[9].n, 1);
  EXPECT_EQ(cal.bins[1].n, 0);
  // the operating point for 90% sensitivity: the highest threshold reaching it is D's 0.7
  StudyReportOptions o;
  o.targets = {0.9};
  o.prevalence = 0.06;
  o.bootstrap.replicates = 200;
  const StudyLabelReport r = study_label_report(st, 5, o);
  EXPECT_EQ(r.studies, 5);
  EXPECT_EQ(r.positives, 2);
  EXPECT_TRUE(r.thresholds_from_here);
  ASSERT_EQ(r.points.size(), 1u);
  EXPECT_EQ(r.points[0].threshold, 0.7);
  EXPECT_EQ(r.points[0].c.tp, 2);
  EXPECT_EQ(r.points[0].c.fp, 0);
  EXPECT_DOUBLE_EQ(r.points[0].specificity, 1.0);
  EXPECT_DOUBLE_EQ(r.points[0].ppv_prev, 1.0);  // no false positive: PPV 1 at any prevalence
  EXPECT_DOUBLE_EQ(r.auc, 1.0);
}

// 400 positive and 400 negative patients, one study each; a positive study
// is found with probability 0.9 (score 1, else 0). Over 1,000 such data
// sets the 95% bootstrap interval of the sensitivity at threshold 0.5 holds
// 0.9 in 93-97% of them (the standard error of a coverage over 1,000 draws
// is 0.7%: the band is 3 of them either side of 95%). The percentile
// bootstrap of a proportion near 1 covers a little under 95%: over five
// generator seeds here 0.938, 0.943, 0.944, 0.947, 0.952.
TEST(StudyMetrics, BootstrapIntervalCoversAKnownSensitivity) {
  Generator gen(2026);
  const int n = 800, draws = 1000;
  std::vector<int64_t> patient_of(n);
  for (int i = 0; i < n; ++i) patient_of[size_t(i)] = i;
  std::vector<int> y(n), found(n);
  int covered = 0;
  double width = 0;
  for (int d = 0; d < draws; ++d) {
    for (int i = 0; i < n; ++i) {
      y[size_t(i)] = i < n / 2;
      found[size_t(i)] = y[size_t(i)] ? gen.uniform() < 0.9 : gen.uniform() < 0.2;
    }
    const Interval ci = bootstrap_interval(
        patient_of,
        [&](const std::vector<size_t>& idx) {
          int64_t tp = 0, pos = 0;
          for (size_t i : idx) pos += y[i], tp += y[i] && found[i];
          return pos ? double(tp) / double(pos) : NAN;
        },
        {500, uint64_t(d)});
    covered += ci.lo <= 0.9 && 0.9 <= ci.hi;
    width += ci.hi - ci.lo;
  }
  const double coverage = double(covered) / draws;
  std::printf("coverage of the 95%% interval: %.3f over %d draws, mean width %.4f (binomial: %.4f)\n", coverage, draws,
              width / draws, 2 * 1.96 * std::sqrt(0.9 * 0.1 / 400));
  EXPECT_GE(coverage, 0.93);
  EXPECT_LE(coverage, 0.97);
}

// Studies of one patient move together: 50 patients with 4 identical
// studies each carry the information of 50 studies, not 200, so their
// interval is about sqrt(4) = 2 times as wide as 200 patients' with one.
TEST(StudyMetrics, BootstrapResamplesPatientsNotStudies) {
  Generator gen(7);
  std::vector<int> v(200);
  for (int& x : v) x = gen.uniform() < 0.5;
  auto width = [&](int per_patient) {
    std::vector<int64_t> patient_of;
    std::vector<int> values;
    for (int p = 0; p < 200 / per_patient; ++p)
      for (int k = 0; k < per_patient; ++k) patient_of.push_back(p), values.push_back(v[size_t(p)]);
    const Interval ci = bootstrap_interval(
        patient_of,
        [&](const std::vector<size_t>& idx) {
          double s = 0;
          for (size_t i : idx) s += values[i];
          return s / double(idx.size());
        },
        {2000, 1});
    return ci.hi - ci.lo;
  };
  const double ratio = width(4) / width(1);
  EXPECT_GT(ratio, 1.6) << "studies of one patient resampled as if independent";
  EXPECT_LT(ratio, 2.5);
}

// Thresholds chosen on validation are written with 17 digits and read back
// exactly; applied to other data they are not re-chosen there.
TEST(StudyMetrics, ThresholdsCarryFromValidationExactly) {
  StudyReportOptions o;
  o.targets = {0.5, 0.9};
  o.bootstrap.replicates = 50;
  const std::vector<StudyScore> st = example();
  const StudyLabelReport r = study_label_report(st, 5, o);
  const std::string path = ::testing::TempDir() + "/thresholds_" + std::to_string(::getpid()) + ".csv";
  CsvWriter w(path, {"label", "target_sensitivity", "threshold"});
  for (const auto& row : study_threshold_rows({r})) w.row(row);
  w.commit();
  const std::vector<double> back = read_study_thresholds(path, "any", o.targets);
  ASSERT_EQ(back.size(), 2u);
  EXPECT_EQ(back[0], r.points[0].threshold);
  EXPECT_EQ(back[1], r.points[1].threshold);
  o.thresholds = {0.95, 0.95};  // as if chosen elsewhere: nothing here reaches it
  const StudyLabelReport applied = study_label_report(st, 5, o);
  EXPECT_FALSE(applied.thresholds_from_here);
  EXPECT_EQ(applied.points[1].threshold, 0.95);
  EXPECT_EQ(applied.points[1].c.tp, 0);
  EXPECT_DOUBLE_EQ(applied.points[1].sensitivity, 0.0);
  try {
    read_study_thresholds(path, "any", {0.99});
    ADD_FAILURE() << "a target the file lacks was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no threshold for any at sensitivity 0.99"), std::string::npos) << e.what();
  }
  const std::string json = study_report_json({applied}, o);
  EXPECT_NE(json.find("\"thresholds_chosen_on\": \"validation data (--thresholds)\""), std::string::npos);
}

// A model whose logits are k times the truth's (k = 4: over-confident, k =
// 0.5: under-confident), labels drawn from the true probabilities: the
// fitted temperature is k (within 10% on 4,000 slices), the log loss falls,
// and the ranking, hence the AUC, is the same. Three seeds each.
TEST(Temperature, FitsTheOverconfidenceAndKeepsTheRanking) {
  for (double k : {4.0, 0.5})
    for (uint64_t seed : {1, 2, 3}) {
      SCOPED_TRACE("k " + std::to_string(k) + ", seed " + std::to_string(seed));
      Generator gen(seed);
      std::vector<double> z(4000);
      std::vector<int> y(z.size());
      for (size_t i = 0; i < z.size(); ++i) {
        const double t = 2 * gen.normal();
        y[i] = gen.uniform() < 1 / (1 + std::exp(-t));
        z[i] = k * t;
      }
      const TemperatureFit f = fit_temperature(z, y);
      EXPECT_TRUE(f.fitted);
      EXPECT_NEAR(f.temperature / k, 1.0, 0.1);
      EXPECT_LT(f.loss_after, f.loss_before);
      std::vector<double> p(z.size());
      for (size_t i = 0; i < z.size(); ++i) p[i] = calibrated_probability(z[i], f.temperature);
      EXPECT_EQ(roc_auc(p, y), roc_auc(z, y));
      EXPECT_LT(calibration(p, y).ece, calibration(std::vector<double>(p.size(), 0.0), y).ece);
    }
  // a label without positives: nothing to fit, T = 1
  const TemperatureFit none = fit_temperature({1.0, -2.0, 0.5}, {0, 0, 0});
  EXPECT_FALSE(none.fitted);
  EXPECT_EQ(none.temperature, 1.0);
  // stable at the far tails
  EXPECT_EQ(calibrated_probability(-800, 1), 0.0);
  EXPECT_EQ(calibrated_probability(800, 1), 1.0);
  EXPECT_DOUBLE_EQ(calibrated_probability(2.0, 2.0), 1 / (1 + std::exp(-1.0)));
}

std::string write_text(const std::string& name, const std::string& text) {
  const std::string p = ::testing::TempDir() + "/" + name + "_" + std::to_string(::getpid()) + ".csv";
  FILE* f = std::fopen(p.c_str(), "w");
  std::fputs(text.c_str(), f);
  std::fclose(f);
  return p;
}

// CQ500's reads.csv: a finding is present when two of three readers marked
// it; RSNA's names for CQ500's findings; keys compared without case, '-',
// '_' and spaces. A plain study CSV with some label columns; bad values and
// repeated studies named.
TEST(StudyLabels, Cq500MajorityAndPlainCsv) {
  std::string reads = "name,Category,R1:ICH,R1:IPH,R1:IVH,R1:SDH,R1:EDH,R1:SAH,R1:Fracture,"
                      "R2:ICH,R2:IPH,R2:IVH,R2:SDH,R2:EDH,R2:SAH,R2:Fracture,R3:ICH,R3:IPH,R3:IVH,R3:SDH,R3:EDH,R3:SAH,R3:Fracture\n";
  reads += "CQ500-CT-0,B1,1,1,0,0,0,0,1,1,0,0,0,0,1,0,0,0,0,0,0,1,0\n";  // ICH 2/3, IPH 1/3, SAH 2/3
  reads += "CQ500-CT-1,B1,0,0,0,0,0,0,0,1,0,0,1,0,0,0,0,0,0,1,1,0,0\n";  // ICH 1/3, SDH 2/3, EDH 1/3
  const StudyLabels l = read_study_labels(write_text("reads", reads));
  EXPECT_TRUE(l.by_patient);
  ASSERT_EQ(l.labels.size(), 2u);
  const std::array<int, 6> a = l.labels.at(normalised_study_key("cq500 ct 0"));
  EXPECT_EQ(a, (std::array<int, 6>{0, 0, 0, 1, 0, 1}));  // epidural, IPH, IVH, SAH, SDH, any
  const std::array<int, 6> b = l.labels.at("cq500ct1");
  EXPECT_EQ(b, (std::array<int, 6>{0, 0, 0, 0, 1, 0}));  // SDH by majority, "any" not: the readers' ICH column rules
  EXPECT_EQ(l.names.at("cq500ct1"), "CQ500-CT-1");

  const StudyLabels p = read_study_labels(write_text("plain", "study_uid,label,subdural\n1.2.3,1,1\n1.2.4,0,0\n"));
  EXPECT_FALSE(p.by_patient);
  EXPECT_EQ(p.known, (std::array<bool, 6>{false, false, false, false, true, true}));
  EXPECT_EQ(p.labels.at("1.2.3")[5], 1);
  auto error_of = [](const std::string& text) {
    try {
      read_study_labels(write_text("bad", text));
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(error_of("study_uid,any\n1.2,yes\n").find("line 2: column 'any' is 'yes'"), std::string::npos);
  EXPECT_NE(error_of("study_uid,any\n1.2,1\n1.2,0\n").find("listed twice"), std::string::npos);
  EXPECT_NE(error_of("uid,any\n1.2,1\n").find("neither CQ500's reads.csv"), std::string::npos);
  EXPECT_NE(error_of("study_uid,notes\n1.2,x\n").find("no label column"), std::string::npos);
}

// The ROC band: the curve itself on the grid lies inside its band; a
// perfectly separating score has TPR 1 from FPR 0 with a band of width 0;
// a score unrelated to the truth has a band that holds the diagonal.
TEST(StudyMetrics, RocBandHoldsTheCurve) {
  Generator gen(5);
  std::vector<double> s(300);
  std::vector<int> y(300);
  std::vector<int64_t> patient_of(300);
  for (size_t i = 0; i < s.size(); ++i) {
    y[i] = i % 3 == 0;
    s[i] = y[i] ? 0.6 + 0.4 * gen.uniform() : 0.5 * gen.uniform();
    patient_of[i] = int64_t(i);
  }
  RocBand b = roc_band(s, y, patient_of, {300, 1}, 11);
  ASSERT_EQ(b.fpr.size(), 11u);
  for (size_t j = 0; j < b.fpr.size(); ++j) {
    EXPECT_EQ(b.tpr[j], 1.0);
    EXPECT_EQ(b.lo[j], 1.0);
    EXPECT_EQ(b.hi[j], 1.0);
  }
  const RocBand pr = pr_band(s, y, patient_of, {300, 1}, 11);  // separable: precision 1 at every recall
  for (size_t j = 0; j < pr.fpr.size(); ++j) EXPECT_EQ(pr.lo[j], 1.0);
  for (double& v : s) v = gen.uniform();  // no signal
  b = roc_band(s, y, patient_of, {300, 1}, 11);
  const RocBand pr0 = pr_band(s, y, patient_of, {300, 1}, 11);  // precision near the prevalence (1/3) at recall 1
  EXPECT_LE(pr0.lo.back(), 1.0 / 3 + 0.01);
  EXPECT_GE(pr0.hi.back(), 1.0 / 3 - 0.01);
  for (size_t j = 1; j + 1 < b.fpr.size(); ++j) {
    EXPECT_LE(b.lo[j], b.tpr[j]);
    EXPECT_GE(b.hi[j], b.tpr[j]);
    EXPECT_LE(b.lo[j], b.fpr[j] + 0.02) << "the diagonal outside the band at FPR " << b.fpr[j];
    EXPECT_GE(b.hi[j], b.fpr[j] - 0.02) << "the diagonal outside the band at FPR " << b.fpr[j];
  }
}

}  // namespace
}  // namespace ich
