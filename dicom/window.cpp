#include "dicom/window.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "engine/error.h"

namespace ich {

std::vector<Window> parse_windows(const std::string& spec) {
  if (spec == "dicom") return {};
  std::vector<Window> out;
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item == "brain") out.push_back({40, 80});
    else if (item == "subdural") out.push_back({80, 200});
    else if (item == "soft") out.push_back({40, 380});
    else if (item == "bone") out.push_back({600, 2800});
    else if (item == "stroke") out.push_back({40, 40});
    else {
      double c, w;
      char slash, extra;
      std::istringstream is(item);
      ICH_CHECK((is >> c >> slash >> w) && slash == '/' && !(is >> extra) && w > 0, "window '", item,
                "': expected a name (brain, subdural, soft, bone, stroke) or center/width with width > 0");
      out.push_back({c, w});
    }
  }
  ICH_CHECK(!out.empty(), "no windows in '", spec, "'");
  return out;
}

std::string windows_str(const std::vector<Window>& ws) {
  std::string s;
  for (const auto& w : ws) {
    std::ostringstream o;
    o << w.center << "/" << w.width;
    s += (s.empty() ? "" : ";") + o.str();
  }
  return s;
}

std::vector<uint8_t> window_image(const std::vector<float>& hu, const std::vector<Window>& ws, bool invert) {
  const size_t C = ws.size();
  std::vector<uint8_t> out(hu.size() * C);
  for (size_t i = 0; i < hu.size(); ++i)
    for (size_t c = 0; c < C; ++c) {
      const uint8_t u = window_hu_to_u8(hu[i], ws[c]);
      out[i * C + c] = invert ? uint8_t(255 - u) : u;
    }
  return out;
}

std::vector<float> resize_bilinear(const std::vector<float>& img, int h, int w, int oh, int ow) {
  if (oh == h && ow == w) return img;
  std::vector<float> out(size_t(oh) * size_t(ow));
  const double sy = double(h) / oh, sx = double(w) / ow;
  for (int y = 0; y < oh; ++y) {
    const double fy = std::max(0.0, (y + 0.5) * sy - 0.5);
    const int y0 = std::min(int(fy), h - 1), y1 = std::min(y0 + 1, h - 1);
    const double ay = fy - y0;
    for (int x = 0; x < ow; ++x) {
      const double fx = std::max(0.0, (x + 0.5) * sx - 0.5);
      const int x0 = std::min(int(fx), w - 1), x1 = std::min(x0 + 1, w - 1);
      const double ax = fx - x0;
      const double top = img[size_t(y0) * w + x0] * (1 - ax) + img[size_t(y0) * w + x1] * ax;
      const double bot = img[size_t(y1) * w + x0] * (1 - ax) + img[size_t(y1) * w + x1] * ax;
      out[size_t(y) * ow + x] = float(top * (1 - ay) + bot * ay);
    }
  }
  return out;
}

}  // namespace ich
