// report/: the TensorBoard event file's framing against its definition (the
// CRC-32C check value of the standard, the TFRecord layout); that TensorBoard
// itself reads what ich-train writes is tests/tensorboard_e2e.sh's job.
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "report/tensorboard.h"
#include "tests/test_util.h"

namespace ich {
namespace {

namespace fs = std::filesystem;

TEST(TensorBoard, Crc32cHasTheCastagnoliCheckValue) {
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);  // the check value of CRC-32C (RFC 3720, B.4)
  EXPECT_EQ(crc32c("", 0), 0u);
  const std::string zeros(32, '\0');
  EXPECT_EQ(crc32c(zeros.data(), 32), 0x8A9136AAu);  // RFC 3720 B.4: 32 bytes of zeros
}

TEST(TensorBoard, RecordsAreFramedAsTfRecords) {
  const std::string dir = (fs::temp_directory_path() / ("ich_tb_" + std::to_string(::getpid()))).string();
  std::string path;
  {
    EventFileWriter w(dir);
    w.scalar("valid/loss", 0.25, 7, 1e9);
    w.flush();
    path = w.path();
  }
  EXPECT_EQ(fs::path(path).filename().string().rfind("events.out.tfevents.", 0), 0u);
  std::ifstream f(path, std::ios::binary);
  const std::string b(std::istreambuf_iterator<char>(f), {});
  auto unmask = [](uint32_t m) {
    const uint32_t r = m - 0xa282ead8u;
    return (r >> 17) | (r << 15);
  };
  size_t at = 0;
  int records = 0;
  while (at < b.size()) {
    ASSERT_LE(at + 12, b.size());
    uint64_t len = 0;
    uint32_t len_crc = 0, data_crc = 0;
    std::memcpy(&len, b.data() + at, 8);
    std::memcpy(&len_crc, b.data() + at + 8, 4);
    EXPECT_EQ(unmask(len_crc), crc32c(b.data() + at, 8));
    ASSERT_LE(at + 12 + len + 4, b.size());
    std::memcpy(&data_crc, b.data() + at + 12 + len, 4);
    EXPECT_EQ(unmask(data_crc), crc32c(b.data() + at + 12, len));
    if (records == 1) {  // the scalar: its tag and its float32 value are in the record
      const std::string rec = b.substr(at + 12, len);
      EXPECT_NE(rec.find("valid/loss"), std::string::npos);
      const float v = 0.25f;
      EXPECT_NE(rec.find(std::string(reinterpret_cast<const char*>(&v), 4)), std::string::npos);
    }
    at += 12 + len + 4;
    ++records;
  }
  EXPECT_EQ(records, 2);  // file_version, then the scalar
  EXPECT_NE(b.find("brain.Event:2"), std::string::npos);
  fs::remove_all(dir);
}

TEST(TensorBoard, LogColumnsMapToTags) {
  EXPECT_EQ(tensorboard_tag("train_loss"), "train/loss");
  EXPECT_EQ(tensorboard_tag("valid_weighted_log_loss"), "valid/weighted_log_loss");
  EXPECT_EQ(tensorboard_tag("valid_auc_epidural"), "valid/auc_epidural");
  EXPECT_EQ(tensorboard_tag("lr"), "lr");
  EXPECT_EQ(tensorboard_tag("epoch"), "");
  EXPECT_EQ(tensorboard_tag("wall_time"), "");
}

}  // namespace
}  // namespace ich
