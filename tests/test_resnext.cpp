// ResNeXt as torchvision defines it: parameter counts and names, and the
// model of the mission against PyTorch: ResNeXt-101 32x8d with a 6-way head,
// converted from both checkpoint formats by ich-convert, in eval and train
// mode (tests/reference/gen_resnext_reference.py writes the reference into
// the build folder before these tests run; see tests/CMakeLists.txt).
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "io/npy.h"
#include "layers/resnext.h"
#include "layers/summary.h"
#include "tests/test_util.h"
#ifdef ICH_WITH_CUDA
#include "engine/cuda/runtime.h"
#endif

namespace ich {
namespace {

// Compiled-in paths, which scripts/gpu-check.sh overrides on a machine where
// the build was carried to another folder.
std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}
const std::string kRef = env_or("ICH_RESNEXT_REF_DIR", ICH_RESNEXT_REF_DIR);
const std::string kBin = env_or("ICH_BIN_DIR", ICH_BIN_DIR);

int64_t params_of(const std::string& arch, int64_t classes = 1000) {
  Generator gen(0);
  return ResNeXt(resnext_preset(arch, classes), gen).parameter_count();
}

TEST(ResNeXtArchitecture, ParameterCountsMatchTorchvision) {
  EXPECT_EQ(params_of("resnext101_32x8d"), 88791336);  // torchvision's figure
  EXPECT_EQ(params_of("resnext50_32x4d"), 25028904);
  EXPECT_EQ(params_of("resnet50"), 25557032);
  EXPECT_LT(params_of("resnext_mini", 6), 1000000);
}

TEST(ResNeXtArchitecture, MultiplyAddsMatchTorchvision) {
  Generator gen(0);
  ResNeXt m(resnext_preset("resnext101_32x8d", 1000), gen);
  int64_t params = 0, macs = 0;
  for (const LayerRow& r : summarize(m, {1, 3, 224, 224})) {
    params += r.params;
    macs += r.macs;
  }
  EXPECT_EQ(params, 88791336);
  EXPECT_EQ(macs, 16414015488);  // conv + linear multiply-adds, counted by hooks on torchvision's model
}

TEST(ResNeXtArchitecture, NamesAndShapesAreTorchvisions) {
  Generator gen(0);
  ResNeXt m(resnext_preset("resnext101_32x8d", 6), gen);
  std::map<std::string, Shape> s;
  for (auto& [n, t] : m.state_dict()) s[n] = t.shape();
  EXPECT_EQ(s.size(), 626u);  // 522 params and running stats + 104 num_batches_tracked
  EXPECT_EQ(s.at("conv1.weight"), (Shape{64, 3, 7, 7}));
  EXPECT_EQ(s.at("layer3.17.conv2.weight"), (Shape{1024, 32, 3, 3}));  // width 256*8/64*32, grouped
  EXPECT_EQ(s.at("layer2.0.downsample.1.running_var"), (Shape{512}));
  EXPECT_EQ(s.at("layer4.2.conv3.weight"), (Shape{2048, 2048, 1, 1}));
  EXPECT_EQ(s.at("fc.weight"), (Shape{6, 2048}));
  EXPECT_EQ(s.count("layer1.1.downsample.0.weight"), 0u);  // only the first block of a stage
  EXPECT_EQ(m.state_dict().front().first, "conv1.weight");
  EXPECT_EQ(m.state_dict().back().first, "fc.bias");
}

TEST(ResNeXtArchitecture, ReplaceHeadKeepsTheBackbone) {
  Generator gen(1);
  ResNeXt m(resnext_preset("resnext_mini", 1000), gen);
  const std::vector<double> conv = m.state_dict().front().second.to_vector();
  m.replace_head(6, gen);
  EXPECT_EQ(m.fc().weight.shape(), (Shape{6, m.feature_dim()}));
  EXPECT_EQ(m.state_dict().front().second.to_vector(), conv);
  // PyTorch's Linear init: uniform within 1/sqrt(in_features).
  for (double w : m.fc().weight.to_vector()) EXPECT_LE(std::fabs(w), 1.0 / std::sqrt(double(m.feature_dim())));
  Tensor y = m(Tensor::zeros({2, 3, 32, 32}));
  EXPECT_EQ(y.shape(), (Shape{2, 6}));
}

// ich-train --context K: conv1 widened to 3 x (2K+1) channels, the trained
// weights on the centre slice's, zeros on the neighbours'. The widened model
// on any stack whose centre is x is the model on x (float64: the sums differ
// only in order, so within a few units in the last place), in train mode and
// eval mode, with the same gradients for every parameter it had; the
// neighbours' weights get gradients, so they learn.
TEST(ResNeXtArchitecture, WidenedInputStartsAsTheSingleSliceModel) {
  for (const bool training : {true, false}) {
    SCOPED_TRACE(training ? "train mode" : "eval mode");
    Generator gen(3), gen2(3), data(11);
    ResNeXt one(resnext_preset("resnext_mini", 6), gen), wide(resnext_preset("resnext_mini", 6), gen2);
    one.to(DType::Float64);
    wide.to(DType::Float64);
    wide.widen_input(9, 3);  // K = 1: slices s-1, s, s+1
    EXPECT_EQ(wide.config().in_channels, 9);
    EXPECT_EQ(wide.state_dict().front().second.shape(), (Shape{16, 9, 7, 7}));
    one.train(training);
    wide.train(training);
    const Tensor x = test::leaf64({2, 3, 32, 32}, data, 1.0).detach();
    const Tensor before = test::leaf64({2, 3, 32, 32}, data, 1.0).detach(),
                 after = test::leaf64({2, 3, 32, 32}, data, 1.0).detach();
    std::vector<double> v;  // (N, 9, H, W): before's, x's, after's channels per image
    const std::vector<double> b = before.to_vector(), c = x.to_vector(), a = after.to_vector();
    const size_t per = 3 * 32 * 32;
    for (size_t n = 0; n < 2; ++n)
      for (const std::vector<double>* part : {&b, &c, &a}) v.insert(v.end(), part->begin() + n * per, part->begin() + (n + 1) * per);
    const Tensor stack = Tensor::from_vector(v, {2, 9, 32, 32}, DType::Float64);
    const Tensor y1 = one(x), y9 = wide(stack);
    EXPECT_CLOSE(y9, y1, 1e-12);
    sum(y1).backward();
    sum(y9).backward();
    const NamedTensors p1 = one.named_parameters(), p9 = wide.named_parameters();
    ASSERT_EQ(p1.size(), p9.size());
    for (size_t i = 1; i < p1.size(); ++i) {  // all but conv1
      SCOPED_TRACE(p1[i].first);
      EXPECT_CLOSE(p9[i].second.grad(), p1[i].second.grad(), 1e-10);
    }
    // conv1's gradient: the centre channels' equal the single-slice model's,
    // the neighbours' are not zero.
    const std::vector<double> g1 = p1[0].second.grad().to_vector(), g9 = p9[0].second.grad().to_vector();
    double centre = 0, scale = 0, side = 0;
    for (size_t o = 0; o < 16; ++o)
      for (size_t c = 0; c < 9; ++c)
        for (size_t k = 0; k < 49; ++k) {
          const double g = g9[(o * 9 + c) * 49 + k];
          if (c >= 3 && c < 6) {
            const double want = g1[(o * 3 + c - 3) * 49 + k];
            centre = std::max(centre, std::fabs(g - want));
            scale = std::max(scale, std::fabs(want));
          } else {
            side = std::max(side, std::fabs(g));
          }
        }
    EXPECT_LE(centre, 1e-10 * scale);
    EXPECT_GT(side, 1e-6 * scale);
  }
}

TEST(ResNeXtArchitecture, WideningChecksWhereTheWeightsGo) {
  Generator gen(0);
  ResNeXt m(resnext_preset("resnext_mini", 6), gen);
  EXPECT_THROW(m.widen_input(5, 3), Error);  // 3 channels at 3..5 do not fit in 5
  m.widen_input(15, 6);
  try {
    (void)m(Tensor::zeros({1, 3, 32, 32}));
    FAIL() << "a 3-channel input reached a 15-channel model";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("(N,15,H,W)"), std::string::npos) << e.what();
  }
}

