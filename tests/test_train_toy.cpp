// End to end on the CPU: a small conv net (conv, BN, ReLU, grouped conv,
// pools, linear, BCE, Adam) learns a synthetic two-class image problem:
// does a 16x16 noisy image contain a bright 4x4 square or only a bright bar?
#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "layers/layers.h"
#include "tests/test_util.h"

namespace ich {
namespace {

// Batch of n images (n,1,16,16) and labels (n,1): label 1 = square present.
std::pair<Tensor, Tensor> make_batch(int64_t n, Generator& gen) {
  std::vector<double> x(static_cast<size_t>(n * 256)), y(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    double* img = x.data() + i * 256;
    for (int j = 0; j < 256; ++j) img[j] = 0.3 * gen.normal();
    const bool square = gen.uniform() < 0.5;
    const int64_t r = int64_t(gen.below(12)), c = int64_t(gen.below(12));
    for (int a = 0; a < 4; ++a)
      for (int b = 0; b < 4; ++b)
        if (square || a == 1) img[(r + a) * 16 + (c + b)] += 1.0;  // square, or a 1x4 bar
    y[size_t(i)] = square ? 1.0 : 0.0;
  }
  return {Tensor::from_vector(x, {n, 1, 16, 16}), Tensor::from_vector(y, {n, 1})};
}

std::shared_ptr<Sequential> toy_net(Generator& gen) {
  auto net = std::make_shared<Sequential>();
  net->add(std::make_shared<Conv2d>(1, 8, 3, 1, 1, 1, false, gen));
  net->add(std::make_shared<BatchNorm2d>(8));
  net->add(std::make_shared<ReLU>());
  net->add(std::make_shared<MaxPool2d>(3, 2, 1));
  net->add(std::make_shared<Conv2d>(8, 16, 3, 1, 1, 4, false, gen));
  net->add(std::make_shared<BatchNorm2d>(16));
  net->add(std::make_shared<ReLU>());
  net->add(std::make_shared<AdaptiveAvgPool2d>());
  return net;
}

TEST(TrainToy, SmallConvNetLearnsSquaresVsBars) {
  Generator gen(2024);
  auto features = toy_net(gen);
  Linear head(16, 1, gen);
  std::vector<Tensor> params = features->parameters();
  for (const Tensor& p : head.parameters()) params.push_back(p);
  Adam opt(params, Adam::Options{1e-2});

  double first_loss = 0, last_loss = 0;
  for (int step = 0; step < 150; ++step) {
    auto [x, y] = make_batch(32, gen);
    opt.zero_grad();
    Tensor loss = bce_with_logits(head(flatten((*features)(x))), y);
    loss.backward();
    opt.step();
    if (step == 0) first_loss = loss.item();
    last_loss = loss.item();
  }
  EXPECT_LT(last_loss, first_loss * 0.5);

  features->eval();
  NoGradGuard ng;
  auto [x, y] = make_batch(400, gen);
  const std::vector<double> logits = head(flatten((*features)(x))).to_vector(), labels = y.to_vector();
  int correct = 0;
  for (size_t i = 0; i < logits.size(); ++i) correct += (logits[i] > 0) == (labels[i] > 0.5);
  const double accuracy = double(correct) / double(logits.size());
  std::printf("toy net: loss %.4f -> %.4f, held-out accuracy %.3f\n", first_loss, last_loss, accuracy);
  EXPECT_GE(accuracy, 0.95);
}

TEST(TrainToy, SameSeedSameWeightsBitwise) {
  auto run = [] {
    Generator gen(5);
    auto net = toy_net(gen);
    Linear head(16, 1, gen);
    std::vector<Tensor> params = net->parameters();
    for (const Tensor& p : head.parameters()) params.push_back(p);
    Adam opt(params, Adam::Options{1e-2});
    for (int step = 0; step < 5; ++step) {
      auto [x, y] = make_batch(8, gen);
      opt.zero_grad();
      bce_with_logits(head(flatten((*net)(x))), y).backward();
      opt.step();
    }
    std::vector<double> all;
    for (auto& [n, t] : net->state_dict()) {
      auto v = t.to_vector();
      all.insert(all.end(), v.begin(), v.end());
    }
    return all;
  };
  EXPECT_EQ(run(), run());
}

}  // namespace
}  // namespace ich
