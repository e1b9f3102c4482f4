// conv2d_geom.h: the shape arithmetic of a 2-d convolution, shared by the
// CPU's im2col + GEMM path (conv2d.cpp) and its direct grouped kernels
// (conv2d_direct.cpp).
//
// Shapes: x (N,C,H,W), w (O,C/G,kh,kw), y (N,O,Ho,Wo), G groups,
//   Ho = (H + 2*pad_h - kh) / stride_h + 1   (likewise Wo).
// Group g sees input channels [g*C/G, (g+1)*C/G) and makes output channels
// [g*O/G, (g+1)*O/G).
#pragma once
#include <cstdint>

#include "engine/kernels.h"

namespace ich::cpu {

struct ConvGeom {
  int64_t N, C, H, W, O, kh, kw, Ho, Wo, G, Cg, Og, K, P;  // K = Cg*kh*kw, P = Ho*Wo
  Conv2dParams p;
  bool identity_col() const { return kh == 1 && kw == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_h == 0 && p.pad_w == 0; }
};

inline ConvGeom conv_geometry(const Shape& xs, const Shape& ws, const Conv2dParams& p) {
  ConvGeom g;
  g.N = xs[0], g.C = xs[1], g.H = xs[2], g.W = xs[3];
  g.O = ws[0], g.kh = ws[2], g.kw = ws[3];
  g.G = p.groups;
  g.Cg = g.C / g.G, g.Og = g.O / g.G;
  g.Ho = (g.H + 2 * p.pad_h - g.kh) / p.stride_h + 1;
  g.Wo = (g.W + 2 * p.pad_w - g.kw) / p.stride_w + 1;
  g.K = g.Cg * g.kh * g.kw;
  g.P = g.Ho * g.Wo;
  g.p = p;
  return g;
}

}  // namespace ich::cpu
