// window.h: Hounsfield units to windowed 8-bit images.
//
// A window (center c, width w) maps HU linearly onto 0..255:
//   u8 = round(255 * (clip(HU, c - w/2, c + w/2) - (c - w/2)) / w)
// The scale depends on the window only, never on the image's own min and max
// (the seed's flaw: content-dependent contrast, and NaN on a fully clipped
// slice). The default is three windows as three channels, as the 2nd and
// 12th places of the RSNA competition: brain 40/80, subdural 80/200, soft
// tissue 40/380.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ich {

struct Window {
  double center, width;
};

// "brain,subdural,soft" (named windows: brain 40/80, subdural 80/200,
// soft 40/380, bone 600/2800, stroke 40/40), "c/w,c/w,..." pairs, or "dicom"
// (an empty list: use the file's own first window). Throws on bad text.
std::vector<Window> parse_windows(const std::string& spec);
std::string windows_str(const std::vector<Window>& w);  // "40/80;80/200;40/380"

inline uint8_t window_hu_to_u8(float hu, const Window& w) {
  const double lo = w.center - w.width / 2, hi = w.center + w.width / 2;
  const double v = hu < lo ? lo : hu > hi ? hi : double(hu);  // std::clamp, NaN aside (HU are never NaN)
  // std::lround for x >= 0, inline: the integer part plus one when the
  // fraction (exact: x - floor(x) loses nothing) is at least a half.
  const double x = 255.0 * (v - lo) / w.width;
  const int r = int(x);
  return uint8_t(r + (x - r >= 0.5));
}

// hu: h*w values -> h*w*C bytes, channel-last (the .npy layout HxWxC).
// When invert (MONOCHROME1), each u8 is 255 - u8.
std::vector<uint8_t> window_image(const std::vector<float>& hu, const std::vector<Window>& windows, bool invert);

// Bilinear resize of an h x w float image to size x size (pixel centres
// aligned, as OpenCV's INTER_LINEAR and PyTorch's align_corners=False).
std::vector<float> resize_bilinear(const std::vector<float>& img, int h, int w, int out_h, int out_w);

}  // namespace ich
