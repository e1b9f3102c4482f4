// The second stage's pieces (seq/): the model input built from an ich-embed
// folder ([e, e - prev, e - next, gaps], standardised, zero past each
// series' length), training on synthetic embeddings where only context can
// tell (the sequence model must beat every slice read alone), its NaN guard
// and resume, and the study summary ich-predict writes.
#include <cstdio>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "data/metrics.h"
#include "engine/device.h"
#include "infer/apply.h"
#include "io/csv.h"
#include "io/npy.h"
#include "seq/train_seq.h"
#include "tests/test_util.h"

namespace ich {
namespace {

namespace fs = std::filesystem;

std::string fresh(const std::string& name) {
  const std::string d = (fs::temp_directory_path() / (name + "_" + std::to_string(::getpid()))).string();
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// A synthetic ich-embed folder and split: `series` series of 10 slices, F
// features. Blood spans slices 3..6 of every other series; feature 0 shows
// it on slices 4 and 5 only (the lesion's middle), plus noise: slices 3 and
// 6 look normal alone, and only their neighbours tell. Half the series train.
struct Synthetic {
  std::string dir, train_csv, valid_csv;
};
Synthetic make_synthetic(const std::string& name, int series, int F, uint64_t seed, bool nan = false) {
  Synthetic s{fresh(name), "", ""};
  s.train_csv = s.dir + "/train.csv";
  s.valid_csv = s.dir + "/valid.csv";
  Generator g(seed);
  const int L = 10;
  Tensor e = Tensor::empty({int64_t(series) * L, F});
  CsvWriter index(s.dir + "/index.csv", {"image_id", "row", "patient_id", "study_uid", "series_uid", "position",
                                         "gap_prev", "gap_next"});
  CsvWriter tr(s.train_csv, split_header()), va(s.valid_csv, split_header());
  for (int k = 0; k < series; ++k) {
    const bool bleed = k % 2 == 1;
    for (int t = 0; t < L; ++t) {
      const int64_t row = int64_t(k) * L + t;
      for (int f = 0; f < F; ++f) e.data<float>()[row * F + f] = float(g.normal());
      if (bleed && (t == 4 || t == 5)) e.data<float>()[row * F] += 3.f;
      if (nan && row == 3) e.data<float>()[row * F + 1] = NAN;
      const std::string id = "ID_" + std::to_string(k) + "_" + std::to_string(t);
      index.row({id, std::to_string(row), "p" + std::to_string(k), "st" + std::to_string(k), "se" + std::to_string(k),
                 std::to_string(5.0 * t), t ? "5" : "0", t + 1 < L ? "5" : "0"});
      SplitRow r;
      r.image_id = id;
      r.patient_id = "p" + std::to_string(k);
      r.study_uid = "st" + std::to_string(k);
      r.series_uid = "se" + std::to_string(k);
      const int y = bleed && t >= 3 && t <= 6;
      r.y = {0, y, 0, 0, 0, y};
      (k < series / 2 ? tr : va).row(split_fields(r));
    }
  }
  write_npy(s.dir + "/embeddings.npy", e);
  index.commit();
  tr.commit();
  va.commit();
  return s;
}

TEST(SeqData, InputIsEmbeddingNeighbourDifferencesAndGapsZeroPadded) {
  const Synthetic s = make_synthetic("ich_seqdata", 4, 3, 1);
  const SeqData d = read_seq_data(s.dir, nullptr);
  ASSERT_EQ(d.series.size(), 4u);
  ASSERT_EQ(d.series[0].ids.size(), 10u);
  const FeatureNorm norm = feature_norm(d);
  SeqSeries shorter = d.series[1];
  shorter.ids.resize(4), shorter.rows.resize(4), shorter.gaps.resize(4), shorter.y.resize(4);
  std::vector<int64_t> lengths;
  const Tensor x = series_input(d, norm, {&d.series[0], &shorter}, &lengths);
  ASSERT_EQ(x.shape(), (Shape{2, 10, 3 * 3 + 2}));
  EXPECT_EQ(lengths, (std::vector<int64_t>{10, 4}));
  const float* e = d.embeddings.data<float>();
  auto z = [&](int64_t row, int f) { return (e[row * 3 + f] - norm.mean[size_t(f)]) * norm.inv_std[size_t(f)]; };
  const float* xp = x.data<float>();
  for (int f = 0; f < 3; ++f) {
    EXPECT_FLOAT_EQ(xp[(0 * 10 + 2) * 11 + f], z(2, f));
    EXPECT_FLOAT_EQ(xp[(0 * 10 + 2) * 11 + 3 + f], z(2, f) - z(1, f));
    EXPECT_FLOAT_EQ(xp[(0 * 10 + 2) * 11 + 6 + f], z(2, f) - z(3, f));
    EXPECT_FLOAT_EQ(xp[(0 * 10 + 0) * 11 + 3 + f], 0.f);  // the first slice: no previous one
  }
  EXPECT_FLOAT_EQ(xp[(0 * 10 + 0) * 11 + 9], 0.f);
  EXPECT_FLOAT_EQ(xp[(0 * 10 + 0) * 11 + 10], 0.5f);  // 5 mm / 10
  for (int t = 4; t < 10; ++t)
    for (int j = 0; j < 11; ++j) EXPECT_EQ(xp[(1 * 10 + t) * 11 + j], 0.f);
  // a split naming a slice the folder lacks: one error naming it
  std::vector<SplitRow> rows(1);
  rows[0].image_id = "ID_missing";
  try {
    read_seq_data(s.dir, &rows);
    FAIL() << "a slice without an embedding was accepted";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("ID_missing"), std::string::npos) << err.what();
  }
}

SeqTrainOptions options(const Synthetic& s, const std::string& out) {
  SeqTrainOptions o;
  o.train_csv = s.train_csv;
  o.valid_csv = s.valid_csv;
  o.embeddings = s.dir;
  o.out = out;
  o.hidden = 8;
  o.layers = 1;
  o.batch = 4;
  o.epochs = 40;
  o.lr = 1e-2;
  o.device = "cpu";
  o.seed = 2;
  return o;
}

// AUC(any) on slices 3 and 6 of the validation series, which look like any
// other slice alone: only their neighbours tell a bleeding series' apart.
double context_auc(const Synthetic& s, const std::string& run) {
  const LoadedSeqCheckpoint c = load_seq_checkpoint(run + "/best.ckpt");
  std::vector<SplitRow> valid = read_split(s.valid_csv);
  const SeqData d = read_seq_data(s.dir, &valid);
  const std::vector<std::array<double, 6>> p = predict_series(*c.model, d, c.norm, Device::cpu());
  std::vector<double> scores;
  std::vector<int> labels;
  size_t i = 0;
  for (const SeqSeries& q : d.series)
    for (size_t t = 0; t < q.ids.size(); ++t, ++i)
      if (t == 3 || t == 6) scores.push_back(p[i][5]), labels.push_back(q.y[t][5]);
  return roc_auc(scores, labels);
}

TEST(SeqTrain, ContextTellsWhatNoSliceAloneCanAndResumeIsExact) {
  const Synthetic s = make_synthetic("ich_seqtrain", 40, 4, 3);
  // A claim about the recipe, not one draw: alone these slices are at
  // chance (0.5); every one of five seeds must be above 0.85 and their mean
  // above 0.90. Measured over seeds 1-12: 0.878 to 0.993, mean 0.936, the
  // same under every BLAS kernel and thread count tried (the LSTM's sums
  // do not go through BLAS); seed 2 alone, the old test, was 0.955.
  double sum = 0, worst = 1;
  std::string aucs;
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    SeqTrainOptions o = options(s, s.dir + "/seed" + std::to_string(seed));
    o.seed = seed;
    ASSERT_EQ(train_sequence(o), 0);
    const double auc = context_auc(s, o.out);
    sum += auc;
    worst = std::min(worst, auc);
    aucs += (aucs.empty() ? "" : ", ") + std::to_string(auc);
  }
  std::printf("context AUC(any) on the look-alike slices, seeds 1-5: %s\n", aucs.c_str());
  EXPECT_GT(worst, 0.85) << aucs;
  EXPECT_GT(sum / 5, 0.90) << aucs;
  ASSERT_EQ(train_sequence(options(s, s.dir + "/run")), 0);
  // 30 epochs, then 10 more after a resume: the same bytes as 40 in one go
  SeqTrainOptions o = options(s, s.dir + "/resumed");
  o.epochs = 30;
  ASSERT_EQ(train_sequence(o), 0);
  o.epochs = 40;
  o.resume = true;
  ASSERT_EQ(train_sequence(o), 0);
  auto bytes = [](const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string{std::istreambuf_iterator<char>(in), {}};
  };
  EXPECT_EQ(bytes(s.dir + "/run/last.ckpt"), bytes(s.dir + "/resumed/last.ckpt"));
  // a resume with other settings says which
  o.hidden = 16;
  try {
    train_sequence(o);
    FAIL() << "a resume with another --hidden was accepted";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("--hidden 8"), std::string::npos) << err.what();
  }
  fs::remove_all(s.dir);
}

