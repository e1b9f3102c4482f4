// linear.h: the fully connected layer (engine/ops/linear.cpp; kernels
// engine/cpu/linear.cpp, engine/cuda/linear.cu; docs/layers/linear.md).
#pragma once
#include "engine/kernels.h"
#include "engine/tensor.h"

namespace ich {

// x (N,in), weight (out,in), bias (out) or undefined: x weight^T + bias.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias);

}  // namespace ich