TEST(ResNeXtArchitecture, UnknownPresetIsAClearError) {
  try {
    resnext_preset("resnext999");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("resnext101_32x8d"), std::string::npos) << e.what();
  }
}

// ---- against PyTorch ---------------------------------------------------------

WeightsFile reference() { return WeightsFile::open(kRef + "/ref.ichw"); }

TEST(ResNeXtReference, BothCheckpointFormatsConvertToTheSameWeights) {
  const WeightsFile a = WeightsFile::open(kRef + "/legacy.ichw"), b = WeightsFile::open(kRef + "/zip.ichw");
  ASSERT_EQ(a.entries().size(), b.entries().size());
  EXPECT_EQ(a.entries().size(), 626u);
  for (size_t i = 0; i < a.entries().size(); ++i) {
    EXPECT_EQ(a.entries()[i].name, b.entries()[i].name);
    EXPECT_EQ(a.entries()[i].crc, b.entries()[i].crc) << a.entries()[i].name;
  }
}

TEST(ResNeXtReference, EvalLogitsMatchPyTorch) {
  auto m = load_resnext("resnext101_32x8d", kRef + "/legacy.ichw");
  m->eval();
  NoGradGuard ng;
  EXPECT_CLOSE((*m)(read_npy(kRef + "/x.npy")), reference().read("eval_logits"), 1e-4);
}