TEST(SeqTrain, NanEmbeddingStopsBeforeTheStepWithOneLine) {
  const Synthetic s = make_synthetic("ich_seqnan", 8, 3, 4, /*nan=*/true);
  SeqTrainOptions o = options(s, s.dir + "/run");
  o.epochs = 2;
  try {
    train_sequence(o);
    FAIL() << "a NaN loss did not stop the run";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("loss is NaN at epoch 1, batch"), std::string::npos) << err.what();
  }
  EXPECT_FALSE(fs::exists(s.dir + "/run/last.ckpt"));  // nothing was applied, nothing written
  fs::remove_all(s.dir);
}

TEST(StudySummary, HighestProbabilityPerLabelAndTheKeySlices) {
  std::vector<OrderedSlice> order;
  for (int k = 0; k < 2; ++k)
    for (int t = 0; t < 4; ++t)
      order.push_back({"s" + std::to_string(k) + std::to_string(t), "p", "st" + std::to_string(k),
                       "se" + std::to_string(k), size_t(k * 4 + t), 5.0 * t, {}});
  std::vector<std::array<double, 6>> p(8, std::array<double, 6>{0.01, 0.01, 0.01, 0.01, 0.01, 0.02});
  p[1] = {0.1, 0.7, 0.01, 0.2, 0.01, 0.8};
  p[2] = {0.1, 0.9, 0.01, 0.2, 0.01, 0.6};
  p[6][5] = 0.3;
  const std::vector<StudySummary> s = summarise_studies(order, p);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].slices, 4);
  EXPECT_DOUBLE_EQ(s[0].p[5], 0.8);
  EXPECT_DOUBLE_EQ(s[0].p[1], 0.9);
  EXPECT_EQ(s[0].key_slices, (std::vector<std::string>{"s01", "s02"}));
  EXPECT_DOUBLE_EQ(s[1].p[5], 0.3);
  EXPECT_EQ(s[1].key_slices, (std::vector<std::string>{"s12"}));  // the highest, though under 0.5
}

}  // namespace
}  // namespace ich
