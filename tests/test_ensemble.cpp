// Ensembles and test-time views (infer/ensemble.h, data/augment.h
// tta_views): the views on an asymmetric image; an ensemble of one is the
// model bit for bit, two identical members are one, the flip view is the
// mean of the image's and its mirror's probabilities; members that read
// another input are refused.
#include <unistd.h>

#include <filesystem>

#include "layers/resnext_compiled.h"
#include "infer/ensemble.h"
#include "tests/test_util.h"

namespace ich {
namespace {

namespace fs = std::filesystem;

TEST(TtaViews, FlipAndTransposeOfAnAsymmetricImage) {
  // one image, two channels, 3x3, every value different
  std::vector<double> v(18);
  for (size_t i = 0; i < v.size(); ++i) v[i] = double(i);
  const Tensor x = Tensor::from_vector(v, {1, 2, 3, 3});
  const std::vector<Tensor> views = tta_views(x, Tta::FlipTranspose);
  ASSERT_EQ(views.size(), 3u);
  const std::vector<double> f = views[1].to_vector(), t = views[2].to_vector();
  for (int c = 0; c < 2; ++c)
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) {
        EXPECT_EQ(f[size_t(c * 9 + i * 3 + j)], v[size_t(c * 9 + i * 3 + (2 - j))]);  // columns reversed
        EXPECT_EQ(t[size_t(c * 9 + i * 3 + j)], v[size_t(c * 9 + j * 3 + i)]);        // rows and columns swapped
      }
  EXPECT_EQ(tta_views(x, Tta::Flip).size(), 2u);
  EXPECT_EQ(tta_views(x, Tta::None).size(), 1u);
  Tensor bytes = Tensor::empty({1, 1, 2, 2}, DType::UInt8);
  for (int i = 0; i < 4; ++i) bytes.data<uint8_t>()[i] = uint8_t(10 * i);
  const Tensor fb = tta_views(bytes, Tta::Flip)[1];
  EXPECT_EQ(fb.dtype(), DType::UInt8);
  EXPECT_EQ(fb.to_vector(), (std::vector<double>{10, 0, 30, 20}));
  EXPECT_THROW(parse_tta("rotate"), Error);
  EXPECT_EQ(parse_tta("flip+transpose"), Tta::FlipTranspose);
}

class EnsembleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::temp_directory_path() / ("ich_ensemble_" + std::to_string(::getpid()))).string();
    fs::create_directories(dir_);
    for (uint64_t seed : {1, 2}) {
      Generator gen(seed);
      ResNeXt m(resnext_preset("resnext_mini", 6), gen);
      CheckpointMeta meta;
      meta.size = 32;
      save_checkpoint(path(seed), m, nullptr, meta);
    }
    Generator gen(3);
    x_ = Tensor::randn({3, 3, 32, 32}, gen);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(uint64_t seed) const { return dir_ + "/m" + std::to_string(seed) + ".ckpt"; }
  std::vector<double> model_probs(const std::string& ckpt, const Tensor& x) {
    LoadedCheckpoint c = load_checkpoint(ckpt);
    c.model->eval();
    // as the tools run it (compiled float32 where the CPU has AVX-512F)
    apply_inference_precision(*c.model, "fp32", Device::cpu());
    NoGradGuard ng;
    return sigmoid((*c.model)(x)).to_vector();
  }
  static std::vector<double> flat(const std::vector<std::array<double, 6>>& p) {
    std::vector<double> v;
    for (const auto& r : p) v.insert(v.end(), r.begin(), r.end());
    return v;
  }
  std::string dir_;
  Tensor x_;
};

TEST_F(EnsembleTest, OneMemberIsTheModelAndTwoIdenticalMembersAreOne) {
  Ensemble one = load_ensemble({path(1)}, Device::cpu(), Tta::None);
  const std::vector<double> p1 = flat(ensemble_probs(one, x_, Device::cpu()));
  EXPECT_EQ(p1, model_probs(path(1), x_));
  Ensemble twice = load_ensemble({path(1), path(1)}, Device::cpu(), Tta::None);
  EXPECT_EQ(flat(ensemble_probs(twice, x_, Device::cpu())), p1);
  // two different members: the mean of their probabilities
  Ensemble two = load_ensemble({path(1), path(2)}, Device::cpu(), Tta::None);
  const std::vector<double> a = p1, b = model_probs(path(2), x_), m = flat(ensemble_probs(two, x_, Device::cpu()));
  for (size_t i = 0; i < m.size(); ++i) EXPECT_DOUBLE_EQ(m[i], (a[i] + b[i]) / 2);
  EXPECT_NE(a, b);  // the test can tell the members apart
}

TEST_F(EnsembleTest, FlipViewIsTheMeanOfTheImageAndItsMirror) {
  Ensemble e = load_ensemble({path(1)}, Device::cpu(), Tta::Flip);
  const std::vector<double> got = flat(ensemble_probs(e, x_, Device::cpu()));
  const std::vector<double> a = model_probs(path(1), x_), b = model_probs(path(1), tta_views(x_, Tta::Flip)[1]);
  ASSERT_EQ(got.size(), a.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_DOUBLE_EQ(got[i], (a[i] + b[i]) / 2);
  EXPECT_NE(a, b);  // the random model is not mirror-symmetric: the view matters
  Ensemble t = load_ensemble({path(1)}, Device::cpu(), Tta::FlipTranspose);
  const std::vector<double> c = model_probs(path(1), tta_views(x_, Tta::FlipTranspose)[2]),
                            g3 = flat(ensemble_probs(t, x_, Device::cpu()));
  for (size_t i = 0; i < g3.size(); ++i) EXPECT_NEAR(g3[i], (a[i] + b[i] + c[i]) / 3, 1e-15);
}

TEST_F(EnsembleTest, MembersReadingAnotherInputAreRefused) {
  Generator gen(4);
  ResNeXt m(resnext_preset("resnext_mini", 6), gen);
  CheckpointMeta meta;
  meta.size = 48;
  save_checkpoint(dir_ + "/other.ckpt", m, nullptr, meta);
  try {
    load_ensemble({path(1), dir_ + "/other.ckpt"}, Device::cpu(), Tta::None);
    ADD_FAILURE() << "a member of another input size was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("must read the same input"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ich
