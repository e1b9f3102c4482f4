// ich-window on DICOM as archives and scanners write it, against pydicom
// (tests/reference/gen_dicom_wild_reference.py, run in a venv with
// pylibjpeg-openjpeg for JPEG 2000): a Modality LUT Sequence, the RSNA
// 12-bit signature on CT (fixed) and on MR (left alone, and refused without
// --any-modality), JPEG 2000 lossless and lossy (pydicom's own files and
// OpenJPEG-encoded ones), Enhanced CT multi-frame files with per-frame
// position, rescale and window, uncompressed and in JPEG 2000; Modality,
// rescale, window and geometry written with VR UN; a CT slice without
// Modality (its SOP class says CT) and an MR-class one (refused). Every frame
// within one gray level per window of pydicom's; Hounsfield units exact where
// the encoding is lossless.
#include <cstdlib>
#include <filesystem>
#include <set>
#include <sstream>

#include "dicom/window_slice.h"
#include "io/csv.h"
#include "io/npy.h"
#include "tests/test_util.h"
#include "weights/weights_file.h"

namespace ich {
namespace {

namespace fs = std::filesystem;
const std::string kRef = ICH_DICOM_WILD_DIR;
const std::string kBin = ICH_BIN_DIR;

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  if (s.empty()) return out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, sep)) out.push_back(item);
  return out;
}

struct Case {
  std::string name, file, args, ids, z, rsna_fix, error;
  int frames = 0;
  bool lossless = false;
};

// The cases the generator makes (named here so that the suite is known
// before the generator runs); the manifest must list exactly these.
const char* const kCases[] = {"wild_j2k_lossless_mr", "wild_j2k_pixelrep_mismatch_ct", "wild_j2k_lossy_ct_bits14",
                              "wild_j2k_lossy_nm", "wild_j2k_colour", "wild_j2k_broken_codestream",
                              "lut16_first200", "lut16_first_negative", "lut8", "rsna_signature_ct",
                              "rsna_header_only_ct", "rsna_signature_mr", "rsna_signature_mr_refused",
                              "opj_j2k_lossless_ct", "opj_j2k_lossy_ct", "enhanced_ct", "enhanced_ct_own_windows",
                              "enhanced_ct_j2k_bot", "enhanced_ct_j2k_two_fragments", "un_attributes_ct",
                              "ct_class_without_modality", "mr_class_without_modality_refused"};

std::vector<Case> manifest() {
  const CsvTable t = read_csv(kRef + "/manifest.csv");
  std::vector<Case> out;
  for (const auto& r : t.rows) {
    Case c;
    c.name = r[t.column("case")];
    c.file = r[t.column("file")];
    c.args = r[t.column("args")];
    c.frames = std::stoi(r[t.column("frames")]);
    c.ids = r[t.column("ids")];
    c.z = r[t.column("z")];
    c.rsna_fix = r[t.column("rsna_fix")];
    c.lossless = r[t.column("lossless")] == "1";
    c.error = r[t.column("error")];
    out.push_back(c);
  }
  return out;
}

Case case_named(const std::string& name) {
  for (const Case& c : manifest())
    if (c.name == name) return c;
  ADD_FAILURE() << "manifest.csv has no case " << name;
  return Case();
}

TEST(WildDicomManifest, ListsExactlyTheCases) {
  std::set<std::string> want(std::begin(kCases), std::end(kCases)), got;
  for (const Case& c : manifest()) got.insert(c.name);
  EXPECT_EQ(got, want);
}

std::string param_name(const ::testing::TestParamInfo<const char*>& i) { return i.param; }

class WildDicom : public ::testing::TestWithParam<const char*> {};