TEST(ResNeXtReference, IchForwardMatchesPyTorchOnAnOddSize) {
  const std::string out = kRef + "/logits_odd.npy";
  std::filesystem::remove(out);
  const std::string cmd = kBin + "/ich-forward --arch resnext101_32x8d --weights " + kRef + "/zip.ichw --input " +
                          kRef + "/x_odd.npy --output " + out + " > /dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  EXPECT_CLOSE(read_npy(out), reference().read("eval_logits_odd"), 1e-4);
}

const char* const kGrads[] = {"conv1.weight", "layer3.5.conv2.weight", "fc.weight",
                              "fc.bias",      "bn1.weight",            "layer4.2.bn3.weight"};
const char* const kStats[] = {"bn1.running_mean", "bn1.running_var", "layer3.17.bn2.running_var",
                              "layer1.0.downsample.1.running_mean"};

struct TrainStep {
  Tensor logits, loss;
  std::map<std::string, Tensor> state;  // parameters (with .grad) and buffers after the step
};

TrainStep train_step(DType dt) {
  auto m = load_resnext("resnext101_32x8d", kRef + "/zip.ichw");
  m->to(dt);
  m->train();
  const WeightsFile ref = reference();
  TrainStep s;
  s.logits = (*m)(read_npy(kRef + "/x.npy").to(dt));
  s.loss = bce_with_logits(s.logits, ref.read("target").to(dt));
  s.loss.backward();
  for (auto& [n, t] : m->state_dict()) s.state[n] = t;
  return s;
}

// The whole train-mode step in float64 against PyTorch's float64: the math
// of every layer's forward and backward at the size of the real model.
TEST(ResNeXtReference, TrainModeStepFloat64MatchesPyTorch) {
  const TrainStep s = train_step(DType::Float64);
  const WeightsFile ref = reference();
  constexpr double kTol = 1e-6;
  EXPECT_CLOSE(s.logits, ref.read("train_logits64"), kTol);
  EXPECT_CLOSE(s.loss, ref.read("train_loss64"), kTol);
  for (const char* p : kGrads) {
    SCOPED_TRACE(p);
    EXPECT_CLOSE(s.state.at(p).grad(), ref.read(std::string("grad64/") + p), kTol);
  }
  for (const char* b : kStats) {
    SCOPED_TRACE(b);
    EXPECT_CLOSE(s.state.at(b), ref.read(std::string("after64/") + b), kTol);
  }
}

