#include "data/plot.h"

#include <algorithm>
#include <cmath>

#include "data/png.h"

namespace ich {

std::array<uint8_t, 3> palette(size_t i) {
  static const std::array<uint8_t, 3> p[8] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40},
                                               {148, 103, 189}, {140, 86, 75}, {227, 119, 194}, {0, 0, 0}};
  return p[i % 8];
}

void write_line_plot(const std::string& path, const std::vector<Series>& series, double x0, double x1, double y0,
                     double y1, bool diagonal, int W, int H) {
  std::vector<uint8_t> px(size_t(W) * size_t(H) * 3, 255);
  const int m = 30;  // margin
  auto set = [&](int x, int y, std::array<uint8_t, 3> c) {
    if (x < 0 || y < 0 || x >= W || y >= H) return;
    for (int k = 0; k < 3; ++k) px[(size_t(y) * W + x) * 3 + k] = c[size_t(k)];
  };
  auto to_px = [&](double x, double y) {
    return std::pair<double, double>{m + (x - x0) / (x1 - x0) * (W - 2 * m), H - m - (y - y0) / (y1 - y0) * (H - 2 * m)};
  };
  auto line = [&](double ax, double ay, double bx, double by, std::array<uint8_t, 3> c, bool dashed, int thick) {
    const auto [px0, py0] = to_px(ax, ay);
    const auto [px1, py1] = to_px(bx, by);
    const int steps = int(std::max(std::fabs(px1 - px0), std::fabs(py1 - py0))) + 1;
    for (int s = 0; s <= steps; ++s) {
      if (dashed && (s / 6) % 2) continue;
      const double t = double(s) / steps;
      const int x = int(std::lround(px0 + t * (px1 - px0))), y = int(std::lround(py0 + t * (py1 - py0)));
      for (int dx = 0; dx < thick; ++dx)
        for (int dy = 0; dy < thick; ++dy) set(x + dx, y + dy, c);
    }
  };
  const std::array<uint8_t, 3> axis{0, 0, 0}, grid{220, 220, 220};
  for (int g = 1; g < 10; ++g) {
    const double gx = x0 + (x1 - x0) * g / 10, gy = y0 + (y1 - y0) * g / 10;
    line(gx, y0, gx, y1, grid, false, 1);
    line(x0, gy, x1, gy, grid, false, 1);
  }
  line(x0, y0, x1, y0, axis, false, 1);
  line(x0, y0, x0, y1, axis, false, 1);
  if (diagonal) line(x0, y0, x1, y1, {150, 150, 150}, true, 1);
  for (const Series& s : series)
    for (size_t i = 1; i < s.points.size(); ++i)
      line(s.points[i - 1].first, s.points[i - 1].second, s.points[i].first, s.points[i].second, s.color, false, 2);
  // Legend: a colour square per series, top left (names are in the tool's printed output).
  for (size_t i = 0; i < series.size(); ++i)
    for (int dx = 0; dx < 10; ++dx)
      for (int dy = 0; dy < 10; ++dy) set(m + 8 + dx, m + 8 + int(i) * 14 + dy, series[i].color);
  write_png(path, px, W, H, 3);
}

}  // namespace ich
