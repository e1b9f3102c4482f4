// The input pipeline for a GPU (data/augment.h, data/dataset.h,
// to_device_input in engine/ops.h): batches that travel as bytes and are
// normalised on the device give the float pipeline's numbers, up to the
// rounding to bytes (half a gray level), with the same random choices; with
// no warp (size = image size, no augmentation) exactly.
#include <filesystem>

#include "data/augment.h"
#include "data/dataset.h"
#include "data/npy.h"
#include "engine/kernels.h"
#include "engine/ops.h"
#include "tests/test_util.h"

namespace ich {
namespace {

namespace fs = std::filesystem;

std::vector<uint8_t> random_image(int h, int w, int c, uint64_t seed) {
  Generator g(seed);
  std::vector<uint8_t> img(size_t(h) * w * c);
  for (auto& v : img) v = uint8_t(g.below(256));
  return img;
}

// The largest input difference half a gray level can make after normalisation.
double half_level() { return 0.5 / 255.0 / 0.224 + 1e-6; }

// The header the fuzzer found: a 0 first size hid a 10^20-element rest from
// the plausibility check; it is one clear error now.
TEST(Npy, AZeroSizeDoesNotHideAnImplausibleShape) {
  std::string header = "{'descr': '|u1', 'fortran_order': False, 'shape': (0, 3, 111111111111, 11111111, 3, 3), }";
  header.resize(118, ' ');
  header += '\n';
  std::string bytes = std::string("\x93NUMPY\x01\x00", 8) + char(header.size() & 0xff) + char(header.size() >> 8) + header;
  try {
    (void)parse_npy(bytes, "fuzz.npy");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("implausible shape"), std::string::npos) << e.what();
  }
}

TEST(InputPipeline, BytesThenNormaliseEqualsTheFloatPathExactlyWithoutAWarp) {
  const int S = 16, C = 3;
  const std::vector<uint8_t> img = random_image(S, S, C, 1);
  AugmentOptions o;
  o.size = S;
  o.augment = false;
  Generator g1(0), g2(0);
  std::vector<float> want(size_t(C) * S * S);
  augment_slice(img.data(), S, S, C, o, g1, want.data());
  Tensor bytes = Tensor::empty({1, C, S, S}, DType::UInt8);
  augment_slice_u8(img.data(), S, S, C, o, g2, bytes.data<uint8_t>());
  Tensor got = Tensor::empty({1, C, S, S});
  cpu::normalize_u8(bytes, got);
  for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(got.data<float>()[i], want[i]) << i;
  // and the bytes are the image, channels first
  EXPECT_EQ(bytes.data<uint8_t>()[1 * S * S + 2 * S + 5], img[(2 * S + 5) * C + 1]);
}

TEST(InputPipeline, AugmentedBytesFollowTheFloatPathWithinHalfAGrayLevel) {
  const int H = 40, W = 56, C = 3, S = 32;
  const std::vector<uint8_t> img = random_image(H, W, C, 2);
  AugmentOptions o;
  o.size = S;
  double worst = 0;
  for (uint64_t seed = 0; seed < 20; ++seed) {  // flips, rotations, brightness: all drawn the same way
    Generator g1(seed), g2(seed);
    std::vector<float> want(size_t(C) * S * S);
    augment_slice(img.data(), H, W, C, o, g1, want.data());
    Tensor bytes = Tensor::empty({1, C, S, S}, DType::UInt8);
    augment_slice_u8(img.data(), H, W, C, o, g2, bytes.data<uint8_t>());
    EXPECT_EQ(g1.uniform(), g2.uniform());  // the same number of draws
    Tensor got = Tensor::empty({1, C, S, S});
    cpu::normalize_u8(bytes, got);
    for (size_t i = 0; i < want.size(); ++i) worst = std::max(worst, double(std::fabs(got.data<float>()[i] - want[i])));
  }
  EXPECT_LE(worst, half_level());
  EXPECT_GT(worst, 0);  // the bytes really are rounded
}

TEST(InputPipeline, BytesLoaderGivesTheFloatLoadersBatches) {
  const std::string dir = (fs::temp_directory_path() / ("ich_input_" + std::to_string(::getpid()))).string();
  fs::create_directories(dir);
  std::vector<SplitRow> rows;
  for (int i = 0; i < 10; ++i) {
    const std::vector<uint8_t> img = random_image(24, 24, 3, 10 + uint64_t(i));
    SplitRow r;
    r.image_id = "img" + std::to_string(i);
    r.y[0] = i % 2;
    write_npy_u8(dir + "/" + r.image_id + ".npy", img.data(), {24, 24, 3});
    rows.push_back(r);
  }
  SliceDataset ds(rows, dir);
  AugmentOptions o;
  o.size = 20;
  BatchLoader floats(ds, o, 4, true, true, 7, 1, 0, 2, 4, /*bytes=*/false);
  BatchLoader bytes(ds, o, 4, true, true, 7, 1, 0, 2, 4, /*bytes=*/true);
  Batch a, b;
  int batches = 0;
  while (floats.next(a)) {
    ASSERT_TRUE(bytes.next(b));
    EXPECT_EQ(a.samples, b.samples);
    EXPECT_EQ(b.x.dtype(), DType::UInt8);
    EXPECT_EQ(a.y.to_vector(), b.y.to_vector());
    const Tensor x = to_device_input(b.x, Device::cpu());
    EXPECT_EQ(x.dtype(), DType::Float32);
    EXPECT_CLOSE(x, a.x, half_level() * 3);  // abs error over max |x| (~2.6): within half a gray level
    ++batches;
  }
  EXPECT_EQ(batches, 2);
  EXPECT_FALSE(bytes.next(b));
  // float batches pass through unchanged
  EXPECT_EQ(to_device_input(a.x, Device::cpu()).to_vector(), a.x.to_vector());
  fs::remove_all(dir);
}

}  // namespace
}  // namespace ich
