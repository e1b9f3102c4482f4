// Tensor basics: shapes, strides, views, copies, dtypes, memory formats,
// the generator, and clear errors for what this build cannot do.
#include "tests/test_util.h"

namespace ich {
namespace {

// A zero size makes the element count 0, but the strides of the other sizes
// must still fit (the fuzzer found such a .npy header overflowing them).
TEST(Tensor, ShapesWhoseStridesOverflowAreAnError) {
  try {
    (void)Tensor::empty({0, 3, 111111111111, 11111111, 3, 3}, DType::UInt8);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("too large"), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)Tensor::empty({2, -1}), Error);
  EXPECT_EQ(Tensor::empty({0, 3, 1000, 1000}).strides(), (Shape{3000000, 1000000, 1000, 1}));
}

TEST(Tensor, ShapeStridesAndNumel) {
  Tensor t = Tensor::zeros({2, 3, 4, 5});
  EXPECT_EQ(t.numel(), 120);
  EXPECT_EQ(t.strides(), (Shape{60, 20, 5, 1}));
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(t.str(), "float32[2, 3, 4, 5] on cpu");
  EXPECT_EQ(t.size(-1), 5);
  EXPECT_THROW(t.size(4), Error);
}

TEST(Tensor, ChannelsLastIsTheSameLogicalTensor) {
  Generator gen(1);
  Tensor x = Tensor::randn({2, 3, 4, 5}, gen);
  Tensor nhwc = x.contiguous(MemoryFormat::ChannelsLast);
  EXPECT_EQ(nhwc.strides(), (Shape{60, 1, 15, 3}));
  EXPECT_TRUE(nhwc.is_contiguous(MemoryFormat::ChannelsLast));
  EXPECT_FALSE(nhwc.is_contiguous());
  EXPECT_EQ(nhwc.to_vector(), x.to_vector());                  // same logical values
  EXPECT_EQ(nhwc.contiguous().to_vector(), x.to_vector());     // and back
  const float* p = nhwc.data<float>();                         // memory order is N,H,W,C
  EXPECT_EQ(p[1], x.data<float>()[20]);                        // (0,1,0,0)
  // Ops take channels-last input and convert at their entry.
  EXPECT_EQ(relu(nhwc).to_vector(), relu(x).to_vector());
}

TEST(Tensor, ViewSharesStorageCloneDoesNot) {
  Tensor x = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor v = x.view({3, 2});
  Tensor c = x.clone();
  x.data<float>()[0] = 9;
  EXPECT_EQ(v.to_vector()[0], 9);
  EXPECT_EQ(c.to_vector()[0], 1);
  EXPECT_THROW(x.view({4, 2}), Error);
}

TEST(Tensor, DtypeConversions) {
  Tensor x = Tensor::from_vector({1.5, -2.25, 255}, {3}, DType::Float64);
  EXPECT_EQ(x.to(DType::Float32).to_vector(), (std::vector<double>{1.5, -2.25, 255}));
  EXPECT_EQ(x.to(DType::Int64).to_vector(), (std::vector<double>{1, -2, 255}));
  EXPECT_EQ(Tensor::full({2}, 7, DType::UInt8).to_vector(), (std::vector<double>{7, 7}));
  EXPECT_EQ(dtype_size(DType::BFloat16), 2u);
  EXPECT_THROW(x.data<float>(), Error);  // wrong type asked
}

TEST(Tensor, GeneratorIsReproducibleAndRestorable) {
  Generator a(42), b(42);
  EXPECT_EQ(Tensor::randn({10}, a).to_vector(), Tensor::randn({10}, b).to_vector());
  const Generator::State s = a.state();
  const double next = a.normal();
  a.set_state(s);
  EXPECT_EQ(a.normal(), next);
  Generator c(43);
  EXPECT_NE(Tensor::randn({10}, c).to_vector(), Tensor::randn({10}, a).to_vector());
  // Sample moments of a large draw.
  std::vector<double> v = Tensor::randn({100000}, a, DType::Float64).to_vector();
  double m = 0, s2 = 0;
  for (double e : v) m += e;
  m /= double(v.size());
  for (double e : v) s2 += (e - m) * (e - m);
  EXPECT_NEAR(m, 0.0, 0.02);
  EXPECT_NEAR(std::sqrt(s2 / double(v.size())), 1.0, 0.02);
}

TEST(Tensor, MissingCudaIsAClearError) {
#ifndef ICH_WITH_CUDA
  try {
    Tensor::zeros({2}, DType::Float32, Device::cuda());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("CUDA"), std::string::npos) << e.what();
  }
#else
  GTEST_SKIP() << "this build has the CUDA backend; tests/cuda covers it";
#endif
}

TEST(Tensor, OpsRejectMismatchedArguments) {
  Tensor a = Tensor::zeros({2, 3}), b = Tensor::zeros({3, 2});
  EXPECT_THROW(add(a, b), Error);
  EXPECT_THROW(add(a, Tensor::zeros({2, 3}, DType::Float64)), Error);
  EXPECT_THROW(conv2d(Tensor::zeros({1, 3, 4, 4}), Tensor::zeros({4, 2, 3, 3}), Tensor(), {}), Error);
  EXPECT_THROW(conv2d(Tensor::zeros({1, 3, 2, 2}), Tensor::zeros({4, 3, 3, 3}), Tensor(), {}), Error);
  EXPECT_THROW(linear(Tensor::zeros({2, 5}), Tensor::zeros({3, 4}), Tensor()), Error);
}

}  // namespace
}  // namespace ich
