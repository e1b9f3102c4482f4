// Series order from the DICOM geometry (data/series.h): shuffled slices come
// back in order along the normal; a tilted and a sagittal stack are ordered
// by the projection on the normal (z alone cannot order the sagittal one);
// duplicated positions, gaps and slices without a position are counted and
// described; meta.csv's geometry columns are read (and z alone from an older
// meta.csv); bad numbers are one error naming the file and line.
#include <algorithm>
#include <cmath>
#include <numeric>

#include <gtest/gtest.h>

#include "data/series.h"
#include "engine/error.h"
#include "engine/random.h"

namespace ich {
namespace {

// n slices of one series, spacing 2.5 mm along the normal of `ori`, from a
// corner point, ids s00..; returned shuffled (fixed seed).
std::vector<SliceGeometry> stack(int n, const std::array<double, 6>& ori, const std::string& series = "1.2.3",
                                 uint64_t seed = 5) {
  const double nx = ori[1] * ori[5] - ori[2] * ori[4], ny = ori[2] * ori[3] - ori[0] * ori[5],
               nz = ori[0] * ori[4] - ori[1] * ori[3];
  std::vector<SliceGeometry> v;
  for (int k = 0; k < n; ++k) {
    SliceGeometry g;
    g.image_id = "s" + std::string(k < 10 ? "0" : "") + std::to_string(k);
    g.patient_id = "p";
    g.study_uid = "9";
    g.series_uid = series;
    g.has_position = g.has_orientation = true;
    g.orientation = ori;
    const double d = 2.5 * k;
    g.position = {-120 + d * nx, -110 + d * ny, 30 + d * nz};
    v.push_back(g);
  }
  Generator gen(seed);
  for (size_t i = v.size() - 1; i > 0; --i) std::swap(v[i], v[size_t(gen.below(i + 1))]);
  return v;
}

std::vector<std::string> ids_in_order(const std::vector<SliceGeometry>& v, const SeriesOrder& s) {
  std::vector<std::string> ids;
  for (size_t i : s.slices) ids.push_back(v[i].image_id);
  return ids;
}

std::vector<std::string> sorted_ids(int n) {
  std::vector<std::string> ids;
  for (int k = 0; k < n; ++k) ids.push_back("s" + std::string(k < 10 ? "0" : "") + std::to_string(k));
  return ids;
}

TEST(SeriesOrder, ShuffledAxialSlicesComeBackInOrderWithTheirSpacing) {
  const auto v = stack(12, {1, 0, 0, 0, 1, 0});
  const auto s = order_series(v);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(ids_in_order(v, s[0]), sorted_ids(12));
  EXPECT_NEAR(s[0].spacing, 2.5, 1e-9);
  EXPECT_EQ(s[0].ties + s[0].gaps + s[0].unplaced, 0);
  EXPECT_EQ(describe_irregularities(s[0]), "");
  const auto first = neighbour_gaps(s[0], 0), mid = neighbour_gaps(s[0], 5);
  EXPECT_EQ(first[0], 0.0);
  EXPECT_NEAR(first[1], 2.5, 1e-9);
  EXPECT_NEAR(mid[0], 2.5, 1e-9);
}

TEST(SeriesOrder, TiltedAndSagittalStacksFollowTheNormalNotZ) {
  const double c = std::cos(0.35), sn = std::sin(0.35);  // a 20 degree gantry tilt
  for (const auto& ori : {std::array<double, 6>{1, 0, 0, 0, c, sn}, std::array<double, 6>{0, 1, 0, 0, 0, -1}}) {
    const auto v = stack(9, ori);
    const auto s = order_series(v);
    ASSERT_EQ(s.size(), 1u);
    EXPECT_EQ(ids_in_order(v, s[0]), sorted_ids(9));
    EXPECT_NEAR(s[0].spacing, 2.5, 1e-9);
    EXPECT_EQ(s[0].ties, 0);
  }
  // The sagittal stack has one z for every slice: z alone would call them all ties.
  auto v = stack(9, {0, 1, 0, 0, 0, -1});
  for (auto& g : v) g.has_orientation = false;  // taken as axial: the normal is z
  EXPECT_EQ(order_series(v)[0].ties, 8);
}

TEST(SeriesOrder, DuplicatesGapsAndSlicesWithoutPositionAreCountedAndDescribed) {
  auto v = stack(10, {1, 0, 0, 0, 1, 0});
  v.erase(std::remove_if(v.begin(), v.end(), [](const SliceGeometry& g) { return g.image_id == "s04"; }), v.end());
  SliceGeometry dup = *std::find_if(v.begin(), v.end(), [](const SliceGeometry& g) { return g.image_id == "s07"; });
  dup.image_id = "s07b";
  v.push_back(dup);
  SliceGeometry lost = v[0];
  lost.image_id = "a_lost";
  lost.has_position = false;
  v.push_back(lost);
  const auto s = order_series(v);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].ties, 1);
  EXPECT_EQ(s[0].gaps, 1);
  EXPECT_EQ(s[0].unplaced, 1);
  const auto ids = ids_in_order(v, s[0]);
  EXPECT_EQ(ids.back(), "a_lost");  // unplaced last
  const auto at7 = std::find(ids.begin(), ids.end(), "s07");
  ASSERT_NE(at7, ids.end());
  EXPECT_EQ(*(at7 + 1), "s07b");  // a tie: by id
  const std::string d = describe_irregularities(s[0]);
  EXPECT_NE(d.find("1 duplicated position"), std::string::npos) << d;
  EXPECT_NE(d.find("1 gap"), std::string::npos) << d;
  EXPECT_NE(d.find("without a position"), std::string::npos) << d;
}