TEST_P(WildDicom, AsPydicomReadsIt) {
  const Case c = case_named(GetParam());
  ASSERT_FALSE(c.file.empty());
  const std::string in = kRef + "/input/" + c.file, out = kRef + "/out_" + c.name;
  fs::remove_all(out);
  const std::string cmd = kBin + "/ich-window --input " + in + " --out " + out + " " + c.args + " > /dev/null 2>&1";
  const int rc = WEXITSTATUS(std::system(cmd.c_str()));
  const CsvTable meta = read_csv(out + "/meta.csv"), errors = read_csv(out + "/errors.csv");
  if (!c.error.empty()) {  // a file that must fail: one line in errors.csv that says why
    EXPECT_EQ(rc, 3) << cmd;
    ASSERT_EQ(errors.rows.size(), 1u);
    EXPECT_NE(errors.rows[0][1].find(c.error), std::string::npos) << errors.rows[0][1];
    return;
  }
  ASSERT_EQ(rc, 0) << cmd << "\n" << (errors.rows.empty() ? "" : errors.rows[0][1]);
  ASSERT_EQ(int(meta.rows.size()), c.frames);
  const WeightsFile expected = WeightsFile::open(kRef + "/expected.ichw");
  const std::vector<std::string> ids = split(c.ids, ';'), zs = split(c.z, ';'), fixes = split(c.rsna_fix, ';');
  // The HU as our reader gets them, every frame.
  std::vector<std::vector<float>> hu;
  read_dicom_frames(in, [&](DicomSlice& s) { hu.push_back(hounsfield(s)); });
  ASSERT_EQ(int(hu.size()), c.frames);
  for (int k = 0; k < c.frames; ++k) {
    SCOPED_TRACE("frame " + std::to_string(k + 1));
    const auto& row = meta.rows[size_t(k)];
    EXPECT_EQ(row[meta.column("image_id")], ids[size_t(k)]);
    EXPECT_EQ(row[meta.column("frame")], std::to_string(k + 1));
    EXPECT_EQ(row[meta.column("rsna_fix")], fixes[size_t(k)]);
    // Modality as the file has it: UN-encoded read as CT; none where de-identification removed it.
    const std::string modality = row[meta.column("modality")];
    if (c.name == "ct_class_without_modality") {
      EXPECT_EQ(modality, "");
    } else {
      EXPECT_FALSE(modality.empty());
    }
    if (c.name == "un_attributes_ct") {
      EXPECT_EQ(modality, "CT");
    }
    EXPECT_EQ(row[meta.column("transfer_syntax")].rfind("1.2.840.10008.1.2", 0), 0u) << row[meta.column("transfer_syntax")];
    if (!zs.empty() && !zs[size_t(k)].empty()) {
      EXPECT_DOUBLE_EQ(std::stod(row[meta.column("z")]), std::stod(zs[size_t(k)]));
    }
    const std::string key = c.name + "/" + std::to_string(k + 1);
    const std::vector<double> want_hu = expected.read(key + "/hu").to_vector();
    ASSERT_EQ(hu[size_t(k)].size(), want_hu.size());
    if (c.lossless) {
      size_t differ = 0;
      for (size_t i = 0; i < want_hu.size(); ++i) differ += double(hu[size_t(k)][i]) != want_hu[i];
      EXPECT_EQ(differ, 0u) << "pixels whose Hounsfield units differ from pydicom's";
    }
    const Tensor got = read_npy(out + "/" + row[meta.column("file")]);
    const Tensor want = expected.read(key + "/u8");
    ASSERT_EQ(got.shape(), want.shape());
    const std::vector<double> g = got.to_vector(), w = want.to_vector();
    double worst = 0;
    size_t off = 0;
    for (size_t i = 0; i < g.size(); ++i) {
      worst = std::max(worst, std::fabs(g[i] - w[i]));
      off += g[i] != w[i];
    }
    EXPECT_LE(worst, 1.0) << off << " of " << g.size() << " bytes differ";
  }
}

INSTANTIATE_TEST_SUITE_P(Files, WildDicom, ::testing::ValuesIn(kCases), param_name);

// An Enhanced CT file's frames: one series, each its own z, ids in frame
// order; and a second file with the same SOPInstanceUID is a duplicate as a
// whole (none of its frames is kept).
TEST(WildDicomMeta, FramesOfOneFileShareTheirSeriesAndDifferInZ) {
  const std::string in = kRef + "/meta_in", out = kRef + "/meta_out";
  fs::remove_all(in);
  fs::remove_all(out);
  fs::create_directories(in);
  fs::copy_file(kRef + "/input/enhanced_ct.dcm", in + "/a.dcm");
  fs::copy_file(kRef + "/input/enhanced_ct_own_windows.dcm", in + "/b.dcm");  // the same SOPInstanceUID
  const std::string cmd = kBin + "/ich-window --input " + in + " --out " + out + " > /dev/null 2>&1";
  EXPECT_EQ(WEXITSTATUS(std::system(cmd.c_str())), 3);
  const CsvTable meta = read_csv(out + "/meta.csv"), errors = read_csv(out + "/errors.csv");
  ASSERT_EQ(meta.rows.size(), 5u);  // four frames of a.dcm, the error row of b.dcm
  std::set<std::string> z;
  for (size_t k = 0; k < 4; ++k) {
    const auto& r = meta.rows[k];
    EXPECT_EQ(r[meta.column("series_uid")], meta.rows[0][meta.column("series_uid")]);
    EXPECT_EQ(r[meta.column("modality")], "CT");
    EXPECT_EQ(r[meta.column("image_id")], "1.2.826.0.1.3680043.8.498.77.1_f" + std::to_string(k + 1));
    z.insert(r[meta.column("z")]);
  }
  EXPECT_EQ(z.size(), 4u);
  ASSERT_EQ(errors.rows.size(), 1u);
  EXPECT_NE(errors.rows[0][1].find("duplicate image id"), std::string::npos) << errors.rows[0][1];
  size_t npys = 0;
  for (const auto& e : fs::directory_iterator(out)) npys += e.path().extension() == ".npy";
  EXPECT_EQ(npys, 4u);
}

}  // namespace
}  // namespace ich
