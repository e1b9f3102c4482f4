// The PyTorch checkpoint reader on small real checkpoints written by
// torch.save in both serialisations (tests/reference/gen_checkpoint_cases.py),
// and on broken and foreign files.
#include <gtest/gtest.h>

#include <fstream>

#include "weights/torch_checkpoint.h"

namespace ich {
namespace {

const std::string kDir = std::string(ICH_SOURCE_DIR) + "/tests/fixtures/checkpoints/";

std::string bytes_of(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

std::string error_of(const std::string& bytes) {
  try {
    parse_torch_checkpoint(bytes, "case.pth");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

class CheckpointCase : public ::testing::TestWithParam<std::tuple<const char*, const char*>> {};

TEST_P(CheckpointCase, ReadsWhatTorchSaved) {
  const auto [name, format] = GetParam();
  const TorchCheckpoint ck = read_torch_checkpoint(kDir + name + "_" + format + ".pth");
  EXPECT_EQ(ck.format, format);
  const WeightsFile expected = WeightsFile::open(kDir + "expected.ichw");
  size_t n = 0;
  for (const auto& e : expected.entries()) {
    if (e.name.rfind(std::string(name) + "/", 0) != 0) continue;
    const std::string key = e.name.substr(std::string(name).size() + 1);
    ASSERT_LT(n, ck.tensors.size());
    EXPECT_EQ(ck.tensors[n].first, key);  // names, in the saved order
    const Tensor want = expected.read(e.name);
    EXPECT_EQ(ck.tensors[n].second.shape(), want.shape()) << key;
    EXPECT_EQ(ck.tensors[n].second.to_vector(), want.to_vector()) << key;
    ++n;
  }
  EXPECT_EQ(n, ck.tensors.size());
  EXPECT_GT(n, 0u);
}

INSTANTIATE_TEST_SUITE_P(TorchCheckpoint, CheckpointCase,
                         ::testing::Combine(::testing::Values("plain", "views", "half", "wrapped", "parameters"),
                                            ::testing::Values("zip", "legacy")),
                         [](const auto& i) {
                           return std::string(std::get<0>(i.param)) + "_" + std::get<1>(i.param);
                         });

TEST(TorchCheckpointErrors, TruncatedFilesNameTheProblem) {
  for (const char* f : {"plain_zip.pth", "plain_legacy.pth"}) {
    const std::string b = bytes_of(kDir + f);
    // Every cut must give an error, never a crash or a silent partial read.
    for (size_t cut = 0; cut < b.size(); cut += std::max<size_t>(1, b.size() / 97)) {
      const std::string e = error_of(b.substr(0, cut));
      EXPECT_NE(e, "") << f << " cut at " << cut;
      EXPECT_NE(e.find("case.pth"), std::string::npos) << e;
    }
  }
}

TEST(TorchCheckpointErrors, CorruptedBytesNeverCrash) {
  const std::string b = bytes_of(kDir + "wrapped_legacy.pth");
  for (size_t i = 0; i < b.size(); i += 3) {
    std::string c = b;
    c[i] = char(c[i] ^ 0x5a);
    try {
      parse_torch_checkpoint(c, "case.pth");  // may still parse when the flip hits data bytes
    } catch (const Error&) {
    }
  }
  SUCCEED();
}

TEST(TorchCheckpointErrors, ForeignFilesAreRejected) {
  EXPECT_NE(error_of(""), "");
  EXPECT_NE(error_of("hello, this is a text file\n").find("neither a zip archive nor a legacy PyTorch file"),
            std::string::npos);
  EXPECT_NE(error_of(bytes_of(kDir + "expected.ichw")).find("neither"), std::string::npos);
  // A pickle that is not a checkpoint: pickle.dumps([1, 2], protocol=2).
  EXPECT_NE(error_of(std::string("\x80\x02]q\x00(K\x01K\x02" "e.", 13)).find("not a PyTorch checkpoint"),
            std::string::npos);
}

}  // namespace
}  // namespace ich