TEST(SeriesOrder, SeriesAreSeparatedAndKeepTheirFirstAppearance) {
  auto a = stack(4, {1, 0, 0, 0, 1, 0}, "b.series", 1), b = stack(3, {1, 0, 0, 0, 1, 0}, "a.series", 2);
  std::vector<SliceGeometry> v{a[0], b[0], a[1], b[1], a[2], b[2], a[3]};
  const auto s = order_series(v);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].series_uid, "b.series");
  EXPECT_EQ(s[0].slices.size(), 4u);
  EXPECT_EQ(s[1].slices.size(), 3u);
}

TEST(SeriesGeometry, ReadsMetaColumnsAndFallsBackToZ) {
  const CsvTable full = parse_csv(
      "image_id,patient_id,study_uid,series_uid,z,position,orientation,status\n"
      "b,p,s,r,5,0;0;5,1;0;0;0;1;0,ok\n"
      "a,p,s,r,2.5,0;0;2.5,1;0;0;0;1;0,ok\n"
      "x,p,s,r,,,,error\n",
      "meta.csv");
  const auto g = read_geometry(full);
  ASSERT_EQ(g.size(), 2u);
  EXPECT_TRUE(g[0].has_position && g[0].has_orientation);
  EXPECT_EQ(g[1].position[2], 2.5);
  const auto s = order_series(g);
  EXPECT_EQ(g[s[0].slices[0]].image_id, "a");
  const CsvTable old = parse_csv("image_id,patient_id,study_uid,series_uid,z\nq,p,s,r,-7.5\n", "old.csv");
  const auto go = read_geometry(old);
  ASSERT_EQ(go.size(), 1u);
  EXPECT_TRUE(go[0].has_position);
  EXPECT_FALSE(go[0].has_orientation);
  EXPECT_EQ(go[0].position[2], -7.5);
  const CsvTable bad =
      parse_csv("image_id,patient_id,study_uid,series_uid,z,position,orientation\nq,p,s,r,1,0;zero;1,\n", "bad.csv");
  try {
    read_geometry(bad);
    FAIL() << "a position that is not numbers was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.csv line 2"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ich
