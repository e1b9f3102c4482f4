// Metrics against their definitions: AUC against the pair-counting
// definition on random data with ties, hand-computed cases, the weighted log
// loss against a direct formula, and the seed's table conventions.
#include "data/metrics.h"
#include "engine/random.h"
#include "tests/test_util.h"

namespace ich {
namespace {

// P(score of a positive > score of a negative) + 0.5 P(equal): O(n^2).
double auc_by_pairs(const std::vector<double>& s, const std::vector<int>& y) {
  double num = 0, den = 0;
  for (size_t i = 0; i < s.size(); ++i)
    for (size_t j = 0; j < s.size(); ++j)
      if (y[i] && !y[j]) {
        den += 1;
        num += s[i] > s[j] ? 1 : (s[i] == s[j] ? 0.5 : 0);
      }
  return num / den;
}

TEST(Metrics, AucMatchesPairCountingWithTies) {
  Generator g(1);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<double> s(300);
    std::vector<int> y(300);
    for (size_t i = 0; i < s.size(); ++i) {
      y[i] = g.uniform() < 0.2;
      s[i] = double(g.below(20)) / 20 + 0.1 * y[i];  // coarse scores: many ties
    }
    EXPECT_NEAR(roc_auc(s, y), auc_by_pairs(s, y), 1e-12);
  }
}

TEST(Metrics, HandComputedCases) {
  EXPECT_DOUBLE_EQ(roc_auc({0.1, 0.4, 0.35, 0.8}, {0, 0, 1, 1}), 0.75);  // sklearn's example
  EXPECT_DOUBLE_EQ(roc_auc({0.9, 0.1}, {1, 0}), 1.0);
  EXPECT_TRUE(std::isnan(roc_auc({0.5, 0.6}, {1, 1})));  // one class only: undefined
  const BinaryMetrics m = binary_metrics({0.9, 0.6, 0.4, 0.2, 0.7}, {1, 0, 1, 0, 1});
  EXPECT_EQ(m.tp, 2);
  EXPECT_EQ(m.fp, 1);
  EXPECT_EQ(m.fn, 1);
  EXPECT_EQ(m.tn, 1);
  EXPECT_DOUBLE_EQ(m.accuracy, 0.6);
  EXPECT_DOUBLE_EQ(m.precision, 2.0 / 3);
  EXPECT_DOUBLE_EQ(m.recall, 2.0 / 3);
  EXPECT_DOUBLE_EQ(m.f1, 2.0 / 3);
  const auto curve = roc_curve({0.1, 0.4, 0.35, 0.8}, {0, 0, 1, 1});
  EXPECT_EQ(curve.front(), (std::pair<double, double>{0, 0}));
  EXPECT_EQ(curve.back(), (std::pair<double, double>{1, 1}));
}

TEST(Metrics, WeightedLogLossIsTheCompetitionFormula) {
  Generator g(2);
  std::vector<std::array<double, 6>> p(50);
  std::vector<std::array<int, 6>> y(50);
  double want = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    double row = 0;
    for (size_t k = 0; k < 6; ++k) {
      p[i][k] = g.uniform(0.01, 0.99);
      y[i][k] = g.uniform() < 0.3;
      const double l = -(y[i][k] * std::log(p[i][k]) + (1 - y[i][k]) * std::log(1 - p[i][k]));
      row += (k == 5 ? 2 : 1) * l;
    }
    want += row / 7;
  }
  EXPECT_NEAR(weighted_log_loss(p, y), want / 50, 1e-12);
  // A confident mistake is clipped, finite.
  EXPECT_TRUE(std::isfinite(weighted_log_loss({{0, 0, 0, 0, 0, 0}}, {{1, 1, 1, 1, 1, 1}})));
}

TEST(Metrics, NormalIsNotAny) {
  const std::vector<std::array<double, 6>> p{{0, 0, 0, 0, 0, 0.9}, {0, 0, 0, 0, 0, 0.1}, {0, 0, 0, 0, 0, 0.2}};
  const std::vector<std::array<int, 6>> y{{0, 0, 0, 0, 1, 1}, {0, 0, 0, 0, 0, 0}, {0, 0, 0, 0, 1, 1}};
  const EvalReport r = evaluate(p, y);
  const BinaryMetrics& normal = r.per_label[0];  // predicted normal: p(any) < 0.5 -> images 2 and 3
  EXPECT_EQ(normal.tp, 1);
  EXPECT_EQ(normal.fp, 1);
  EXPECT_EQ(normal.tn, 1);
  EXPECT_EQ(normal.fn, 0);
  EXPECT_NE(format_table(r).find("| Accuracy |"), std::string::npos);
  EXPECT_NE(to_json(r).find("\"Normal\""), std::string::npos);
}

}  // namespace
}  // namespace ich
