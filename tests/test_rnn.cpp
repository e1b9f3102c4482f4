// The recurrent layers (engine/ops/rnn.h, layers/rnn.h): backward against finite
// differences in float64 (LSTM and GRU, both directions, ragged lengths);
// forward, final states and every gradient against torch.nn.LSTM/GRU on a
// packed batch (2 layers, bidirectional, batch-first) from a state_dict
// written by PyTorch, in float32 (within 1e-5) and float64 (1e-12); the
// masking op and the class-weighted loss the sequence model trains with.
#include <cmath>
#include <cstdlib>

#include "engine/ops/rnn.h"
#include "layers/rnn.h"
#include "tests/test_util.h"
#include "weights/weights_file.h"

namespace ich {
namespace {

using test::leaf64;

class RnnGradcheck : public ::testing::TestWithParam<RnnCell> {};

// One layer (both directions, ragged lengths) is a row of the op table
// (tests/op_cases.cpp); here the stacked module.
TEST_P(RnnGradcheck, TwoLayerModuleMatchesFiniteDifferences) {
  const RnnCell cell = GetParam();
  Generator gen(22);
  RNN m({cell, 2, 3, 2, true, true}, gen, DType::Float64);
  std::vector<Tensor> in{leaf64({2, 3, 2}, gen)};
  for (const Tensor& p : m.parameters()) in.push_back(p);
  EXPECT_GRADCHECK(in, [&](const std::vector<Tensor>& t) { return m.forward(t[0], {3, 2}); });
}

INSTANTIATE_TEST_SUITE_P(Cells, RnnGradcheck, ::testing::Values(RnnCell::LSTM, RnnCell::GRU),
                         [](const auto& i) { return std::string(i.param == RnnCell::LSTM ? "LSTM" : "GRU"); });

TEST(Rnn, PaddingIsZeroAndFinalStatesAreTheLastValidSteps) {
  Generator gen(23);
  RNN m({RnnCell::LSTM, 3, 4, 1, true, true}, gen);
  const Tensor x = Tensor::randn({2, 5, 3}, gen);
  Tensor h_n, c_n;
  const Tensor y = m.forward(x, {5, 3}, &h_n, &c_n);
  ASSERT_EQ(y.shape(), (Shape{2, 5, 8}));
  ASSERT_EQ(h_n.shape(), (Shape{2, 2, 4}));
  ASSERT_EQ(c_n.shape(), (Shape{2, 2, 4}));
  const std::vector<double> yv = y.to_vector(), hv = h_n.to_vector();
  auto Y = [&](int64_t b, int64_t t, int64_t j) { return yv[size_t((b * 5 + t) * 8 + j)]; };
  for (int64_t t = 3; t < 5; ++t)
    for (int64_t j = 0; j < 8; ++j) EXPECT_EQ(Y(1, t, j), 0.0) << "t " << t;
  for (int64_t j = 0; j < 4; ++j) {
    EXPECT_EQ(hv[size_t(1 * 4 + j)], Y(1, 2, j));          // forward: after step length-1
    EXPECT_EQ(hv[size_t((2 + 1) * 4 + j)], Y(1, 0, 4 + j));  // reverse: after step 0
    EXPECT_EQ(hv[size_t(0 * 4 + j)], Y(0, 4, j));
  }
  // A sequence's outputs do not depend on what lies past its length.
  Tensor x2 = x.clone();
  for (int64_t t = 3; t < 5; ++t) x2.data<float>()[(1 * 5 + t) * 3] += 7.f;
  const std::vector<double> y2 = m.forward(x2, {5, 3}).to_vector();
  for (int64_t t = 0; t < 3; ++t)
    for (int64_t j = 0; j < 8; ++j) EXPECT_EQ(y2[size_t((5 + t) * 8 + j)], Y(1, t, j));
}

TEST(Rnn, RejectsBadLengthsAndShapes) {
  Generator gen(24);
  RNN m({RnnCell::GRU, 3, 4, 1, false, true}, gen);
  const Tensor x = Tensor::randn({2, 5, 3}, gen);
  EXPECT_THROW(m.forward(x, {5, 0}), Error);
  EXPECT_THROW(m.forward(x, {6, 1}), Error);
  EXPECT_THROW(m.forward(x, {5}), Error);
  EXPECT_THROW(m.forward(Tensor::randn({2, 5, 4}, gen)), Error);
}

// ---- against PyTorch -------------------------------------------------------

WeightsFile reference() { return WeightsFile::open(std::string(ICH_RNN_REF_DIR) + "/rnn_ref.ichw"); }

void expect_close(const std::string& what, const Tensor& got, const Tensor& want, double tol) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  const std::vector<double> g = got.to_vector(), w = want.to_vector();
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    const double e = std::fabs(g[i] - w[i]) / std::max(1.0, std::fabs(w[i]));
    if (e > worst) worst = e, at = i;
  }
  EXPECT_LE(worst, tol) << what << " element " << at << ": " << g[at] << " vs PyTorch " << w[at];
}

struct TorchCase {
  const char* cell;
  const char* dtype;
};
inline void PrintTo(const TorchCase& c, std::ostream* os) { *os << c.cell << "/" << c.dtype; }

