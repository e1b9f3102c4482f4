// ich-phantom: the HU it draws are read back exactly through our DICOM
// reader (including the RSNA 12-bit files, which need the fix), each
// subtype's blood is visible in the windows where a radiologist looks for
// it, labels follow the blood, quirks are present, output is deterministic.
// The realistic phantom besides: its geometry (tilted series, spacing, pixel
// size) reads back and orders the series, its blood is consistent from
// slice to slice in 3-D, and its prevalence is RSNA's.
#include <algorithm>
#include <filesystem>
#include <map>
#include <fstream>

#include "data/labels.h"
#include "data/series.h"
#include "dicom/window_slice.h"
#include "io/csv.h"
#include "phantom/phantom.h"
#include "tests/test_util.h"

namespace ich {
namespace {

namespace fs = std::filesystem;

PhantomOptions small(const std::string& out, const std::string& difficulty = "easy") {
  PhantomOptions o;
  o.out = out;
  o.difficulty = difficulty;
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


// ---- the realistic phantom --------------------------------------------------

class RealisticPhantom : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = (fs::temp_directory_path() / ("ich_phantom_real_" + std::to_string(::getpid()))).string();
    fs::remove_all(dir_);
    PhantomOptions o = small(dir_, "realistic");
    o.patients = 16;
    o.slices_per_series = 20;
    o.corrupt_fraction = 0;
    o.size = 128;
    opts_ = o;
    write_phantom(o);
    slices_ = plan_phantom(o);
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  static std::string dir_;
  static PhantomOptions opts_;
  static std::vector<PhantomSlice> slices_;
};
std::string RealisticPhantom::dir_;
PhantomOptions RealisticPhantom::opts_;
std::vector<PhantomSlice> RealisticPhantom::slices_;

TEST_F(RealisticPhantom, PixelsAndGeometryReadBackAndOrderTheSeries) {
  std::vector<SliceGeometry> geo;
  int tilted = 0, checked = 0;
  for (const PhantomSlice& s : slices_) {
    const DicomSlice d = read_dicom(dir_ + "/dicom/" + s.image_id + ".dcm");
    for (size_t i = 0; i < 3; ++i) EXPECT_DOUBLE_EQ(d.position[i], s.position[i]) << s.image_id;
    for (size_t i = 0; i < 6; ++i) EXPECT_NEAR(d.orientation[i], s.orientation[i], 1e-9) << s.image_id;
    EXPECT_NEAR(d.spacing_row, s.pixel_spacing, 1e-9);
    if (checked++ < 40) {
      EXPECT_EQ(hounsfield(d), render_phantom_slice(opts_, s)) << s.image_id;
    }
    tilted += std::fabs(s.orientation[5]) > 1e-6;
    SliceGeometry g;
    g.image_id = s.image_id, g.patient_id = s.patient_id, g.study_uid = s.study_uid, g.series_uid = s.series_uid;
    g.has_position = g.has_orientation = true;
    std::copy(d.position, d.position + 3, g.position.begin());
    std::copy(d.orientation, d.orientation + 6, g.orientation.begin());
    geo.push_back(g);
  }
  EXPECT_GT(tilted, 0) << "no series with a gantry tilt";
  // Read back shuffled, the geometry orders every series as it was made, evenly spaced.
  std::reverse(geo.begin(), geo.end());
  const std::vector<SeriesOrder> order = order_series(geo);
  ASSERT_EQ(int(order.size()), opts_.patients);
  for (const SeriesOrder& o : order) {
    EXPECT_EQ(o.ties + o.gaps + o.unplaced, 0) << describe_irregularities(o);
    for (size_t k = 0; k < o.slices.size(); ++k) {
      const auto it = std::find_if(slices_.begin(), slices_.end(),
                                   [&](const PhantomSlice& p) { return p.image_id == geo[o.slices[k]].image_id; });
      EXPECT_EQ(it->slice, int(k)) << o.series_uid;
    }
  }
}

TEST_F(RealisticPhantom, BloodIsBrighterThanBrainAndConsistentAcrossSlices) {
  const std::vector<Window> ws = parse_windows("brain,subdural,soft");
  std::array<int, 5> seen{};
  int pairs = 0, overlapping = 0;
  std::map<std::string, std::vector<int8_t>> previous;  // series -> the last slice's blood mask
  int previous_slice = -2;
  for (const PhantomSlice& s : slices_) {
    std::vector<int8_t> blood;
    const std::vector<float> hu = render_phantom_slice(opts_, s, &blood);
    const std::vector<uint8_t> u8 = window_image(hu, ws, false);
    for (size_t t = 0; t < 5; ++t) {
      if (!s.labels[t]) continue;
      double in = 0, out = 0;
      int n_in = 0, n_out = 0;
      for (size_t i = 0; i < hu.size(); ++i) {
        if (blood[i] == int8_t(t)) in += u8[i * 3], ++n_in;
        else if (blood[i] < 0 && hu[i] > 15 && hu[i] < 45) out += u8[i * 3], ++n_out;
      }
      ASSERT_GT(n_in, 0);
      // partial volume and hyperacute blood make it subtle, not invisible
      EXPECT_GT(in / n_in - out / n_out, 25) << kSubtypes[t] << " on " << s.image_id;
      ++seen[t];
    }
    // a lesion on two neighbouring slices is in the same place on both
    const auto prev = previous.find(s.series_uid);
    if (prev != previous.end() && previous_slice == s.slice - 1 && s.labels[5]) {
      int both = 0, here = 0;
      for (size_t i = 0; i < blood.size(); ++i) {
        here += blood[i] >= 0;
        both += blood[i] >= 0 && prev->second[i] >= 0;
      }
      if (here > 0 && std::count_if(prev->second.begin(), prev->second.end(), [](int8_t b) { return b >= 0; }) > 0) {
        ++pairs;
        overlapping += both > 0;
      }
    }
    previous[s.series_uid] = blood;
    previous_slice = s.slice;
  }
  for (size_t t = 0; t < 5; ++t) EXPECT_GT(seen[t], 0) << "no " << kSubtypes[t] << " slice in the phantom";
  ASSERT_GT(pairs, 10);
  EXPECT_GE(overlapping, pairs * 9 / 10) << overlapping << " of " << pairs << " neighbouring blood masks overlap";
}

TEST(RealisticPhantomPlan, PrevalenceAndCoOccurrenceAreRsnasAndSeedsDiffer) {
  PhantomOptions o;
  o.patients = 240;
  o.slices_per_series = 25;
  o.size = 64;
  o.seed = 9;
  const std::vector<PhantomSlice> s = plan_phantom(o);
  std::array<int64_t, 6> n{};
  int64_t multi = 0;
  for (const PhantomSlice& p : s) {
    for (size_t t = 0; t < 6; ++t) n[t] += p.labels[t];
    multi += p.labels[0] + p.labels[1] + p.labels[2] + p.labels[3] + p.labels[4] > 1;
  }
  const double N = double(s.size());
  EXPECT_GT(n[5] / N, 0.08);  // RSNA: 14% of slices with some hemorrhage
  EXPECT_LT(n[5] / N, 0.22);
  EXPECT_GT(n[0], 0);  // epidural: rare (RSNA 0.4%), but there
  EXPECT_LT(n[0] / N, 0.02);
  for (size_t t = 1; t < 5; ++t) EXPECT_GT(n[t] / N, 0.005) << kSubtypes[t];
  EXPECT_GT(multi, 0) << "no slice with two subtypes";
  o.seed = 10;
  EXPECT_NE(plan_phantom(o)[0].image_id, s[0].image_id);
}

}  // namespace
}  // namespace ich
