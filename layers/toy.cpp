#include "layers/toy.h"

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/ops/optim.h"

namespace ich::toy {

std::pair<Tensor, Tensor> make_batch(int64_t n, Generator& gen) {
  std::vector<double> x(static_cast<size_t>(n * 256)), y(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    double* img = x.data() + i * 256;
    for (int j = 0; j < 256; ++j) img[j] = 0.3 * gen.normal();
    const bool square = gen.uniform() < 0.5;
    const int64_t r = int64_t(gen.below(12)), c = int64_t(gen.below(12));
    for (int a = 0; a < 4; ++a)
      for (int b = 0; b < 4; ++b)
        if (square || a == 1) img[(r + a) * 16 + (c + b)] += 1.0;
    y[size_t(i)] = square ? 1.0 : 0.0;
  }
  return {Tensor::from_vector(x, {n, 1, 16, 16}), Tensor::from_vector(y, {n, 1})};
}

namespace {
std::shared_ptr<Sequential> features(Generator& gen) {
  auto f = std::make_shared<Sequential>();
  f->add(std::make_shared<Conv2d>(1, 8, 3, 1, 1, 1, false, gen));
  f->add(std::make_shared<BatchNorm2d>(8));
  f->add(std::make_shared<ReLU>());
  f->add(std::make_shared<MaxPool2d>(3, 2, 1));
  f->add(std::make_shared<Conv2d>(8, 16, 3, 1, 1, 4, false, gen));  // grouped, as ResNeXt
  f->add(std::make_shared<BatchNorm2d>(16));
  f->add(std::make_shared<ReLU>());
  f->add(std::make_shared<AdaptiveAvgPool2d>());
  return f;
}
}  // namespace

ToyNet::ToyNet(Generator& gen)
    : features_(register_module("features", features(gen))),
      head_(register_module("head", std::make_shared<Linear>(16, 1, gen))) {}

Tensor ToyNet::forward(const Tensor& x) { return head_(flatten(features_(x))); }

ToyResult train_toy(const ToyOptions& o, const std::function<void(int64_t, double)>& on_step) {
  Generator gen(o.seed);
  ToyNet net(gen);
  Adam opt(net.parameters(), Adam::Options{o.lr});
  ToyResult r;
  for (int64_t step = 0; step < o.steps; ++step) {
    auto [x, y] = make_batch(o.batch, gen);
    opt.zero_grad();
    Tensor loss = bce_with_logits(net(x), y);
    loss.backward();
    opt.step();
    const double l = loss.item();
    if (step == 0) r.first_loss = l;
    r.last_loss = l;
    if (on_step) on_step(step, l);
  }
  net.eval();
  NoGradGuard no_grad;
  auto [x, y] = make_batch(o.eval_images, gen);
  const std::vector<double> logits = net(x).to_vector(), labels = y.to_vector();
  int64_t correct = 0;
  for (size_t i = 0; i < logits.size(); ++i) correct += (logits[i] > 0) == (labels[i] > 0.5);
  r.accuracy = double(correct) / double(logits.size());
  return r;
}

}  // namespace ich::toy
