// font.h: a 5x7 bitmap font for captions on PNG figures (contact sheets),
// so no font library is needed. Upper-case letters, digits and _ . : , - /
// ( ) = + %; lower case is drawn as upper case; anything else as a space.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace ich {

// Draws text into an RGB image (w x h x 3) at (x, y), scale 1 = 6 px per character.
void draw_text(std::vector<uint8_t>& rgb, int w, int h, int x, int y, const std::string& text,
               std::array<uint8_t, 3> color, int scale = 1);

}  // namespace ich
