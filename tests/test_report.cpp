// report/: the TensorBoard event file's framing against its definition (the
// CRC-32C check value of the standard, the TFRecord layout); that TensorBoard
// itself reads what ich-train writes is tests/tensorboard_e2e.sh's job. The
// charts: pixels where the axes, ticks, title and legend are, one legend
// swatch per series colour, the lines inside the plot area only; the
// precision-recall and reliability points against their definitions.
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "report/curves.h"
#include "report/html.h"
#include "report/plot.h"
#include "report/tensorboard.h"
#include "report/text.h"
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

TEST(Charts, NiceTicksAreOneTwoOrFiveTimesAPowerOfTen) {
  EXPECT_EQ(nice_ticks(0, 1), (std::vector<double>{0, 0.2, 0.4, 0.6000000000000001, 0.8, 1}));
  const std::vector<double> t = nice_ticks(3, 17);
  EXPECT_EQ(t, (std::vector<double>{5, 10, 15}));
  EXPECT_EQ(nice_ticks(0, 0.037).size(), 4u);  // 0, 0.01, 0.02, 0.03
  EXPECT_THROW(nice_ticks(1, 1), Error);
}

TEST(Charts, PrecisionRecallAndReliabilityFollowTheirDefinitions) {
  double ap = 0;
  // scores 0.9 0.8 0.7 0.6 with labels 1 0 1 0: thresholds past each score
  const auto pr = pr_curve({0.9, 0.8, 0.7, 0.6}, {1, 0, 1, 0}, &ap);
  ASSERT_EQ(pr.size(), 4u);
  EXPECT_EQ(pr[0], (std::pair<double, double>{0.5, 1.0}));
  EXPECT_EQ(pr[1], (std::pair<double, double>{0.5, 0.5}));
  EXPECT_DOUBLE_EQ(pr[2].second, 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(ap, 0.5 * 1.0 + 0.5 * 2.0 / 3.0);  // sum over recall steps of the precision there
  EXPECT_TRUE(pr_curve({0.3, 0.2}, {0, 0}).empty());  // no positives: no curve
  EXPECT_EQ(pr_curve({0.5, 0.5, 0.1}, {1, 0, 1}).size(), 2u);  // a tie is one threshold
  const auto cal = calibration_points({0.05, 0.15, 0.12, 0.95}, {0, 1, 0, 1}, 10);
  ASSERT_EQ(cal.size(), 3u);  // empty bins left out
  EXPECT_DOUBLE_EQ(cal[0].first, 0.05);
  EXPECT_DOUBLE_EQ(cal[1].first, 0.135);
  EXPECT_DOUBLE_EQ(cal[1].second, 0.5);
  EXPECT_DOUBLE_EQ(cal[2].second, 1.0);
}

// Whether pixel (x, y) of an RGB image is within `tol` of colour c.
bool near(const std::vector<uint8_t>& img, int W, int x, int y, const std::array<uint8_t, 3>& c, int tol = 12) {
  const uint8_t* p = &img[(size_t(y) * size_t(W) + size_t(x)) * 3];
  for (int k = 0; k < 3; ++k)
    if (std::abs(int(p[k]) - int(c[size_t(k)])) > tol) return false;
  return true;
}
int dark_pixels(const std::vector<uint8_t>& img, int W, int x0, int y0, int x1, int y1) {
  int n = 0;
  for (int y = y0; y < y1; ++y)
    for (int x = x0; x < x1; ++x) n += near(img, W, x, y, {30, 30, 30}, 60);
  return n;
}

TEST(Charts, AxesTextLegendAndLinesAreWhereTheyBelong) {
  const int W = 640, H = 480;
  Chart c;
  c.title = "A title";
  c.x_label = "false positive rate";
  c.y_label = "true positive rate";
  c.diagonal = true;
  c.legend = Chart::Corner::LowerRight;
  // three lines in the upper left half, one leaving the range (clipped)
  c.series.push_back({"first", {{0, 0.5}, {0.5, 0.9}}, palette(0)});
  c.series.push_back({"second", {{0, 0.7}, {0.4, 0.95}}, palette(1)});
  c.series.push_back({"third", {{0.05, 0.2}, {0.3, 1.6}}, palette(2)});
  const std::vector<uint8_t> img = render_chart(c, W, H);
  const PlotArea a = plot_area(W, H);
  // text: the title band, x tick labels and title below, y tick labels and title on the left
  EXPECT_GT(dark_pixels(img, W, 0, 0, W, int(a.top) - 4), 30);
  EXPECT_GT(dark_pixels(img, W, int(a.left), int(a.bottom) + 6, int(a.right), H), 100);
  EXPECT_GT(dark_pixels(img, W, 0, int(a.top), int(a.left) - 6, int(a.bottom)), 100);
  // each series: its colour on the plot (outside the legend box, lower right) and as a legend swatch
  for (size_t i = 0; i < c.series.size(); ++i) {
    SCOPED_TRACE(c.series[i].name);
    int inside = 0, outside = 0, swatch = 0;
    for (int y = 0; y < H; ++y)
      for (int x = 0; x < W; ++x) {
        if (!near(img, W, x, y, c.series[i].color)) continue;
        const bool in_plot = x >= a.left && x <= a.right && y >= a.top && y <= a.bottom;
        const bool in_legend = x > a.right - 260 && y > a.bottom - 90 && in_plot;
        if (in_legend) ++swatch;
        else if (in_plot) ++inside;
        else ++outside;
      }
    EXPECT_GT(inside, 100);   // the line
    EXPECT_GE(swatch, 150);   // a 22 x 10 swatch of the exact colour
    EXPECT_EQ(outside, 0);    // nothing drawn past the axes (the third line leaves the range)
  }
  // the legend holds one swatch colour per series: no other palette colour there
  // (7 is the palette's grey, which the box's border and the antialiased text also make)
  for (size_t k = 3; k < 10; ++k) {
    if (k == 7) continue;
    int n = 0;
    for (int y = int(a.bottom) - 90; y < int(a.bottom); ++y)
      for (int x = int(a.right) - 260; x < int(a.right); ++x) n += near(img, W, x, y, palette(k), 2);
    EXPECT_EQ(n, 0) << "palette colour " << k;
  }
  // and a chart without text would fail the text checks (they can fail)
  Chart bare = c;
  bare.title = bare.x_label = bare.y_label = "";
  const std::vector<uint8_t> b = render_chart(bare, W, H);
  EXPECT_LT(dark_pixels(b, W, 0, 0, W, int(a.top) - 4), 5);
}

TEST(Charts, EvaluationChartsNameEachLabelWithItsFigure) {
  Probs p;
  Labels y;
  Generator g(3);
  for (int i = 0; i < 200; ++i) {
    std::array<int, 6> l{};
    std::array<double, 6> s{};
    for (size_t k = 0; k < 5; ++k) {
      l[k] = g.uniform() < 0.2;
      s[k] = std::clamp(0.3 * l[k] + 0.7 * g.uniform(), 0.0, 1.0);
    }
    l[5] = *std::max_element(l.begin(), l.begin() + 5);
    s[5] = *std::max_element(s.begin(), s.begin() + 5);
    y.push_back(l);
    p.push_back(s);
  }
  const Chart roc = roc_chart(p, y), pr = pr_chart(p, y), cal = calibration_chart(p, y);
  ASSERT_EQ(roc.series.size(), 6u);
  EXPECT_EQ(roc.series[0].name.rfind("any (AUC 0.", 0), 0u) << roc.series[0].name;
  EXPECT_EQ(pr.series[1].name.rfind("epidural (AP 0.", 0), 0u) << pr.series[1].name;
  EXPECT_EQ(cal.series.size(), 6u);
  EXPECT_TRUE(roc.diagonal && cal.diagonal && !pr.diagonal);
}

// Captions land where they are asked for, in their colour, and only there;
// lower case and signs are drawn (the old bitmap font had upper case only).
TEST(Captions, DrawnAtTheirPlaceInTheirColour) {
  const int W = 200, H = 60;
  std::vector<uint8_t> img(size_t(W) * H * 3, 0);
  draw_captions(img, W, H, {{10, 20, "ID_1a2b SDH+sah", {255, 160, 160}, 12}});
  int lit = 0, outside = 0, tinted = 0;
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) {
      const uint8_t* p = &img[(size_t(y) * W + size_t(x)) * 3];
      if (p[0] == 0 && p[1] == 0 && p[2] == 0) continue;
      ++lit;
      if (y < 18 || y > 36 || x < 9 || x > 150) ++outside;
      if (p[0] == 255 && p[1] == 160 && p[2] == 160) ++tinted;
    }
  EXPECT_GT(lit, 100);
  EXPECT_EQ(outside, 0);
  EXPECT_GT(tinted, 10);  // the strokes' cores in the caption's colour
  EXPECT_THROW(draw_captions(img, W + 1, H, {}), Error);
}

