#include "report/plot.h"

#include <cairo.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "engine/error.h"
#include "io/png.h"
#include "report/cairo_rgb.h"

namespace ich {

namespace {

constexpr double kLeft = 72, kRight = 24, kTop = 44, kBottom = 56;  // margins: tick labels, axis titles, title
constexpr const char* kFont = "DejaVu Sans";

void rgb(cairo_t* cr, const std::array<uint8_t, 3>& c) { cairo_set_source_rgb(cr, c[0] / 255.0, c[1] / 255.0, c[2] / 255.0); }

std::string tick_text(double v, double step) {
  char buf[32];
  const int decimals = step >= 1 ? 0 : std::min(6, int(std::ceil(-std::log10(step) - 1e-9)));
  std::snprintf(buf, sizeof buf, "%.*f", decimals, std::fabs(v) < step * 1e-9 ? 0.0 : v);
  return buf;
}

// Text with its anchor at (x, y): ax, ay in [0, 1] (0 left/top, 1 right/bottom).
void text(cairo_t* cr, const std::string& s, double x, double y, double ax, double ay) {
  cairo_text_extents_t e;
  cairo_text_extents(cr, s.c_str(), &e);
  cairo_move_to(cr, x - e.x_bearing - ax * e.width, y - e.y_bearing - ay * e.height);
  cairo_show_text(cr, s.c_str());
}

}  // namespace

std::array<uint8_t, 3> palette(size_t i) {
  static const std::array<uint8_t, 3> p[10] = {{31, 119, 180},  {255, 127, 14}, {44, 160, 44},  {214, 39, 40},
                                                {148, 103, 189}, {140, 86, 75},  {227, 119, 194}, {127, 127, 127},
                                                {188, 189, 34},  {23, 190, 207}};
  return p[i % 10];
}

PlotArea plot_area(int width, int height) { return {kLeft, kTop, double(width) - kRight, double(height) - kBottom}; }

std::vector<double> nice_ticks(double lo, double hi, int target) {
  ICH_CHECK(hi > lo && std::isfinite(lo) && std::isfinite(hi), "nice_ticks: range [", lo, ", ", hi, "]");
  const double raw = (hi - lo) / std::max(1, target), mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (const double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= raw * 0.999) {
      step = m * mag;
      break;
    }
  std::vector<double> t;
  for (double v = std::ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) t.push_back(v);
  return t;
}

std::vector<uint8_t> render_chart(const Chart& c, int W, int H) {
  ICH_CHECK(W >= 200 && H >= 160, "render_chart: ", W, " x ", H, " is too small for a chart");
  ICH_CHECK(c.x1 > c.x0 && c.y1 > c.y0, "chart '", c.title, "': empty range");
  cairo_surface_t* surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, W, H);
  cairo_t* cr = cairo_create(surface);
  ICH_CHECK(cairo_status(cr) == CAIRO_STATUS_SUCCESS, "cairo: ", cairo_status_to_string(cairo_status(cr)));
  const PlotArea a = plot_area(W, H);
  auto px = [&](double x) { return a.left + (x - c.x0) / (c.x1 - c.x0) * (a.right - a.left); };
  auto py = [&](double y) { return a.bottom - (y - c.y0) / (c.y1 - c.y0) * (a.bottom - a.top); };
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  cairo_select_font_face(cr, kFont, CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);

