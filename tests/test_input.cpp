// The input pipeline for a GPU (data/augment.h, data/dataset.h,
// to_device_input in engine/ops.h): batches that travel as bytes and are
// normalised on the device give the float pipeline's numbers, up to the
// rounding to bytes (half a gray level), with the same random choices; with
// no warp (size = image size, no augmentation) exactly.
#include <algorithm>
#include <cmath>
#include <filesystem>

#include "data/augment.h"
#include "data/dataset.h"
#include "engine/kernels.h"
#include "engine/ops.h"
#include "io/csv.h"
#include "io/npy.h"
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

TEST(InputPipeline, TransposeAugmentationGivesAllFourFlipsOnlyWhenAsked) {
  // a square image at its own size: a warp without rotation or colour change
  // copies pixels exactly, so each output is the image, its mirror, its
  // transpose or its mirror's transpose (or warped otherwise)
  const int S = 12, C = 1;
  const std::vector<uint8_t> img = random_image(S, S, C, 3);
  auto pick = [&](int i, int j) { return img[size_t(i * S + j)]; };
  auto matches = [&](const std::vector<uint8_t>& out, bool transpose, bool mirror) {
    for (int i = 0; i < S; ++i)
      for (int j = 0; j < S; ++j) {
        const uint8_t want = transpose ? pick(j, mirror ? S - 1 - i : i) : pick(i, mirror ? S - 1 - j : j);
        if (out[size_t(i * S + j)] != want) return false;
      }
    return true;
  };
  AugmentOptions o;
  o.size = S;
  for (bool transpose : {false, true}) {
    o.transpose = transpose;
    int seen[2][2] = {};
    for (uint64_t seed = 0; seed < 200; ++seed) {
      Generator g(seed);
      std::vector<uint8_t> out(size_t(S * S));
      augment_slice_u8(img.data(), S, S, C, o, g, out.data());
      for (bool t : {false, true})
        for (bool m : {false, true}) seen[t][m] += matches(out, t, m);
    }
    for (bool m : {false, true}) {
      EXPECT_GT(seen[0][m], 10) << "transpose " << transpose << " mirror " << m;
      if (transpose) EXPECT_GT(seen[1][m], 10) << "mirror " << m;
      else EXPECT_EQ(seen[1][m], 0) << "a transposed slice without --transpose";
    }
  }
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
  LoaderOptions lo;
  lo.batch = 4;
  lo.shuffle = lo.drop_last = true;
  lo.seed = 7;
  lo.epoch = 1;
  BatchLoader floats(ds, o, lo);
  lo.bytes = true;
  BatchLoader bytes(ds, o, lo);
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

// ich-train --context K: sample s's input is the slices s-K..s+K of its
// series in order along the normal (not in file or split order), each
// slice's three windows side by side, the edge slice standing in past the
// ends. Each image here is filled with one byte per channel (10 x slice +
// channel), so every channel of a stack names the slice it came from.
TEST(InputPipeline, ContextStacksTheNeighboursAlongTheSeriesNormal) {
  const std::string dir = (fs::temp_directory_path() / ("ich_context_" + std::to_string(::getpid()))).string();
  fs::create_directories(dir);
  const int S = 8;
  // Series A: a tilted stack of 5 (normal (0, sin t, cos t)), listed shuffled;
  // series B: one slice. Slice k of A lies at k * 5 mm along the normal.
  const double t = 0.3;
  const std::string ori = "1;0;0;0;" + fmt_double(std::cos(t), 17) + ";" + fmt_double(-std::sin(t), 17);
  CsvWriter meta(dir + "/meta.csv", {"image_id", "patient_id", "study_uid", "series_uid", "z", "position",
                                     "orientation", "status"});
  std::vector<SplitRow> rows;
  for (const int k : {3, 0, 4, 1, 2, 9}) {
    const bool b = k == 9;
    const std::string id = "ID_" + std::to_string(k);
    std::vector<uint8_t> img(size_t(S) * S * 3);
    for (size_t i = 0; i < img.size(); ++i) img[i] = uint8_t(10 * k + int(i % 3));
    write_npy_u8(dir + "/" + id + ".npy", img.data(), {S, S, 3});
    // n = row x column = (0, sin t, cos t); position = 5k n + an in-plane offset
    const double d = 5.0 * k, y = d * std::sin(t) + 7 * std::cos(t), z = d * std::cos(t) - 7 * std::sin(t);
    meta.row({id, "P", "S", b ? "B" : "A", fmt_double(z, 17),
              "3;" + fmt_double(y, 17) + ";" + fmt_double(z, 17), ori, "ok"});
    SplitRow r;
    r.image_id = id;
    rows.push_back(r);
  }
  meta.commit();
  AugmentOptions o;
  o.size = S;
  o.augment = false;
  for (const int K : {0, 1, 2}) {
    SCOPED_TRACE("K = " + std::to_string(K));
    SliceDataset ds(rows, dir);
    ds.set_context(K);
    const int C = 3 * (2 * K + 1);
    ASSERT_EQ(ds.channels(), C);
    for (size_t i = 0; i < rows.size(); ++i) {
      const int k = std::stoi(rows[i].image_id.substr(3));
      std::vector<uint8_t> x(size_t(C) * S * S);
      Generator g(0);
      ds.load_u8(i, o, g, x.data());
      for (int j = 0; j < 2 * K + 1; ++j) {
        const int want = k == 9 ? 9 : std::clamp(k + j - K, 0, 4);
        for (int c = 0; c < 3; ++c)
          for (int p = 0; p < S * S; ++p)
            ASSERT_EQ(x[size_t(3 * j + c) * S * S + size_t(p)], 10 * want + c)
                << rows[i].image_id << " block " << j << " channel " << c;
      }
    }
  }
  // A slice the geometry does not know, and no geometry at all: one clear error each.
  SplitRow stray;
  stray.image_id = "ID_7";
  SliceDataset with_stray({rows[0], stray}, dir);
  try {
    with_stray.set_context(1);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("ID_7"), std::string::npos) << e.what();
  }
  fs::remove(dir + "/meta.csv");
  SliceDataset no_meta(rows, dir);
  try {
    no_meta.set_context(1);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("meta.csv"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(no_meta.set_context(0));  // one slice at a time needs no geometry
  fs::remove_all(dir);
}

}  // namespace
}  // namespace ich
