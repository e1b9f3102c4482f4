// loss.h: binary cross-entropy with logits (engine/ops/loss.cpp; kernels
// engine/cpu/loss.cpp, engine/cuda/loss.cu; docs/layers/loss.md).
#pragma once
#include "engine/kernels.h"
#include "engine/tensor.h"

namespace ich {

// Mean binary cross-entropy of logits against targets of the same shape;
// pos_weight (C) or undefined weighs the positives of each class (last dim),
// weight (C) or undefined each class's whole term (torch's weight=: the
// competition's any x2 is weight (1,1,1,1,1,2) * 6/7, each row's weighted
// mean).
Tensor bce_with_logits(const Tensor& logits, const Tensor& target, const Tensor& pos_weight = Tensor(),
                       const Tensor& weight = Tensor());

}  // namespace ich
