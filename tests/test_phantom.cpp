// ich-phantom: the HU it draws are read back exactly through our DICOM
// reader (including the RSNA 12-bit files, which need the fix), each
// subtype's blood is visible in the windows where a radiologist looks for
// it, labels follow the blood, quirks are present, output is deterministic.
#include <filesystem>
#include <fstream>

#include "data/csv.h"
#include "data/labels.h"
#include "data/phantom.h"
#include "data/window_run.h"
#include "tests/test_util.h"

namespace ich {
namespace {

namespace fs = std::filesystem;

PhantomOptions small(const std::string& out) {
  PhantomOptions o;
  o.out = out;
  o.patients = 40;
  o.slices_per_series = 10;
  o.size = 96;
  o.seed = 3;
  o.corrupt_fraction = 0.05;
  return o;
}

class Phantom : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = (fs::temp_directory_path() / ("ich_phantom_test_" + std::to_string(::getpid()))).string();
    fs::remove_all(dir_);
    summary_ = write_phantom(small(dir_));
    slices_ = plan_phantom(small(dir_));
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  static std::string dir_;
  static PhantomSummary summary_;
  static std::vector<PhantomSlice> slices_;
};
std::string Phantom::dir_;
PhantomSummary Phantom::summary_;
std::vector<PhantomSlice> Phantom::slices_;

TEST_F(Phantom, HounsfieldUnitsReadBackExactly) {
  const PhantomOptions o = small(dir_);
  int checked = 0, rsna12 = 0;
  for (const PhantomSlice& s : slices_) {
    if (s.corrupt != "none" || (checked > 60 && !s.rsna12)) continue;
    const DicomSlice d = read_dicom(dir_ + "/dicom/" + s.image_id + ".dcm");
    EXPECT_EQ(d.sop_uid, s.image_id);
    EXPECT_EQ(d.patient_id, s.patient_id);
    EXPECT_EQ(d.series_uid, s.series_uid);
    EXPECT_DOUBLE_EQ(d.z, s.z);
    ASSERT_EQ(d.rows, s.rows);
    ASSERT_EQ(d.cols, s.cols);
    const std::vector<float> drawn = render_phantom_slice(o, s);
    EXPECT_EQ(hounsfield(d), drawn) << s.image_id;
    if (s.rsna12) {
      ++rsna12;
      EXPECT_TRUE(needs_rsna_fix(d));
      EXPECT_NE(hounsfield(d, /*rsna_fix=*/false), drawn);  // the fix is what makes them right
    }
    EXPECT_EQ(d.window_centers.size(), s.multi_window ? 2u : 1u);
    ++checked;
  }
  EXPECT_GT(rsna12, 0) << "no 12-bit quirk file among " << slices_.size();
}

TEST_F(Phantom, EachSubtypeIsVisibleWhereItShouldBe) {
  const PhantomOptions o = small(dir_);
  const std::vector<Window> ws = parse_windows("brain,subdural,soft");
  std::array<int, 5> seen{};
  for (const PhantomSlice& s : slices_) {
    for (size_t t = 0; t < 5; ++t) {
      if (!s.labels[t]) continue;
      std::vector<int8_t> blood;
      const std::vector<float> hu = render_phantom_slice(o, s, &blood);
      const std::vector<uint8_t> u8 = window_image(hu, ws, false);
      // Mean brain-window level of this subtype's blood vs of brain tissue (0..80 HU).
      double in = 0, out = 0;
      int n_in = 0, n_out = 0;
      for (size_t i = 0; i < hu.size(); ++i) {
        if (blood[i] == int8_t(t)) in += u8[i * 3], ++n_in;
        else if (blood[i] < 0 && hu[i] > 0 && hu[i] < 45) out += u8[i * 3], ++n_out;
      }
      ASSERT_GT(n_in, 0);
      EXPECT_GT(in / n_in - out / n_out, 50) << kSubtypes[t] << " on " << s.image_id;  // of 255 levels
      ++seen[t];
    }
  }
  for (size_t t = 0; t < 5; ++t) EXPECT_GT(seen[t], 0) << "no " << kSubtypes[t] << " slice in the phantom";
}

TEST_F(Phantom, LabelsCsvIsRsnaFormatAndMatchesTheManifest) {
  const LabelTable lt = read_rsna_labels(dir_ + "/labels.csv");
  ASSERT_EQ(lt.images.size(), slices_.size());
  int64_t any = 0;
  for (const PhantomSlice& s : slices_) {
    const auto& y = lt.images[lt.index.at(s.image_id)].y;
    for (size_t t = 0; t < 6; ++t) EXPECT_EQ(y[t], s.labels[t]);
    int sub = 0;
    for (size_t t = 0; t < 5; ++t) sub |= y[t];
    EXPECT_EQ(y[5], sub);  // any = some subtype
    any += y[5];
  }
  EXPECT_EQ(any, summary_.positives);
  const CsvTable m = read_csv(dir_ + "/manifest.csv");
  EXPECT_EQ(m.rows.size(), slices_.size());
}

TEST_F(Phantom, QuirksAndCorruptFilesArePresent) {
  int multi = 0, odd = 0, corrupt = 0;
  for (const PhantomSlice& s : slices_) {
    multi += s.multi_window;
    odd += s.rows != 96 || s.cols != 96;
    if (s.corrupt != "none") {
      ++corrupt;
      EXPECT_THROW(read_dicom(dir_ + "/dicom/" + s.image_id + ".dcm"), Error) << s.corrupt;
    }
  }
  EXPECT_GT(multi, 0);
  EXPECT_GT(odd, 0);
  EXPECT_GT(corrupt, 0);
  EXPECT_EQ(corrupt, summary_.corrupt);
}

TEST_F(Phantom, SameSeedSameFilesOtherSeedOtherFiles) {
  const std::string again = dir_ + "_again";
  PhantomOptions o = small(again);
  o.patients = 3;
  write_phantom(o);
  PhantomOptions o2 = small(dir_ + "_again2");
  o2.patients = 3;
  write_phantom(o2);
  const auto first = plan_phantom(o);
  for (const auto& s : first) {
    if (s.corrupt != "none") continue;
    auto bytes = [](const std::string& p) {
      std::ifstream in(p, std::ios::binary);
      return std::string{std::istreambuf_iterator<char>(in), {}};
    };
    EXPECT_EQ(bytes(again + "/dicom/" + s.image_id + ".dcm"), bytes(o2.out + "/dicom/" + s.image_id + ".dcm"));
  }
  o.seed = 4;
  EXPECT_NE(plan_phantom(o)[0].image_id, first[0].image_id);
  fs::remove_all(again);
  fs::remove_all(o2.out);
}

}  // namespace
}  // namespace ich