// The same step in float32. Logits, loss and the running statistics are
// well conditioned and must agree with PyTorch's float32 to 1e-3; the head's
// gradients must be within 1e-3 of the float64 truth. The deep gradients of a freshly initialised 101-layer net
// in train mode (batch norm over 8 values a channel in layer4) are not:
// float32 rounding anywhere upstream moves them by 0.1-30%, so one tensor's
// error is one draw, which the BLAS kernel and the summation order decide
// (layer4.2.bn3.weight: 0.8% in the max norm with one kernel, 2.2% with
// another, PyTorch 0.9%). The claim is about the typical error over every
// batch norm's weight and bias (208 tensors through the whole depth) and the
// checked convolutions: the geometric mean of the per-tensor L2 errors
// against the float64 truth at most twice PyTorch's float32's.
TEST(ResNeXtReference, TrainModeStepFloat32MatchesPyTorch) {
  const TrainStep s = train_step(DType::Float32);
  const WeightsFile ref = reference();
  constexpr double kTol = 1e-3;
  EXPECT_CLOSE(s.logits, ref.read("train_logits"), kTol);
  EXPECT_CLOSE(s.loss, ref.read("train_loss"), kTol);
  for (const char* b : kStats) {
    SCOPED_TRACE(b);
    EXPECT_CLOSE(s.state.at(b), ref.read(std::string("after/") + b), kTol);
  }
  // The head's gradients carry the features' float32 error (6e-4 in the max
  // norm, PyTorch's and ours alike): each within 1e-3 of the float64 truth,
  // or as close to it as PyTorch's float32 (x2).
  for (const char* p : {"fc.weight", "fc.bias"}) {
    SCOPED_TRACE(p);
    const std::vector<double> truth = ref.read(std::string("grad64/") + p).to_vector();
    const double ours = test::max_rel_error(s.state.at(p).grad().to_vector(), truth);
    const double torch32 = test::max_rel_error(ref.read(std::string("grad/") + p).to_vector(), truth);
    EXPECT_LE(ours, std::max(kTol, 2 * torch32)) << "PyTorch's float32: " << torch32;
  }
  auto l2 = [](const std::vector<double>& a, const std::vector<double>& t) {
    double n = 0, d = 0;
    for (size_t i = 0; i < a.size(); ++i) n += (a[i] - t[i]) * (a[i] - t[i]), d += t[i] * t[i];
    return std::sqrt(n / std::max(d, 1e-300));
  };
  double log_ours = 0, log_torch = 0, worst = 0;
  std::string worst_name;
  int tensors = 0;
  for (const auto& [name, t] : s.state) {
    if (!ref.find("grad64/" + name) || name.rfind("fc.", 0) == 0) continue;
    const std::vector<double> truth = ref.read("grad64/" + name).to_vector();
    const double ours = l2(s.state.at(name).grad().to_vector(), truth);
    const double torch32 = l2(ref.read("grad/" + name).to_vector(), truth);
    log_ours += std::log(ours + 1e-12);
    log_torch += std::log(torch32 + 1e-12);
    if (ours / torch32 > worst) worst = ours / torch32, worst_name = name;
    ++tensors;
  }
  ASSERT_GE(tensors, 200);
  const double ours = std::exp(log_ours / tensors), torch32 = std::exp(log_torch / tensors);
  std::printf("deep gradients, float32 vs the float64 truth, geometric mean of %d tensors' L2 errors: ours %.3g, "
              "PyTorch %.3g (ratio %.2f; largest one-tensor ratio %.1f, %s)\n",
              tensors, ours, torch32, ours / torch32, worst, worst_name.c_str());
  EXPECT_LE(ours, 2 * torch32);
}