  // grid and ticks
  const std::vector<double> xt = nice_ticks(c.x0, c.x1), yt = nice_ticks(c.y0, c.y1);
  const double xs = xt.size() > 1 ? xt[1] - xt[0] : 1, ys = yt.size() > 1 ? yt[1] - yt[0] : 1;
  cairo_set_line_width(cr, 1);
  cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
  for (double v : xt) {
    cairo_move_to(cr, std::round(px(v)) + 0.5, a.top);
    cairo_line_to(cr, std::round(px(v)) + 0.5, a.bottom);
  }
  for (double v : yt) {
    cairo_move_to(cr, a.left, std::round(py(v)) + 0.5);
    cairo_line_to(cr, a.right, std::round(py(v)) + 0.5);
  }
  cairo_stroke(cr);
  cairo_set_source_rgb(cr, 0.15, 0.15, 0.15);
  cairo_set_font_size(cr, 12);
  for (double v : xt) {
    cairo_move_to(cr, std::round(px(v)) + 0.5, a.bottom);
    cairo_line_to(cr, std::round(px(v)) + 0.5, a.bottom + 5);
    cairo_stroke(cr);
    text(cr, tick_text(v, xs), px(v), a.bottom + 8, 0.5, 0);
  }
  for (double v : yt) {
    cairo_move_to(cr, a.left - 5, std::round(py(v)) + 0.5);
    cairo_line_to(cr, a.left, std::round(py(v)) + 0.5);
    cairo_stroke(cr);
    text(cr, tick_text(v, ys), a.left - 8, py(v), 1, 0.5);
  }
  // axis titles and the title
  cairo_set_font_size(cr, 13);
  text(cr, c.x_label, (a.left + a.right) / 2, double(H) - 6, 0.5, 1);
  cairo_save(cr);
  cairo_translate(cr, 16, (a.top + a.bottom) / 2);
  cairo_rotate(cr, -M_PI / 2);
  text(cr, c.y_label, 0, 0, 0.5, 0.5);
  cairo_restore(cr);
  cairo_select_font_face(cr, kFont, CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
  cairo_set_font_size(cr, 15);
  text(cr, c.title, double(W) / 2, 12, 0.5, 0);
  cairo_select_font_face(cr, kFont, CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);

  // the data, clipped to the plot area
  cairo_save(cr);
  cairo_rectangle(cr, a.left, a.top, a.right - a.left, a.bottom - a.top);
  cairo_clip(cr);
  if (c.diagonal) {
    const double d0 = std::max(c.x0, c.y0), d1 = std::min(c.x1, c.y1);
    const double dash[] = {6, 4};
    cairo_set_dash(cr, dash, 2, 0);
    cairo_set_source_rgb(cr, 0.55, 0.55, 0.55);
    cairo_set_line_width(cr, 1.2);
    cairo_move_to(cr, px(d0), py(d0));
    cairo_line_to(cr, px(d1), py(d1));
    cairo_stroke(cr);
    cairo_set_dash(cr, nullptr, 0, 0);
  }
  cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
  for (const PlotSeries& s : c.series) {
    rgb(cr, s.color);
    cairo_set_line_width(cr, 2.2);
    for (size_t i = 0; i < s.points.size(); ++i) {
      const double x = px(s.points[i].first), y = py(s.points[i].second);
      if (!std::isfinite(x) || !std::isfinite(y)) continue;
      if (i == 0) cairo_move_to(cr, x, y);
      else cairo_line_to(cr, x, y);
    }
    cairo_stroke(cr);
    if (s.markers)
      for (const auto& [x, y] : s.points) {
        cairo_arc(cr, px(x), py(y), 3.5, 0, 2 * M_PI);
        cairo_fill(cr);
      }
  }
  cairo_restore(cr);
  // the frame
  cairo_set_source_rgb(cr, 0.15, 0.15, 0.15);
  cairo_set_line_width(cr, 1);
  cairo_rectangle(cr, a.left + 0.5, a.top + 0.5, a.right - a.left - 1, a.bottom - a.top - 1);
  cairo_stroke(cr);

  // the legend: a swatch and the name of every series
  if (!c.series.empty()) {
    cairo_set_font_size(cr, 12);
    double wmax = 0;
    for (const PlotSeries& s : c.series) {
      cairo_text_extents_t e;
      cairo_text_extents(cr, s.name.c_str(), &e);
      wmax = std::max(wmax, e.x_advance);
    }
    const double row = 18, bw = wmax + 44, bh = row * double(c.series.size()) + 10;
    const bool right = c.legend == Chart::Corner::LowerRight || c.legend == Chart::Corner::UpperRight;
    const bool lower = c.legend == Chart::Corner::LowerRight || c.legend == Chart::Corner::LowerLeft;
    const double bx = right ? a.right - bw - 10 : a.left + 10, by = lower ? a.bottom - bh - 10 : a.top + 10;
    cairo_set_source_rgba(cr, 1, 1, 1, 0.92);
    cairo_rectangle(cr, bx, by, bw, bh);
    cairo_fill_preserve(cr);
    cairo_set_source_rgb(cr, 0.7, 0.7, 0.7);
    cairo_set_line_width(cr, 1);
    cairo_stroke(cr);
    for (size_t i = 0; i < c.series.size(); ++i) {
      const double y = by + 5 + row * (double(i) + 0.5);
      rgb(cr, c.series[i].color);
      cairo_rectangle(cr, bx + 8, y - 5, 22, 10);  // a solid swatch: the colour, unblended
      cairo_fill(cr);
      cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
      text(cr, c.series[i].name, bx + 36, y, 0, 0.5);
    }
  }
  std::vector<uint8_t> out = cairo_rgb::from_surface(surface);
  cairo_destroy(cr);
  cairo_surface_destroy(surface);
  return out;
}

std::string chart_png(const Chart& c, int width, int height) {
  return png_bytes(render_chart(c, width, height), width, height, 3);
}

void write_chart_png(const std::string& path, const Chart& c, int width, int height) {
  write_png(path, render_chart(c, width, height), width, height, 3);
}

}  // namespace ich
