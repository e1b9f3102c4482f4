// The tape's rules: leaves accumulate, branches add, graphs are freed after
// backward, no-grad records nothing, errors name what went wrong.
#include "tests/test_util.h"

namespace ich {
namespace {

Tensor vec(std::vector<double> v) {
  const int64_t n = int64_t(v.size());
  return Tensor::from_vector(std::move(v), {n}, DType::Float64).set_requires_grad(true);
}

TEST(Autograd, BranchesThatJoinAdd) {
  Tensor x = vec({1, -2, 3});
  sum(add(mul(x, x), x)).backward();  // d/dx (x^2 + x) = 2x + 1
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{3, -3, 7}));
}

// The hook data-parallel training overlaps its all-reduce with: each leaf
// is reported once per backward, when its last contribution has arrived
// (x feeds three paths here), with its whole gradient by then; a leaf that
// takes no part is not reported; without the scope nothing is called.
TEST(Autograd, LeafReadyReportsEachLeafOnceWhenItsGradientIsWhole) {
  Tensor x = vec({1, -2, 3}), w = vec({2, 2, 2}), unused = vec({5});
  std::vector<std::pair<TensorImpl*, std::vector<double>>> seen;
  {
    LeafReadyScope scope([&](TensorImpl* leaf) { seen.emplace_back(leaf, Tensor(x.impl_ptr()).grad().to_vector()); });
    sum(add(mul(mul(x, w), x), x)).backward();  // d/dx (w x^2 + x) = 2 w x + 1
  }
  ASSERT_EQ(seen.size(), 2u);
  int x_seen = 0;
  for (const auto& [leaf, xgrad] : seen) {
    EXPECT_TRUE(leaf == x.impl_ptr().get() || leaf == w.impl_ptr().get());
    if (leaf == x.impl_ptr().get()) {
      ++x_seen;
      EXPECT_EQ(xgrad, (std::vector<double>{5, -7, 13}));  // whole when reported
    }
  }
  EXPECT_EQ(x_seen, 1);
  seen.clear();
  sum(scale(x, 3)).backward();  // no scope: no calls
  EXPECT_TRUE(seen.empty());
  (void)unused;
}

TEST(Autograd, LeafGradientsAccumulateUntilZeroed) {
  Tensor x = vec({1, 2});
  sum(scale(x, 3)).backward();
  sum(scale(x, 3)).backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{6, 6}));
  x.zero_grad();
  sum(scale(x, 3)).backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{3, 3}));
}

TEST(Autograd, SharedGradientIsNotCorruptedByAccumulation) {
  // add hands the same gradient tensor to both inputs; accumulating into one
  // leaf must not change the other's.
  Tensor a = vec({1, 1}), b = vec({1, 1});
  sum(add(a, b)).backward();
  sum(add(a, b)).backward();
  EXPECT_EQ(a.grad().to_vector(), (std::vector<double>{2, 2}));
  EXPECT_EQ(b.grad().to_vector(), (std::vector<double>{2, 2}));
}

TEST(Autograd, SecondBackwardThroughFreedGraphIsAnError) {
  Tensor x = vec({1, 2});
  Tensor loss = sum(relu(x));
  loss.backward();
  try {
    loss.backward();
    FAIL() << "second backward did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("second time"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("sum"), std::string::npos) << e.what();
  }
}

TEST(Autograd, RetainGraphAllowsSecondBackward) {
  Tensor x = vec({1, 2});
  Tensor loss = sum(mul(x, x));
  loss.backward(Tensor(), /*retain_graph=*/true);
  loss.backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{4, 8}));
}

TEST(Autograd, NoGradRecordsNothing) {
  Tensor x = vec({1, 2});
  NoGradGuard ng;
  Tensor y = mul(x, x);
  EXPECT_FALSE(y.requires_grad());
  EXPECT_TRUE(y.is_leaf());
}

TEST(Autograd, NoGradScopeEnds) {
  Tensor x = vec({1, 2});
  { NoGradGuard ng; }
  EXPECT_TRUE(mul(x, x).requires_grad());
}

TEST(Autograd, InputsWithoutGradGetNone) {
  Tensor x = vec({1, 2});
  Tensor c = Tensor::from_vector({5, 6}, {2}, DType::Float64);
  sum(mul(x, c)).backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{5, 6}));
  EXPECT_FALSE(c.grad().defined());
}

TEST(Autograd, NonScalarBackwardNeedsGradient) {
  Tensor x = vec({1, 2});
  EXPECT_THROW(relu(x).backward(), Error);
}

TEST(Autograd, BackwardOfConstantIsAnError) {
  Tensor c = Tensor::ones({1});
  EXPECT_THROW(c.backward(), Error);
}

TEST(Autograd, DiamondGraphRunsEachNodeOnce) {
  // x -> r = relu(x) -> (r*r) and (r+r) -> add -> sum: r feeds two branches.
  Tensor x = vec({2, -1});
  Tensor r = relu(x);
  sum(add(mul(r, r), add(r, r))).backward();  // d/dx (r^2 + 2r) = (2r + 2) * [x>0]
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{6, 0}));
}

}  // namespace
}  // namespace ich