TEST(HtmlReport, Base64IsRfc4648AndOperatingPointsFollowTheDefinition) {
  EXPECT_EQ(base64(""), "");  // RFC 4648 section 10's vectors
  EXPECT_EQ(base64("f"), "Zg==");
  EXPECT_EQ(base64("fo"), "Zm8=");
  EXPECT_EQ(base64("foo"), "Zm9v");
  EXPECT_EQ(base64("foob"), "Zm9vYg==");
  EXPECT_EQ(base64("foobar"), "Zm9vYmFy");
  // 3 positives: 90% sensitivity needs all 3, reached first at 0.6, where 1 of 2 negatives is above
  const OperatingPoint op = operating_point({0.9, 0.8, 0.7, 0.6, 0.5}, {1, 0, 1, 1, 0}, 0.9);
  EXPECT_EQ(op.threshold, 0.6);
  EXPECT_EQ(op.sensitivity, 1.0);
  EXPECT_EQ(op.specificity, 0.5);
  EXPECT_EQ(op.ppv, 0.75);
  EXPECT_EQ(operating_point({0.9, 0.8, 0.7, 0.6, 0.5}, {1, 0, 1, 1, 0}, 0.6).threshold, 0.7);  // 2 of 3
  EXPECT_TRUE(std::isnan(operating_point({0.2, 0.1}, {0, 0}, 0.9).threshold));  // no positives
}

}  // namespace
}  // namespace ich
