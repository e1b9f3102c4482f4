// elementwise.h: pointwise ops, reductions and views (engine/ops/elementwise.cpp;
// kernels engine/cpu/elementwise.cpp, engine/cuda/elementwise.cu;
// docs/layers/elementwise.md).
#pragma once
#include "engine/kernels.h"
#include "engine/tensor.h"

namespace ich {

Tensor relu(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor add(const Tensor& a, const Tensor& b);  // same shapes (residual joins)
Tensor mul(const Tensor& a, const Tensor& b);  // same shapes
Tensor scale(const Tensor& x, double s);
Tensor sum(const Tensor& x);                   // one element
Tensor mean(const Tensor& x);                  // one element
Tensor reshape(const Tensor& x, const Shape& shape);
Tensor flatten(const Tensor& x);               // (N, ...) -> (N, rest)
// x in another floating-point dtype (rounded to nearest even, as
// Tensor::to), its gradient converted back: as PyTorch's x.to(dtype).
Tensor cast(const Tensor& x, DType dtype);

}  // namespace ich
