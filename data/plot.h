// plot.h: small line charts as PNG (ROC curves, training curves), drawn on
// an RGB canvas with our PNG writer: no plotting library needed.
#pragma once
#include <array>
#include <string>
#include <vector>

namespace ich {

struct Series {
  std::string name;
  std::vector<std::pair<double, double>> points;
  std::array<uint8_t, 3> color;
};

// x and y ranges [x0, x1] x [y0, y1]; optional dashed diagonal (ROC chance line).
void write_line_plot(const std::string& path, const std::vector<Series>& series, double x0, double x1, double y0,
                     double y1, bool diagonal, int width = 480, int height = 480);

// A fixed palette for up to 8 series.
std::array<uint8_t, 3> palette(size_t i);

}  // namespace ich
