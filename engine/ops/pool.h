// pool.h: max and adaptive average pooling (engine/ops/pool.cpp; kernels
// engine/cpu/pool.cpp, engine/cuda/pool.cu; docs/layers/pool.md).
#pragma once
#include "engine/kernels.h"
#include "engine/tensor.h"

namespace ich {

Tensor max_pool2d(const Tensor& x, const Pool2dParams& p);
// Output (N,C,out_h,out_w); (1,1) is the global average pool of ResNet.
Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_h = 1, int64_t out_w = 1);

}  // namespace ich
