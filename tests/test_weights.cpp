// The flat weights format: round trips, and every kind of bad file gives a
// clear error naming the file and entry, never a crash or a partial load.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "engine/init.h"
#include "io/atomic_file.h"
#include "layers/layers.h"
#include "weights/weights_file.h"

namespace ich {
namespace {

namespace fs = std::filesystem;

class WeightsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ich_weights_test_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& n) const { return (dir_ / n).string(); }
  NamedTensors sample() const {
    Generator gen(1);
    return {{"conv.weight", Tensor::randn({4, 3, 3, 3}, gen)},
            {"bn.running_var", Tensor::randn({4}, gen, DType::Float64)},
            {"bn.num_batches_tracked", Tensor::full({}, 7, DType::Int64)},
            {"image", Tensor::full({2, 5}, 200, DType::UInt8)}};
  }
  std::string bytes(const std::string& p) const {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
  }
  void put(const std::string& p, const std::string& b) const { std::ofstream(p, std::ios::binary) << b; }
  std::string error_of(const std::function<void()>& f) const {
    try {
      f();
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }
  fs::path dir_;
};

TEST_F(WeightsTest, RoundTripKeepsNamesShapesDtypesAndValues) {
  write_weights(path("a.ichw"), sample());
  const WeightsFile f = WeightsFile::open(path("a.ichw"));
  ASSERT_EQ(f.entries().size(), 4u);
  for (const auto& [name, t] : sample()) {
    const Tensor r = f.read(name);
    EXPECT_EQ(r.shape(), t.shape()) << name;
    EXPECT_EQ(r.dtype(), t.dtype()) << name;
    EXPECT_EQ(r.to_vector(), t.to_vector()) << name;
  }
  for (const auto& e : f.entries()) EXPECT_EQ(e.offset % 64, 0u) << e.name;
  EXPECT_FALSE(fs::exists(path("a.ichw.tmp." + std::to_string(::getpid()))));
}

TEST_F(WeightsTest, TruncatedFileIsRejectedWithEntryName) {
  write_weights(path("a.ichw"), sample());
  std::string b = bytes(path("a.ichw"));
  put(path("t.ichw"), b.substr(0, b.size() - 10));
  const std::string e = error_of([&] { WeightsFile::open(path("t.ichw")); });
  EXPECT_NE(e.find("truncated"), std::string::npos) << e;
  EXPECT_NE(e.find("t.ichw"), std::string::npos) << e;
  put(path("h.ichw"), b.substr(0, 20));
  EXPECT_NE(error_of([&] { WeightsFile::open(path("h.ichw")); }).find("too short"), std::string::npos);
}

TEST_F(WeightsTest, CorruptedDataFailsItsChecksum) {
  write_weights(path("a.ichw"), sample());
  std::string b = bytes(path("a.ichw"));
  const WeightsFile f = WeightsFile::open(path("a.ichw"));
  b[size_t(f.find("conv.weight")->offset + 5)] ^= 0x40;
  put(path("c.ichw"), b);
  const WeightsFile g = WeightsFile::open(path("c.ichw"));  // table still fine
  const std::string e = error_of([&] { g.read("conv.weight"); });
  EXPECT_NE(e.find("'conv.weight' checksum mismatch"), std::string::npos) << e;
  EXPECT_NO_THROW(g.read("image"));
}

TEST_F(WeightsTest, CorruptedTableAndForeignFilesAreRejected) {
  write_weights(path("a.ichw"), sample());
  std::string b = bytes(path("a.ichw"));
  b[40] ^= 1;
  put(path("c.ichw"), b);
  EXPECT_NE(error_of([&] { WeightsFile::open(path("c.ichw")); }).find("table checksum"), std::string::npos);
  put(path("f.ichw"), std::string("PK\x03\x04 this is a zip, not ours") + std::string(64, 'x'));
  EXPECT_NE(error_of([&] { WeightsFile::open(path("f.ichw")); }).find("bad magic"), std::string::npos);
  EXPECT_NE(error_of([&] { WeightsFile::open(path("missing.ichw")); }).find("cannot open"), std::string::npos);
  put(path("empty.ichw"), "");
  EXPECT_NE(error_of([&] { WeightsFile::open(path("empty.ichw")); }).find("too short"), std::string::npos);
}

TEST_F(WeightsTest, LoadIntoChecksEveryNameAndShapeAndChangesNothingOnError) {
  Generator gen(3);
  Linear a(5, 3, gen), b(5, 3, gen), wrong(4, 3, gen);
  write_weights(path("lin.ichw"), a.state_dict());
  const WeightsFile f = WeightsFile::open(path("lin.ichw"));
  f.load_into(b.state_dict());
  EXPECT_EQ(b.weight.to_vector(), a.weight.to_vector());

  const std::vector<double> before = wrong.bias.to_vector();
  std::string e = error_of([&] { f.load_into(wrong.state_dict()); });
  EXPECT_NE(e.find("entry 'weight' has shape [3, 5], the model expects [3, 4]"), std::string::npos) << e;
  EXPECT_EQ(wrong.bias.to_vector(), before);  // untouched

  NamedTensors extra = b.state_dict();
  extra.emplace_back("head.weight", Tensor::zeros({2}));
  e = error_of([&] { f.load_into(extra); });
  EXPECT_NE(e.find("missing entry 'head.weight'"), std::string::npos) << e;
  NamedTensors fewer{b.state_dict()[0]};
  e = error_of([&] { f.load_into(fewer); });
  EXPECT_NE(e.find("unexpected entry 'bias'"), std::string::npos) << e;
  EXPECT_NO_THROW(f.load_into(extra, /*strict=*/false));
}

TEST_F(WeightsTest, LoadIntoReadsStraightIntoTargetsConvertsOthersAndChecksEveryChecksum) {
  write_weights(path("a.ichw"), sample());
  const WeightsFile f = WeightsFile::open(path("a.ichw"));
  const NamedTensors want = sample();
  // Same dtype, contiguous: read in place. Another dtype: staged and converted.
  Tensor direct = Tensor::zeros({4, 3, 3, 3});
  Tensor converted = Tensor::zeros({4}, DType::Float32);
  f.load_into({{"conv.weight", direct}, {"bn.running_var", converted}}, /*strict=*/false);
  EXPECT_EQ(direct.to_vector(), want[0].second.to_vector());
  EXPECT_EQ(converted.to_vector(), want[1].second.to(DType::Float32).to_vector());

  std::string b = bytes(path("a.ichw"));
  b[size_t(f.find("conv.weight")->offset + 9)] ^= 0x10;
  put(path("c.ichw"), b);
  const WeightsFile g = WeightsFile::open(path("c.ichw"));
  const std::string e = error_of([&] { g.load_into({{"conv.weight", direct}}, /*strict=*/false); });
  EXPECT_NE(e.find("c.ichw: entry 'conv.weight' checksum mismatch"), std::string::npos) << e;
  const std::string e2 = error_of([&] { g.read_all(); });
  EXPECT_NE(e2.find("'conv.weight' checksum mismatch"), std::string::npos) << e2;
}

// The initialisers fill CPU tensors in place; the numbers are the sampled
// tensors' of the general path (randn in the dtype, scaled in double).
TEST(Initialisers, InPlaceFillEqualsTheSampledTensors) {
  for (DType dt : {DType::Float32, DType::Float64}) {
    Generator g1(7), g2(7);
    Tensor w = Tensor::empty({8, 4, 3, 3}, dt);
    kaiming_normal_fan_out(w, g1);
    std::vector<double> want = Tensor::randn({8, 4, 3, 3}, g2, dt).to_vector();
    for (double& v : want) v *= std::sqrt(2.0 / (8 * 9));
    EXPECT_EQ(w.to_vector(), Tensor::from_vector(want, {8, 4, 3, 3}, dt).to_vector()) << dtype_name(dt);
    Tensor lw = Tensor::empty({3, 5}, dt), lb = Tensor::empty({3}, dt);
    linear_default(lw, lb, g1);
    const double bound = 1.0 / std::sqrt(5.0);
    EXPECT_EQ(lw.to_vector(), Tensor::uniform({3, 5}, -bound, bound, g2, dt).to_vector());
    EXPECT_EQ(lb.to_vector(), Tensor::uniform({3}, -bound, bound, g2, dt).to_vector());
  }
}

TEST(SkipInit, DrawsNothingInsideAndIsRestoredAfter) {
  Generator plain(5), skipped(5);
  const Linear reference(6, 4, plain);
  {
    const SkipInitGuard no_init;
    EXPECT_TRUE(SkipInitGuard::active());
    const Conv2d c(3, 8, 3, 1, 1, 1, false, skipped);
    const Linear l(6, 4, skipped);
    (void)c, (void)l;
  }
  EXPECT_FALSE(SkipInitGuard::active());
  const Linear after(6, 4, skipped);  // the generator was not advanced inside
  EXPECT_EQ(after.weight.to_vector(), reference.weight.to_vector());
  EXPECT_EQ(after.bias.to_vector(), reference.bias.to_vector());
}

TEST_F(WeightsTest, FailedWriteLeavesNoFile) {
  const std::string p = path("no/such/dir/x.ichw");
  EXPECT_THROW(write_weights(p, sample()), Error);
  EXPECT_FALSE(fs::exists(p));
  // A writer abandoned before commit removes its temporary and leaves the
  // old file as it was.
  write_file_atomic(path("keep.txt"), "old");
  {
    AtomicFile f(path("keep.txt"));
    f.write("new, half", 9);
  }
  EXPECT_EQ(bytes(path("keep.txt")), "old");
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator{}), 1);
}

TEST_F(WeightsTest, DuplicateNamesAreRejected) {
  NamedTensors d{{"w", Tensor::zeros({1})}, {"w", Tensor::zeros({1})}};
  EXPECT_NE(error_of([&] { write_weights(path("d.ichw"), d); }).find("appears twice"), std::string::npos);
}

}  // namespace
}  // namespace ich
