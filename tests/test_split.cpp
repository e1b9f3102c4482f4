// Labels parsing and the train/validation split: every labelled image on
// exactly one side, no patient on both, label frequencies alike, and the
// seed's image-level method shown to leak patients.
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>

#include "data/labels.h"
#include "data/split.h"
#include "io/csv.h"
#include "phantom/phantom.h"
#include "tests/test_util.h"

namespace ich {
namespace {

std::string labels_text(const std::vector<ImageLabels>& imgs) {
  std::string t = "ID,Label\n";
  for (const auto& im : imgs)
    for (size_t k = 0; k < 6; ++k) t += im.image_id + "_" + kSubtypes[k] + "," + std::to_string(im.y[k]) + "\n";
  return t;
}

LabelTable parse_labels(const std::string& text) {
  const std::string p = ::testing::TempDir() + "/labels_" + std::to_string(::getpid()) + ".csv";
  std::ofstream(p) << text;
  return read_rsna_labels(p);
}

std::string error_of(const std::string& text) {
  try {
    parse_labels(text);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Labels, ExactDuplicatesDroppedConflictsAndMalformedLinesNamed) {
  std::string t = labels_text({{"ID_a", {0, 1, 0, 0, 0, 1}}, {"ID_b", {0, 0, 0, 0, 0, 0}}});
  const LabelTable lt = parse_labels(t + "ID_a_intraparenchymal,1\n");  // stage 2 has exact duplicates
  EXPECT_EQ(lt.images.size(), 2u);
  EXPECT_EQ(lt.duplicate_rows, 1);
  EXPECT_EQ(lt.images[lt.index.at("ID_a")].y[1], 1);
  EXPECT_NE(error_of(t + "ID_a_intraparenchymal,0\n").find("line 14"), std::string::npos);
  EXPECT_NE(error_of(t + "ID_a_intraparenchymal,0\n").find("line 3"), std::string::npos);  // the first one
  EXPECT_NE(error_of(t + "ID_c_fracture,1\n").find("unknown subtype 'fracture'"), std::string::npos);
  EXPECT_NE(error_of(t + "ID_a_any,maybe\n").find("line 14"), std::string::npos);
  EXPECT_NE(error_of(t + "ID_a_any,1,extra\n").find("line 14"), std::string::npos);
  EXPECT_NE(error_of(t + "ID_c_any,1\n").find("no row for subtype epidural"), std::string::npos);
  EXPECT_NE(error_of("Image,Label\n").find("header"), std::string::npos);
}

// 300 patients x 20 slices; hemorrhage on runs of slices of some patients.
struct Synthetic {
  LabelTable labels;
  CsvTable meta;
};
Synthetic synthetic(uint64_t seed) {
  Generator g(seed);
  std::vector<ImageLabels> imgs;
  Synthetic s;
  s.meta.path = "meta.csv";
  s.meta.header = {"image_id", "patient_id", "study_uid", "series_uid", "z", "status"};
  for (int p = 0; p < 300; ++p) {
    std::array<int, 5> has{};
    for (size_t k = 0; k < 5; ++k) has[k] = g.uniform() < (k == 0 ? 0.03 : 0.12);
    const int lo = int(g.below(12)), hi = lo + 3 + int(g.below(6));
    for (int k = 0; k < 20; ++k) {
      ImageLabels im{"ID_p" + std::to_string(p) + "s" + std::to_string(k), {}};
      for (size_t t = 0; t < 5; ++t) im.y[t] = has[t] && k >= lo && k <= hi;
      for (size_t t = 0; t < 5; ++t) im.y[5] |= im.y[t];
      imgs.push_back(im);
      s.meta.rows.push_back({im.image_id, "P" + std::to_string(p), "S" + std::to_string(p), "R" + std::to_string(p),
                             std::to_string(5 * k), "ok"});
    }
  }
  s.labels = parse_labels(labels_text(imgs));
  return s;
}

std::array<double, 6> prevalence(const std::vector<SplitRow>& rows) {
  std::array<double, 6> p{};
  for (const auto& r : rows)
    for (size_t k = 0; k < 6; ++k) p[k] += r.y[k];
  for (double& v : p) v /= double(rows.size());
  return p;
}

TEST(Split, GroupedKeepsPatientsWholeAndStratifies) {
  const Synthetic s = synthetic(1);
  const SplitResult r = split_dataset(s.labels, s.meta, {0.16, "patient", "grouped", 7});
  std::set<std::string> ids, train_patients, valid_patients;
  for (const auto& x : r.train) ids.insert(x.image_id), train_patients.insert(x.patient_id);
  for (const auto& x : r.valid) ids.insert(x.image_id), valid_patients.insert(x.patient_id);
  EXPECT_EQ(ids.size(), 6000u);  // every labelled image, once
  EXPECT_EQ(r.train.size() + r.valid.size(), 6000u);
  for (const auto& p : valid_patients) EXPECT_EQ(train_patients.count(p), 0u) << p << " on both sides";
  EXPECT_NEAR(double(r.valid.size()) / 6000, 0.16, 0.01);
  // Each label's prevalence on the two sides within 15% of each other
  // (relative), for labels with at least 100 positives.
  const auto pt = prevalence(r.train), pv = prevalence(r.valid);
  for (size_t k = 0; k < 6; ++k) {
    const double overall = (pt[k] * double(r.train.size()) + pv[k] * double(r.valid.size())) / 6000;
    if (overall * 6000 < 100) continue;
    EXPECT_LE(std::fabs(pt[k] - pv[k]) / overall, 0.15) << kSubtypes[k] << ": train " << pt[k] << " valid " << pv[k];
  }
}

TEST(Split, SameSeedSameSplit) {
  const Synthetic s = synthetic(2);
  auto ids = [&](uint64_t seed) {
    std::vector<std::string> v;
    for (const auto& x : split_dataset(s.labels, s.meta, {0.16, "patient", "grouped", seed}).valid)
      v.push_back(x.image_id);
    return v;
  };
  EXPECT_EQ(ids(5), ids(5));
  EXPECT_NE(ids(5), ids(6));
}

TEST(Split, SeedMethodLeaksPatients) {
  const Synthetic s = synthetic(3);
  const SplitResult r = split_dataset(s.labels, s.meta, {0.16, "patient", "seed", 7});
  std::set<std::string> tp, vp;
  for (const auto& x : r.train) tp.insert(x.patient_id);
  for (const auto& x : r.valid) vp.insert(x.patient_id);
  int both = 0;
  for (const auto& p : vp) both += tp.count(p) > 0;
  EXPECT_GT(both, 200);  // nearly every patient on both sides: the seed's leakage
  EXPECT_NEAR(double(r.valid.size()) / 6000, 0.16, 0.01);
}

TEST(Split, JoinCountsImagesWithoutLabelsAndLabelsWithoutImages) {
  Synthetic s = synthetic(4);
  s.meta.rows.resize(5000);                                                    // 1000 labelled images not converted
  s.meta.rows.push_back({"ID_unlabelled", "P999", "S999", "R999", "0", "ok"});  // an image with no labels
  s.meta.rows.push_back({"ID_p0s0", "P0", "S0", "R0", "0", "error"});          // failed rows are ignored
  const SplitResult r = split_dataset(s.labels, s.meta, {});
  EXPECT_EQ(r.labels_without_image, 1000);
  EXPECT_EQ(r.images_without_labels, 1);
  EXPECT_EQ(r.train.size() + r.valid.size(), 5000u);
}

TEST(Split, CsvRoundTrip) {
  const Synthetic s = synthetic(5);
  const SplitResult r = split_dataset(s.labels, s.meta, {});
  const std::string p = ::testing::TempDir() + "/valid_" + std::to_string(::getpid()) + ".csv";
  CsvWriter w(p, split_header());
  for (const auto& x : r.valid) w.row(split_fields(x));
  w.commit();
  const std::vector<SplitRow> back = read_split(p);
  ASSERT_EQ(back.size(), r.valid.size());
  for (size_t i = 0; i < back.size(); ++i) {
    EXPECT_EQ(back[i].image_id, r.valid[i].image_id);
    EXPECT_EQ(back[i].y, r.valid[i].y);
    EXPECT_EQ(back[i].patient_id, r.valid[i].patient_id);
  }
}

// ---- folds (ich-split --folds K) ---------------------------------------------

// Every image in exactly one fold, every patient in one fold only, folds of
// about equal size; the same seed the same folds.
TEST(Folds, EveryPatientInExactlyOneFold) {
  const Synthetic s = synthetic(6);
  const FoldsResult r = split_folds(s.labels, s.meta, 5, {0.16, "patient", "grouped", 3});
  ASSERT_EQ(r.folds.size(), 5u);
  std::map<std::string, size_t> fold_of_patient;
  std::set<std::string> ids;
  for (size_t f = 0; f < r.folds.size(); ++f) {
    EXPECT_NEAR(double(r.folds[f].size()) / 6000, 0.2, 0.02) << "fold " << f;
    for (const auto& x : r.folds[f]) {
      EXPECT_TRUE(ids.insert(x.image_id).second) << x.image_id << " in two folds";
      const auto [it, fresh] = fold_of_patient.emplace(x.patient_id, f);
      EXPECT_EQ(it->second, f) << x.patient_id << " in folds " << it->second << " and " << f;
    }
  }
  EXPECT_EQ(ids.size(), 6000u);
  EXPECT_EQ(fold_of_patient.size(), 300u);
  const FoldsResult again = split_folds(s.labels, s.meta, 5, {0.16, "patient", "grouped", 3});
  for (size_t f = 0; f < 5; ++f) EXPECT_EQ(again.folds[f].size(), r.folds[f].size());
  EXPECT_EQ(again.folds[2].front().image_id, r.folds[2].front().image_id);
}

// The realistic phantom of the demo's size (100 patients; planned, not
// rendered, at 128 px): every subtype has positives in every fold of 5
// where the data allows, i.e. in min(5, patients with it) folds (the
// rarest subtype, epidural, has 4-5 patients), over several phantom seeds.
TEST(Folds, PositivesOfEverySubtypeInEveryFoldOfTheRealisticPhantom) {
  for (uint64_t seed : {1, 2, 3}) {
    PhantomOptions po;
    po.patients = 100;
    po.size = 128;
    po.seed = seed;
    std::vector<ImageLabels> imgs;
    CsvTable meta;
    meta.path = "meta.csv";
    meta.header = {"image_id", "patient_id", "study_uid", "series_uid", "z", "status"};
    std::array<std::set<std::string>, 6> patients_with;
    for (const PhantomSlice& sl : plan_phantom(po)) {
      imgs.push_back({sl.image_id, sl.labels});
      meta.rows.push_back({sl.image_id, sl.patient_id, sl.study_uid, sl.series_uid, std::to_string(sl.z), "ok"});
      for (size_t k = 0; k < 6; ++k)
        if (sl.labels[k]) patients_with[k].insert(sl.patient_id);
    }
    const FoldsResult r = split_folds(parse_labels(labels_text(imgs)), meta, 5, {0.16, "patient", "grouped", 0});
    for (size_t k = 0; k < 6; ++k) {
      size_t folds_with = 0;
      for (const auto& fold : r.folds) {
        int64_t pos = 0;
        for (const auto& x : fold) pos += x.y[k];
        folds_with += pos > 0;
      }
      EXPECT_EQ(folds_with, std::min<size_t>(5, patients_with[k].size()))
          << "phantom seed " << seed << ": " << kSubtypes[k] << " (" << patients_with[k].size() << " patients)";
    }
  }
}

TEST(Folds, OneFoldAndTheImageLevelMethodAreRefused) {
  const Synthetic s = synthetic(7);
  auto error_of_folds = [&](int k, const std::string& method) {
    try {
      split_folds(s.labels, s.meta, k, {0.16, "patient", method, 0});
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(error_of_folds(1, "grouped").find("at least 2"), std::string::npos);
  EXPECT_NE(error_of_folds(0, "grouped").find("at least 2"), std::string::npos);
  EXPECT_NE(error_of_folds(5, "seed").find("only with --method grouped"), std::string::npos);
  EXPECT_NE(error_of_folds(301, "grouped").find("is empty"), std::string::npos);  // 300 patients
}

}  // namespace
}  // namespace ich
