// The PyTorch checkpoint reader on small real checkpoints written by
// torch.save in both serialisations (tests/reference/gen_checkpoint_cases.py),
// and on broken and foreign files.
#include <gtest/gtest.h>

#include <fstream>

#include "weights/onnx.h"
#include "weights/torch_checkpoint.h"
#include "weights/torch_writer.h"
#include "weights/zip_reader.h"

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



// The writer (ich-export --pth) read back by the reader above: names in
// order, shapes, dtypes and every bit; the data of each entry 64-byte
// aligned as torch.save aligns it. PyTorch's own torch.load is the check in
// tests/export_check.py.
TEST(TorchWriter, StateDictReadsBackBitForBitWithAlignedData) {
  NamedTensors sd;
  std::vector<float> w(2 * 3 * 5);
  for (size_t i = 0; i < w.size(); ++i) w[i] = float(i) * 0.37f - 4.1f;
  sd.emplace_back("conv.weight", Tensor::from_data(w.data(), {2, 3, 5}));
  const double d[3] = {1e-300, -2.5, 3.0};
  sd.emplace_back("layer.0.bn.running_var", Tensor::from_data(d, {3}));
  const int64_t steps = int64_t(1) << 40;
  sd.emplace_back("bn.num_batches_tracked", Tensor::from_data(&steps, {}));
  const int64_t small[2] = {-7, 300};
  sd.emplace_back("ints", Tensor::from_data(small, {2}));
  const std::string bytes = torch_state_dict_bytes(sd);
  const TorchCheckpoint back = parse_torch_checkpoint(bytes, "written.pth");
  EXPECT_EQ(back.format, "zip");
  ASSERT_EQ(back.tensors.size(), sd.size());
  for (size_t k = 0; k < sd.size(); ++k) {
    EXPECT_EQ(back.tensors[k].first, sd[k].first);
    EXPECT_EQ(back.tensors[k].second.shape(), sd[k].second.shape()) << sd[k].first;
    EXPECT_EQ(back.tensors[k].second.dtype(), sd[k].second.dtype()) << sd[k].first;
    EXPECT_EQ(back.tensors[k].second.to_vector(), sd[k].second.to_vector()) << sd[k].first;
  }
  for (const ZipEntry& e : read_zip_directory(bytes, "written.pth")) {
    if (e.name.rfind("archive/data/", 0) == 0) {
      EXPECT_EQ(e.data_offset % 64, 0u) << e.name;
    }
  }
}

TEST(TorchWriter, RefusesDtypesTorchStoragesDoNotHaveHere) {
  NamedTensors sd;
  const uint8_t b[2] = {1, 2};
  sd.emplace_back("mask", Tensor::from_data(b, {2}));
  try {
    torch_state_dict_bytes(sd);
    FAIL() << "uint8 written";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("mask"), std::string::npos) << e.what();
  }
}

// Protobuf's wire format as its documentation spells it out: 150 in field 1
// is 08 96 01; a string "testing" in field 2 is 12 07 74 65 73 74 69 6e 67;
// a negative int64 is ten bytes of two's complement.
TEST(OnnxWire, VarintsAndFieldsAreProtobufs) {
  std::string o;
  onnx::wire::field_varint(o, 1, 150);
  EXPECT_EQ(o, std::string("\x08\x96\x01", 3));
  o.clear();
  onnx::wire::field_bytes(o, 2, "testing");
  EXPECT_EQ(o, std::string("\x12\x07testing", 9));
  o.clear();
  onnx::wire::varint(o, uint64_t(int64_t(-1)));
  EXPECT_EQ(o, std::string(9, '\xff') + std::string("\x01", 1));
  o.clear();
  onnx::wire::field_fixed32(o, 2, 0x3f800000u);  // 1.0f
  EXPECT_EQ(o, std::string("\x15\x00\x00\x80\x3f", 5));
}

}  // namespace
}  // namespace ich
