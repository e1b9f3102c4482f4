// plot.h: charts that explain themselves, drawn with cairo (Debian's
// libcairo2; text in DejaVu Sans through fontconfig): a title, axes with
// tick values, axis titles, a legend naming every series, the grid, and the
// series as antialiased lines clipped to the plot area. ROC and
// precision-recall curves, reliability (calibration) diagrams and training
// curves are all Charts (report/curves.h builds them).
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace ich {

struct PlotSeries {
  std::string name;  // shown in the legend
  std::vector<std::pair<double, double>> points;
  std::array<uint8_t, 3> color;
  bool markers = false;  // a dot at every point (few points: epochs, calibration bins)
};

struct Chart {
  std::string title, x_label, y_label;
  double x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  bool diagonal = false;  // the dashed grey y = x (ROC's chance, calibration's perfect line)
  enum class Corner { LowerRight, UpperRight, LowerLeft, UpperLeft } legend = Corner::LowerRight;
  std::vector<PlotSeries> series;
};

// The plot area of a chart drawn at width x height, in pixels.
struct PlotArea {
  double left, top, right, bottom;
};
PlotArea plot_area(int width, int height);

// Tick values for [lo, hi]: about `target` steps of 1, 2 or 5 x 10^k.
std::vector<double> nice_ticks(double lo, double hi, int target = 5);

// The chart as RGB pixels (height x width x 3, row-major).
std::vector<uint8_t> render_chart(const Chart& c, int width, int height);
// ... as PNG bytes (io/png.h), and written as a PNG file.
std::string chart_png(const Chart& c, int width = 640, int height = 480);
void write_chart_png(const std::string& path, const Chart& c, int width = 640, int height = 480);

// Tableau's 10 colours: distinct, readable on white.
std::array<uint8_t, 3> palette(size_t i);

}  // namespace ich
