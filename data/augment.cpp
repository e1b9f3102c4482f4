#include "data/augment.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/kernels.h"

namespace ich {

namespace {
constexpr const float* kMean = kImageNetMean;  // engine/kernels.h: the GPU's normalize_u8 uses the same
constexpr const float* kStd = kImageNetStd;
}  // namespace

float imagenet_mean(int k) { return kMean[k % 3]; }
float imagenet_std(int k) { return kStd[k % 3]; }

namespace {

// The warp; put(index, ch, v) stores the value v in [0, 1] of channel ch.
template <class Put>
void warp(const uint8_t* img, int h, int w, int c, const AugmentOptions& o, Generator& gen, Put&& put) {
  const int S = o.size;
  // The inverse map, output pixel centre -> input coordinates:
  //   in = A * (out - centre_out) + centre_in
  // with A = resize * (rotation/scale)^-1 * flip.
  double a00 = double(w) / S, a01 = 0, a10 = 0, a11 = double(h) / S, tx = 0, ty = 0;
  double contrast = 1, brightness = 0;
  if (o.augment) {
    if (gen.uniform() < 0.5) a00 = -a00;  // horizontal flip
    if (o.transpose && gen.uniform() < 0.5) {  // A's columns swapped: output (x, y) reads what (y, x) would
      std::swap(a00, a01);
      std::swap(a10, a11);
    }
    if (gen.uniform() < 0.5) {
      const double angle = gen.uniform(-45, 45) * M_PI / 180, scale = gen.uniform(0.9, 1.1);
      const double sx = gen.uniform(-0.0625, 0.0625) * S, sy = gen.uniform(-0.0625, 0.0625) * S;
      const double cs = std::cos(angle) / scale, sn = std::sin(angle) / scale;
      // compose: first undo the shift and rotation/scale in output space, then resize/flip
      const double r00 = cs, r01 = sn, r10 = -sn, r11 = cs;
      const double n00 = a00 * r00 + a01 * r10, n01 = a00 * r01 + a01 * r11;
      const double n10 = a10 * r00 + a11 * r10, n11 = a10 * r01 + a11 * r11;
      tx = -(n00 * sx + n01 * sy);
      ty = -(n10 * sx + n11 * sy);
      a00 = n00, a01 = n01, a10 = n10, a11 = n11;
    }
    if (gen.uniform() < 0.5) {
      brightness = gen.uniform(-0.2, 0.2);
      contrast = gen.uniform(0.8, 1.2);
    }
  }
  const double cx_in = w / 2.0, cy_in = h / 2.0, c_out = S / 2.0;
  for (int y = 0; y < S; ++y)
    for (int x = 0; x < S; ++x) {
      const double ox = x + 0.5 - c_out, oy = y + 0.5 - c_out;
      const double ix = a00 * ox + a01 * oy + tx + cx_in - 0.5, iy = a10 * ox + a11 * oy + ty + cy_in - 0.5;
      const int x0 = int(std::floor(ix)), y0 = int(std::floor(iy));
      const double fx = ix - x0, fy = iy - y0;
      for (int ch = 0; ch < c; ++ch) {
        auto at = [&](int yy, int xx) -> double {
          if (xx < 0 || yy < 0 || xx >= w || yy >= h) return 0.0;
          return img[(size_t(yy) * w + xx) * c + ch];
        };
        double v = (at(y0, x0) * (1 - fx) + at(y0, x0 + 1) * fx) * (1 - fy) +
                   (at(y0 + 1, x0) * (1 - fx) + at(y0 + 1, x0 + 1) * fx) * fy;
        put((size_t(ch) * S + y) * S + x, ch, std::clamp(v / 255.0 * contrast + brightness, 0.0, 1.0));
      }
    }
}

}  // namespace

void augment_slice(const uint8_t* img, int h, int w, int c, const AugmentOptions& o, Generator& gen, float* out) {
  warp(img, h, w, c, o, gen, [&](size_t i, int ch, double v) {
    const int k = ch % 3;
    out[i] = o.normalize ? float((v - kMean[k]) / kStd[k]) : float(v);
  });
}

AugmentOptions eval_augment(int size) {
  AugmentOptions o;
  o.size = size;
  o.augment = false;
  return o;
}

void slice_input(const uint8_t* img, int h, int w, int c, int size, float* out) {
  Generator unused(0);  // without augmentation nothing is drawn
  augment_slice(img, h, w, c, eval_augment(size), unused, out);
}

void augment_slice_u8(const uint8_t* img, int h, int w, int c, const AugmentOptions& o, Generator& gen,
                      uint8_t* out) {
  warp(img, h, w, c, o, gen, [&](size_t i, int, double v) { out[i] = uint8_t(std::lround(v * 255.0)); });
}

Tta parse_tta(const std::string& s) {
  if (s == "none") return Tta::None;
  if (s == "flip") return Tta::Flip;
  if (s == "flip+transpose") return Tta::FlipTranspose;
  throw Error("--tta '" + s + "': expected none, flip or flip+transpose");
}

const char* tta_name(Tta t) {
  return t == Tta::None ? "none" : t == Tta::Flip ? "flip" : "flip+transpose";
}

std::vector<Tensor> tta_views(const Tensor& x, Tta t) {
  ICH_CHECK(x.device().is_cpu() && x.dim() == 4 && x.size(2) == x.size(3) &&
                (x.dtype() == DType::Float32 || x.dtype() == DType::UInt8),
            "tta_views: expected a host batch (B,C,S,S) of float32 or uint8, got ", x.str());
  std::vector<Tensor> v{x};
  if (t == Tta::None) return v;
  const Tensor c = x.contiguous();
  const int64_t planes = c.size(0) * c.size(1), S = c.size(2);
  const size_t e = dtype_size(c.dtype());
  const auto* src = static_cast<const uint8_t*>(c.raw_data());
  // out[p][i][j] = src[p][map(i, j)], element by element
  auto view = [&](bool transpose) {
    Tensor out = Tensor::empty(c.shape(), c.dtype());
    auto* dst = static_cast<uint8_t*>(out.raw_data());
    for (int64_t p = 0; p < planes; ++p)
      for (int64_t i = 0; i < S; ++i)
        for (int64_t j = 0; j < S; ++j) {
          const int64_t from = transpose ? j * S + i : i * S + (S - 1 - j);
          std::memcpy(dst + size_t((p * S + i) * S + j) * e, src + size_t(p * S * S + from) * e, e);
        }
    return out;
  };
  v.push_back(view(false));
  if (t == Tta::FlipTranspose) v.push_back(view(true));
  return v;
}

}  // namespace ich
