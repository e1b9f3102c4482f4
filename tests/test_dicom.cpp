// ich-window against pydicom + numpy on real DICOM files (Debian's pydicom
// test data: explicit/implicit little endian, big endian, RLE, deflate, CT
// and MR), and bad files landing in errors.csv. The reference is written into
// the build folder by tests/reference/gen_dicom_reference.py before these
// tests run (see tests/CMakeLists.txt).
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "data/series.h"
#include "dicom/window_slice.h"
#include "io/csv.h"
#include "io/npy.h"
#include "tests/test_util.h"
#include "weights/weights_file.h"

namespace ich {
namespace {

namespace fs = std::filesystem;
const std::string kRef = ICH_DICOM_REF_DIR;
const std::string kBin = ICH_BIN_DIR;

std::vector<std::pair<std::string, std::string>> good_files() {  // file name, SOPInstanceUID
  std::vector<std::pair<std::string, std::string>> out;
  std::ifstream in(kRef + "/ids.txt");
  std::string line;
  while (std::getline(in, line)) {
    const size_t c = line.find(',');
    out.emplace_back(line.substr(0, c), line.substr(c + 1));
  }
  return out;
}

TEST(IchWindow, MatchesPydicomWithinOneGrayLevel) {
  const WeightsFile expected = WeightsFile::open(kRef + "/expected.ichw");
  const auto files = good_files();
  ASSERT_GE(files.size(), 9u);
  int with_geometry = 0;
  for (const auto& [name, uid] : files) {
    SCOPED_TRACE(name);
    const std::string out = kRef + "/out_" + name;
    fs::remove_all(out);
    const std::string cmd =
        kBin + "/ich-window --any-modality --input " + kRef + "/input/" + name + " --out " + out + " 2>/dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    // Hounsfield units (pixels after the modality LUT) are exact.
    const DicomSlice s = read_dicom(kRef + "/input/" + name);
    EXPECT_EQ(Tensor::from_data(hounsfield(s).data(), {s.rows, s.cols}).to_vector(),
              expected.read(name + "/hu").to_vector());
    const Tensor got = read_npy(out + "/" + uid + ".npy");
    const Tensor want = expected.read(name + "/u8");
    ASSERT_EQ(got.shape(), want.shape());
    const std::vector<double> g = got.to_vector(), w = want.to_vector();
    double worst = 0;
    for (size_t i = 0; i < g.size(); ++i) worst = std::max(worst, std::fabs(g[i] - w[i]));
    EXPECT_LE(worst, 1.0);
    // The geometry in meta.csv is pydicom's ImagePositionPatient and ImageOrientationPatient.
    if (expected.find(name + "/ipp")) {
      const std::vector<SliceGeometry> g = read_geometry(read_csv(out + "/meta.csv"));
      ASSERT_EQ(g.size(), 1u);
      ASSERT_TRUE(g[0].has_position && g[0].has_orientation);
      const std::vector<double> ipp = expected.read(name + "/ipp").to_vector(), iop = expected.read(name + "/iop").to_vector();
      for (size_t i = 0; i < 3; ++i) EXPECT_NEAR(g[0].position[i], ipp[i], 1e-9 * (1 + std::fabs(ipp[i])));
      for (size_t i = 0; i < 6; ++i) EXPECT_NEAR(g[0].orientation[i], iop[i], 1e-9);
      ++with_geometry;
    }
  }
  EXPECT_GE(with_geometry, 4);  // CT_small, MR_small and the dicomdir CT series have it
}

TEST(IchWindow, BadFilesLandInErrorsCsvWithAReason) {
  const std::string out = kRef + "/out_all";
  fs::remove_all(out);
  const std::string cmd = kBin + "/ich-window --any-modality --input " + kRef + "/input --out " + out + " > /dev/null 2>&1";
  EXPECT_EQ(WEXITSTATUS(std::system(cmd.c_str())), 3);  // finished, some files failed
  const CsvTable errors = read_csv(out + "/errors.csv");
  std::map<std::string, std::string> reason;
  for (const auto& r : errors.rows) reason[fs::path(r[0]).filename().string()] = r[1];
  for (const char* bad : {"bad_MR_truncated.dcm", "bad_no_meta.dcm", "bad_empty.dcm", "bad_random.bin",
                          "bad_readme.txt"}) {
    ASSERT_TRUE(reason.count(bad)) << bad;
    EXPECT_FALSE(reason[bad].empty()) << bad;
  }
  EXPECT_NE(reason["bad_MR_truncated.dcm"].find("truncated"), std::string::npos) << reason["bad_MR_truncated.dcm"];
  // The MR files share one SOPInstanceUID: the first wins, the others are duplicates.
  EXPECT_NE(reason["good02_MR_small_implicit.dcm"].find("duplicate image id"), std::string::npos);
  const CsvTable meta = read_csv(out + "/meta.csv");
  EXPECT_EQ(meta.rows.size(), 14u);  // one row per input, ok or error
  int ok = 0;
  for (const auto& r : meta.rows) ok += r[meta.column("status")] == "ok";
  EXPECT_EQ(ok, 6);
}

// Without --any-modality only CT is converted: the MR files get one line
// each in errors.csv that says so, the CT files are converted.
TEST(IchWindow, OnlyCtWithoutAnyModality) {
  const std::string out = kRef + "/out_ct_only";
  fs::remove_all(out);
  const std::string cmd = kBin + "/ich-window --input " + kRef + "/input --out " + out + " > /dev/null 2>&1";
  EXPECT_EQ(WEXITSTATUS(std::system(cmd.c_str())), 3);
  const CsvTable errors = read_csv(out + "/errors.csv");
  int mr = 0;
  for (const auto& r : errors.rows)
    if (r[1] == "Modality MR is not CT (--any-modality converts it anyway)") ++mr;
  EXPECT_EQ(mr, 4);  // MR_small in four encodings
  const CsvTable meta = read_csv(out + "/meta.csv");
  int ct = 0;
  for (const auto& r : meta.rows) ct += r[meta.column("modality")] == "CT" && r[meta.column("status")] == "ok";
  EXPECT_EQ(ct, 4);  // CT_small and the three dicomdir CT slices
}

TEST(Windowing, FormulaEdgesAndNoMinMaxScaling) {
  const Window brain{40, 80};
  EXPECT_EQ(window_hu_to_u8(-1000, brain), 0);
  EXPECT_EQ(window_hu_to_u8(0, brain), 0);
  EXPECT_EQ(window_hu_to_u8(40, brain), 128);  // 127.5 rounds up
  EXPECT_EQ(window_hu_to_u8(80, brain), 255);
  EXPECT_EQ(window_hu_to_u8(3000, brain), 255);
  // A fully clipped image stays 0 (the seed divided by zero here).
  const std::vector<uint8_t> air = window_image(std::vector<float>(16, -1000.f), {brain}, false);
  for (uint8_t v : air) EXPECT_EQ(v, 0);
  EXPECT_EQ(window_image({60.f}, {brain}, true)[0], 255 - window_hu_to_u8(60, brain));  // MONOCHROME1
  EXPECT_EQ(windows_str(parse_windows("brain,subdural,soft")), "40/80;80/200;40/380");
  EXPECT_EQ(windows_str(parse_windows("35/70,600/2800")), "35/70;600/2800");
  EXPECT_TRUE(parse_windows("dicom").empty());
  EXPECT_THROW(parse_windows("brain,40"), Error);
  EXPECT_THROW(parse_windows("40/0"), Error);
}

TEST(Windowing, BilinearResizeKeepsConstantsAndAverages) {
  const std::vector<float> c(6 * 4, 7.f);
  for (float v : resize_bilinear(c, 6, 4, 3, 5)) EXPECT_FLOAT_EQ(v, 7.f);
  const std::vector<float> img{0, 2, 4, 6};  // 2x2 -> 1x1 is the mean
  EXPECT_FLOAT_EQ(resize_bilinear(img, 2, 2, 1, 1)[0], 3.f);
}

}  // namespace
}  // namespace ich
