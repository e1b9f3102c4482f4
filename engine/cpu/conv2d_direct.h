// conv2d_direct.h: grouped 3x3 convolutions computed directly, forward and
// backward, instead of by im2col + GEMM (engine/cpu/conv2d.cpp calls them
// where they fit, and the GEMM path everywhere else).
//
// Why: ResNeXt's grouped 3x3 convolutions have 8-64 channels per group, so
// im2col + GEMM is a GEMM of 8-64 rows, thin, after copying 9 values per
// input value (measured at batch 32, 200x200 on 2 cores: 16-60 GFLOP/s for
// them against 110-170 for the 1x1 convolutions).
//
// The three kernels, for one group (shapes of conv2d_geom.h; xpad is x with
// a zero border of 1):
//   forward          y[o,oh,ow]   = sum over (c, i, j) of w[o,c,i,j] * xpad[c, oh*s+i, ow*s+j]
//   backward data    (stride 1) the forward of dy with the weights' roles
//                    swapped and the taps flipped:
//                    dx[c,h,w]    = sum over (o, i, j) of w[o,c,2-i,2-j] * dypad[o, h+i, w+j]
//   backward filter  dw[o,c,i,j]  = sum over (n, oh, ow) of dy[n,o,oh,ow] * xpad[n, c, oh*s+i, ow*s+j]
// Every output is a sum in a fixed order that does not depend on the thread
// count: forward and backward data over (c or o, i, j) in order; the filter
// gradient over the pixels of a block of rows (at most ~64 pixels), the
// blocks of an image added in order, then the images in order (sums of a
// few dozen terms at a time, as accurate as OpenBLAS's blocked reduction).
#pragma once
#include "engine/cpu/conv2d_geom.h"

namespace ich::cpu {

// Which direct kernels fit: groups > 1, 3x3, padding 1, equal strides 1 or
// 2, and a multiple of 8 channels along the vectorised side (the output
// channels for the forward and the filter gradient, the input channels for
// the backward data, which also needs stride 1).
bool direct_3x3_fits(const ConvGeom& g);
bool direct_3x3_backward_data_fits(const ConvGeom& g);

// Whole batches, parallel over (image, group) or, for the filter gradient,
// over groups. All arrays contiguous NCHW / OIHW; outputs written, not
// accumulated.
void direct_3x3_forward(const float* x, const float* w, float* y, const ConvGeom& g);
void direct_3x3_forward(const double* x, const double* w, double* y, const ConvGeom& g);
void direct_3x3_backward_data(const float* gy, const float* w, float* gx, const ConvGeom& g);
void direct_3x3_backward_data(const double* gy, const double* w, double* gx, const ConvGeom& g);
void direct_3x3_backward_filter(const float* gy, const float* x, float* gw, const ConvGeom& g);
void direct_3x3_backward_filter(const double* gy, const double* x, double* gw, const ConvGeom& g);

}  // namespace ich::cpu