TEST(ResNeXtReference, WeightsOfAnotherArchitectureNameTheFirstMismatch) {
  try {
    load_resnext("resnext50_32x4d", kRef + "/zip.ichw");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("entry 'layer1.0.conv1.weight' has shape [256, 64, 1, 1]"),
              std::string::npos)
        << e.what();
  }
}

// The same model on the GPU (skips without one).
TEST(ResNeXtReferenceCuda, EvalLogitsAndTrainStepMatchPyTorch) {
#ifdef ICH_WITH_CUDA
  if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device on this machine (CUDA backend compiled, not run)";
  cuda::set_allow_tf32(false);
  auto m = load_resnext("resnext101_32x8d", kRef + "/zip.ichw");
  m->to(Device::cuda());
  const WeightsFile ref = reference();
  const Tensor x = read_npy(kRef + "/x.npy").to(Device::cuda());
  {
    m->eval();
    NoGradGuard ng;
    EXPECT_CLOSE((*m)(x), ref.read("eval_logits"), 1e-4);
  }
  m->train();
  Tensor logits = (*m)(x);
  Tensor loss = bce_with_logits(logits, ref.read("target").to(Device::cuda()));
  loss.backward();
  EXPECT_CLOSE(logits, ref.read("train_logits"), 1e-3);
  EXPECT_CLOSE(loss, ref.read("train_loss"), 1e-3);
  std::map<std::string, Tensor> sd;
  for (auto& [n, t] : m->state_dict()) sd[n] = t;
  EXPECT_CLOSE(sd.at("fc.weight").grad(), ref.read("grad/fc.weight"), 1e-3);
  EXPECT_CLOSE(sd.at("bn1.running_var"), ref.read("after/bn1.running_var"), 1e-3);
  const double ours = test::max_rel_error(sd.at("conv1.weight").grad().to_vector(),
                                          ref.read("grad64/conv1.weight").to_vector());
  const double torch32 = test::max_rel_error(ref.read("grad/conv1.weight").to_vector(),
                                             ref.read("grad64/conv1.weight").to_vector());
  EXPECT_LE(ours, std::max(1e-3, 2 * torch32));
#else
  GTEST_SKIP() << "this build has no CUDA backend";
#endif
}

// ich-convert on broken input: a non-zero exit, one error line, no output.
TEST(ResNeXtReference, IchConvertRejectsTruncatedAndForeignFiles) {
  namespace fs = std::filesystem;
  const std::string bad = kRef + "/bad.pth", out = kRef + "/bad.ichw";
  for (const char* src : {"/ref_legacy.pth", "/ref_zip.pth"}) {
    fs::copy_file(kRef + src, bad, fs::copy_options::overwrite_existing);
    fs::resize_file(bad, fs::file_size(bad) / 2);
    fs::remove(out);
    const std::string cmd = kBin + "/ich-convert --input " + bad + " --output " + out + " 2> " + kRef + "/err.txt";
    EXPECT_EQ(WEXITSTATUS(std::system(cmd.c_str())), 1) << src;
    EXPECT_FALSE(fs::exists(out)) << src;
    std::ifstream err(kRef + "/err.txt");
    std::string line;
    std::getline(err, line);
    EXPECT_EQ(line.rfind("ich-convert: error: ", 0), 0u) << line;
    EXPECT_NE(line.find(bad), std::string::npos) << line;
  }
  const std::string cmd = kBin + "/ich-convert --input " + kRef + "/x.npy --output " + out + " 2> /dev/null";
  EXPECT_EQ(WEXITSTATUS(std::system(cmd.c_str())), 1);
  EXPECT_FALSE(fs::exists(out));
  fs::remove(bad);
}

}  // namespace
}  // namespace ich
