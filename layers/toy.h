// toy.h: the engine's smallest end-to-end job, for the first demo and tests.
//
// A synthetic two-class image problem (does a noisy 16x16 image hold a
// bright 4x4 square, or only a bright 1x4 bar?) and a small conv net that
// uses every op kind ResNeXt needs: conv, grouped conv, BatchNorm, ReLU, max
// pool, global average pool, linear, BCE with logits, Adam.
#pragma once
#include <functional>
#include <memory>

#include "engine/random.h"
#include "layers/layers.h"

namespace ich::toy {

// n images (n,1,16,16) and labels (n,1): 1 = square present.
std::pair<Tensor, Tensor> make_batch(int64_t n, Generator& gen);

// features (conv-bn-relu-pool-groupconv-bn-relu-avgpool) then flatten and a
// Linear(16,1) head.
class ToyNet : public Module {
 public:
  explicit ToyNet(Generator& gen);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "ToyNet"; }

 private:
  Sequential& features_;
  Linear& head_;
};

struct ToyOptions {
  int64_t steps = 150, batch = 32, eval_images = 400;
  double lr = 1e-2;
  uint64_t seed = 2024;
};
struct ToyResult {
  double first_loss = 0, last_loss = 0, accuracy = 0;
};
// Trains a ToyNet with Adam and measures held-out accuracy; on_step(step,
// loss) is called after every step.
ToyResult train_toy(const ToyOptions& o, const std::function<void(int64_t, double)>& on_step = nullptr);

}  // namespace ich::toy
