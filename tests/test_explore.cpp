// ich-explore on a phantom: every count equals what ich-phantom generated
// (its manifest), including the quirks, the corrupt files and label oddities
// injected into a copy of labels.csv; the contact sheets exist, have the
// expected size and are not blank.
#include <filesystem>
#include <fstream>

#include "dicom/window_slice.h"
#include "io/csv.h"
#include "io/npy.h"
#include "io/png.h"
#include "phantom/phantom.h"
#include "report/explore.h"
#include "tests/phantom_fixture.h"
#include "tests/test_util.h"

namespace ich {
namespace {

namespace fs = std::filesystem;

TEST(Explore, CountsEqualThePhantomsTruth) {
  const std::string dir = test::fresh_dir("ich_explore");
  PhantomOptions po;
  po.difficulty = "easy";  // the first phantom: bright, sharp lesions, quick to learn
  po.patients = 30;
  po.slices_per_series = 12;
  po.size = 64;
  po.seed = 2;
  po.corrupt_fraction = 0.04;
  const test::PhantomSet ps = test::make_phantom_set(dir, po, /*windowed=*/true, /*split=*/false);
  // Oddities on top: an exact duplicate row, a conflicting row, a malformed line.
  std::string labels;
  {
    std::ifstream in(ps.phantom + "/labels.csv");
    labels.assign(std::istreambuf_iterator<char>(in), {});
  }
  const std::vector<PhantomSlice> truth = plan_phantom(po);
  const std::string first = truth[0].image_id;
  labels += first + "_epidural," + std::to_string(truth[0].labels[0]) + "\n";      // exact duplicate
  labels += first + "_subdural," + std::to_string(1 - truth[0].labels[4]) + "\n";  // conflict
  labels += "ID_nonsense_fracture,1\n";                                             // malformed
  std::ofstream(dir + "/labels.csv") << labels;

  ExploreOptions eo;
  eo.labels = dir + "/labels.csv";
  eo.dicom = ps.phantom + "/dicom";
  eo.images = ps.images;
  eo.out = dir + "/report";
  eo.examples = 6;
  const ExploreReport r = explore(eo);

  std::array<int64_t, 6> pos{};
  std::array<std::array<int64_t, 5>, 5> co{};
  int64_t multi = 0, rsna12 = 0, corrupt = 0, normal = 0;
  std::map<std::string, int64_t> sizes;
  for (const PhantomSlice& s : truth) {
    std::array<int, 6> y = s.labels;
    if (s.image_id == first) y[4] = 1;  // the conflicting positive wins in the counts
    for (size_t k = 0; k < 6; ++k) pos[k] += y[k];
    for (size_t a = 0; a < 5; ++a)
      for (size_t b = 0; b < 5; ++b) co[a][b] += y[a] && y[b];
    normal += !y[5];
    if (s.corrupt != "none") {
      ++corrupt;
      continue;
    }
    multi += s.multi_window;
    rsna12 += s.rsna12;
    ++sizes[std::to_string(s.rows) + " x " + std::to_string(s.cols)];
  }
  const LabelStats& L = r.labels;
  EXPECT_EQ(L.images, int64_t(truth.size()));
  EXPECT_EQ(L.duplicate_rows, 1);
  EXPECT_EQ(L.conflicting_rows, 1);
  EXPECT_EQ(L.malformed_lines, 1);
  if (truth[0].labels[5] == 0) {
    EXPECT_EQ(L.subtype_without_any, 1);  // the injected subdural without any
  }
  for (size_t k = 0; k < 5; ++k) EXPECT_EQ(L.positives[k], pos[k]) << kSubtypes[k];
  EXPECT_EQ(L.positives[5], pos[5]);
  EXPECT_EQ(L.normal, normal);
  EXPECT_EQ(L.cooccurrence, co);
  EXPECT_EQ(L.labelled_without_dicom, corrupt);  // corrupt files have labels but no readable DICOM
  EXPECT_EQ(L.dicom_without_labels, 0);
  const AttributeStats& a = r.attributes;
  EXPECT_EQ(a.files, int64_t(truth.size()));
  EXPECT_EQ(int64_t(a.unreadable.size()), corrupt);
  EXPECT_GT(corrupt, 0);
  EXPECT_EQ(a.multi_window, multi);
  EXPECT_EQ(a.multi_window_differing, multi);  // the phantom writes 40\36 and 80\100
  EXPECT_EQ(a.rsna_fix, rsna12);
  EXPECT_EQ(a.tables.at("rows x columns"), sizes);
  EXPECT_EQ(r.prevalence.at("patients"), 30.0);

  ASSERT_EQ(r.sheets.size(), size_t(1 + std::count_if(pos.begin(), pos.begin() + 5, [](int64_t n) { return n > 0; })));
  for (const std::string& s : r.sheets) {
    std::ifstream in(s, std::ios::binary);
    std::string b{std::istreambuf_iterator<char>(in), {}};
    ASSERT_GT(b.size(), 24u) << s;
    const auto be32 = [&](size_t o) {
      return (uint32_t(uint8_t(b[o])) << 24) | (uint32_t(uint8_t(b[o + 1])) << 16) | (uint32_t(uint8_t(b[o + 2])) << 8) |
             uint32_t(uint8_t(b[o + 3]));
    };
    EXPECT_EQ(be32(16), 640u) << s;  // 4 tiles of 160 px
    EXPECT_GE(be32(20), 16u + 184u) << s;
    EXPECT_GT(b.size(), 5000u) << s << " looks blank";  // compressed: a blank sheet is tiny
  }
  EXPECT_TRUE(fs::exists(eo.out + "/report.md"));
  EXPECT_TRUE(fs::exists(eo.out + "/cooccurrence.csv"));

  // With only --dicom, the sheets are windowed from the DICOM files on the
  // fly: the same picks and the same pixels as from ich-window's images (the
  // brain window is their channel 0), so the very same PNG bytes; slices
  // whose pixels cannot be decoded are passed over, as they have no image.
  ExploreOptions dicom_only = eo;
  dicom_only.images.clear();
  dicom_only.out = dir + "/report_dicom";
  const ExploreReport rd = explore(dicom_only);
  ASSERT_EQ(rd.sheets.size(), r.sheets.size());
  auto bytes = [](const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string{std::istreambuf_iterator<char>(in), {}};
  };
  for (size_t i = 0; i < r.sheets.size(); ++i) {
    EXPECT_EQ(fs::path(rd.sheets[i]).filename(), fs::path(r.sheets[i]).filename());
    EXPECT_TRUE(bytes(rd.sheets[i]) == bytes(r.sheets[i])) << rd.sheets[i] << " differs from " << r.sheets[i];
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace ich
