// text.h: captions on images (contact sheets, key images) drawn with cairo in
// DejaVu Sans, antialiased, any character UTF-8 has (the built-in 5x7 font
// this replaces knew upper case, digits and a few signs).
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace ich {

struct Caption {
  int x = 0, y = 0;  // the top left of the text, in pixels
  std::string text;
  std::array<uint8_t, 3> color{255, 255, 255};
  double size = 12;  // pixels
  bool bold = false;
};

// Draws the captions into an RGB image (h x w x 3, row-major) in one pass.
void draw_captions(std::vector<uint8_t>& rgb, int w, int h, const std::vector<Caption>& captions);

}  // namespace ich
