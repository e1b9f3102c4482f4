// png.h: writing 8-bit grayscale and RGB images as PNG (zlib's deflate), for
// figures, contact sheets and Grad-CAM overlays.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ich {

// pixels: height*width*channels bytes, row-major, channels 1 (gray) or 3 (RGB).
std::string png_bytes(const std::vector<uint8_t>& pixels, int width, int height, int channels);
void write_png(const std::string& path, const std::vector<uint8_t>& pixels, int width, int height, int channels);

}  // namespace ich
