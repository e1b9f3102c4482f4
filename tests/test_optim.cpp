// Adam and SGD: five steps on the same parameters and gradients as
// torch.optim (tests/fixtures/ops.ichw), compared after every step.
#include "engine/ops/optim.h"
#include "tests/fixtures.h"
#include "tests/test_util.h"

namespace ich {
namespace {

using test::fx;

// Same order of float32 operations as torch.optim: agreement to rounding.
constexpr double kTol = 1e-6;

template <class Opt, class Options> void five_steps(const std::string& name, Options o) {
  SCOPED_TRACE(name);
  Tensor p = fx("optim/p0", true);
  Opt opt({p}, o);
  for (int i = 0; i < 5; ++i) {
    opt.zero_grad();
    p.set_grad(fx("optim/grad" + std::to_string(i)));
    opt.step();
    SCOPED_TRACE("after step " + std::to_string(i + 1));
    EXPECT_CLOSE(p, fx("optim/" + name + "/p" + std::to_string(i)), kTol);
  }
  EXPECT_EQ(opt.steps(), 5);
}

TEST(AdamReference, DefaultBetas) { five_steps<Adam>("adam", Adam::Options{1e-2, 0.9, 0.999, 1e-8, 0.0}); }
TEST(AdamReference, WeightDecayAndCustomBetas) {
  five_steps<Adam>("adam_wd", Adam::Options{2e-5, 0.8, 0.99, 1e-6, 1e-2});
}
TEST(SgdReference, Plain) { five_steps<Sgd>("sgd", Sgd::Options{0.1, 0.0, 0.0, 0.0, false}); }
TEST(SgdReference, MomentumDampeningWeightDecay) {
  five_steps<Sgd>("sgd_momentum_wd", Sgd::Options{0.1, 0.9, 0.1, 1e-3, false});
}
TEST(SgdReference, Nesterov) { five_steps<Sgd>("sgd_nesterov", Sgd::Options{0.05, 0.9, 0.0, 0.0, true}); }

TEST(Optimizer, SkipsParametersWithoutGradient) {
  Tensor p = Tensor::ones({3}).set_requires_grad(true);
  Adam opt({p}, {});
  opt.step();
  EXPECT_EQ(p.to_vector(), (std::vector<double>{1, 1, 1}));
}

TEST(Optimizer, RejectsNonLeafParameters) {
  Tensor p = Tensor::ones({3}).set_requires_grad(true);
  EXPECT_THROW(Adam({relu(p)}, {}), Error);
}

}  // namespace
}  // namespace ich
