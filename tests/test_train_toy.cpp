// End to end on the CPU: the toy conv net (layers/toy.h: conv, grouped conv,
// BN, ReLU, pools, linear, BCE, Adam) learns squares vs bars.
#include "layers/toy.h"
#include "tests/test_util.h"

namespace ich {
namespace {

TEST(TrainToy, SmallConvNetLearnsSquaresVsBars) {
  const toy::ToyResult r = toy::train_toy({});
  std::printf("toy net: loss %.4f -> %.4f, held-out accuracy %.3f\n", r.first_loss, r.last_loss, r.accuracy);
  EXPECT_LT(r.last_loss, r.first_loss * 0.5);
  EXPECT_GE(r.accuracy, 0.95);
}

TEST(TrainToy, FewStepsDoNotReachTheTarget) {
  // The accuracy bar above is not trivially met: 3 steps stay near chance.
  toy::ToyOptions o;
  o.steps = 3;
  EXPECT_LT(toy::train_toy(o).accuracy, 0.9);
}

TEST(TrainToy, SameSeedSameLossesBitwise) {
  toy::ToyOptions o;
  o.steps = 6;
  o.batch = 8;
  auto run = [&] {
    std::vector<double> losses;
    toy::train_toy(o, [&](int64_t, double l) { losses.push_back(l); });
    return losses;
  };
  EXPECT_EQ(run(), run());
}

}  // namespace
}  // namespace ich
