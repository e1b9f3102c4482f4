// conv2d.h: the convolution op (engine/ops/conv2d.cpp; kernels engine/cpu/conv2d.cpp,
// engine/cuda/conv2d.cu; docs/layers/conv2d.md).
#pragma once
#include "engine/kernels.h"
#include "engine/tensor.h"

namespace ich {

// x (N,C,H,W), weight (O,C/groups,kh,kw), bias (O) or undefined.
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& p);

}  // namespace ich