class RnnTorch : public ::testing::TestWithParam<TorchCase> {};

TEST_P(RnnTorch, ForwardFinalStatesAndGradientsMatchPyTorch) {
  const TorchCase c = GetParam();
  const bool lstm = std::string(c.cell) == "lstm", f64 = std::string(c.dtype) == "f64";
  const DType dt = f64 ? DType::Float64 : DType::Float32;
  const double tol = f64 ? 1e-12 : 1e-5;
  const WeightsFile ref = reference();
  const std::string p = std::string(c.cell) + "/" + c.dtype + "/";
  Generator gen(0);
  RNN m({lstm ? RnnCell::LSTM : RnnCell::GRU, 5, 4, 2, true, true}, gen, dt);
  NamedTensors targets;
  for (auto& [n, t] : m.state_dict()) targets.emplace_back(p + "state/" + n, t);
  ASSERT_EQ(targets.size(), 16u);
  for (auto& [n, t] : targets) ASSERT_NE(ref.find(n), nullptr) << n << ": not in PyTorch's state_dict";
  ref.load_into(targets, /*strict=*/false);  // the file holds the other cases too
  const Tensor x = ref.read(p + "x");
  Tensor xl = x.clone();
  xl.set_requires_grad(true);
  std::vector<int64_t> lengths;
  for (double v : ref.read(p + "lengths").to_vector()) lengths.push_back(int64_t(v));
  Tensor h_n, c_n;
  const Tensor y = m.forward(xl, lengths, &h_n, lstm ? &c_n : nullptr);
  expect_close(p + "out", y, ref.read(p + "out"), tol);
  expect_close(p + "h_n", h_n, ref.read(p + "h_n"), tol);
  if (lstm) expect_close(p + "c_n", c_n, ref.read(p + "c_n"), tol);
  sum(mul(y, ref.read(p + "R"))).backward();
  expect_close(p + "g/x", xl.grad(), ref.read(p + "g/x"), tol);
  for (auto& [n, t] : m.named_parameters()) expect_close(p + "g/" + n, t.grad(), ref.read(p + "g/" + n), tol);
}

INSTANTIATE_TEST_SUITE_P(Torch, RnnTorch,
                         ::testing::Values(TorchCase{"lstm", "f32"}, TorchCase{"lstm", "f64"},
                                           TorchCase{"gru", "f32"}, TorchCase{"gru", "f64"}),
                         [](const auto& i) { return std::string(i.param.cell) + "_" + i.param.dtype; });

TEST(RnnTorch, AStateDictSavedByTorchConvertsWithIchConvertAndLoads) {
  const WeightsFile ref = reference();
  for (const std::string cell : {"lstm", "gru"}) {
    const std::string dir = ICH_RNN_REF_DIR, ichw = dir + "/" + cell + "_converted.ichw";
    const std::string cmd = std::string(ICH_BIN_DIR) + "/ich-convert --input " + dir + "/" + cell + ".pth --output " +
                            ichw + " > /dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    Generator gen(0);
    RNN m({cell == "lstm" ? RnnCell::LSTM : RnnCell::GRU, 5, 4, 2, true, true}, gen);
    WeightsFile::open(ichw).load_into(m.state_dict());  // strict: the same names and shapes, nothing more
    std::vector<int64_t> lengths;
    for (double v : ref.read(cell + "/f32/lengths").to_vector()) lengths.push_back(int64_t(v));
    expect_close(cell + " converted", m.forward(ref.read(cell + "/f32/x"), lengths), ref.read(cell + "/f32/out"), 1e-5);
  }
}

// ---- what the sequence model's loss is made of ------------------------------

// Its gradient check is a row of the op table (rnn/select_rows).
TEST(SelectRows, RejectsRepeatedAndOutOfRangeRows) {
  Generator gen(25);
  std::vector<Tensor> in{leaf64({5, 3}, gen)};
  EXPECT_THROW(select_rows(in[0], {1, 1}), Error);
  EXPECT_THROW(select_rows(in[0], {5}), Error);
}

TEST(WeightedBce, IsTorchsWeightAndMatchesFiniteDifferences) {
  Generator gen(26);
  const Tensor target = Tensor::from_vector({1, 0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 1}, {2, 6}, DType::Float64);
  const Tensor w = Tensor::from_vector({1, 1, 1, 1, 1, 2}, {6}, DType::Float64);
  std::vector<Tensor> in{leaf64({2, 6}, gen, 3.0)};
  EXPECT_GRADCHECK(in, [&](const std::vector<Tensor>& t) { return bce_with_logits(t[0], target, Tensor(), w); });
  // mean over elements of w_c * l (torch.nn.BCEWithLogitsLoss(weight=w)), from the definition
  const std::vector<double> x = in[0].to_vector(), y = target.to_vector(), wv = w.to_vector();
  double s = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double p = 1 / (1 + std::exp(-x[i]));
    s -= wv[i % 6] * (y[i] * std::log(p) + (1 - y[i]) * std::log(1 - p));
  }
  EXPECT_NEAR(bce_with_logits(in[0], target, Tensor(), w).item(), s / 12, 1e-12);
}

}  // namespace
}  // namespace ich
