// batch_norm.h: batch normalisation, its data-parallel form and its fusion with
// the residual add and ReLU (engine/ops/batch_norm.cpp; kernels
// engine/cpu/batch_norm.cpp, engine/cuda/batch_norm.cu; docs/layers/batch_norm.md).
#pragma once
#include <functional>
#include <vector>

#include "engine/kernels.h"
#include "engine/tensor.h"

namespace ich {

// BatchNorm over (N,H,W) per channel. In training, normalises with the
// batch's biased variance and updates running_mean/running_var in place
// (momentum, unbiased variance), as torch.nn.BatchNorm2d; in eval, uses them.
Tensor batch_norm2d(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& running_mean,
                    Tensor& running_var, bool training, double momentum = 0.1, double eps = 1e-5);

// Batch norm in training over a batch split across processes (PyTorch's
// SyncBatchNorm): each process holds part of the batch; `reduce` sums a
// vector of float64 over the processes in place (a communicator's
// all-reduce), so the statistics are those of the whole batch. Forward: the
// local mean and inverse std (the training kernel), summed as n m and
// n (1/invstd^2 - eps + m^2) with the counts, give the global mean and
// biased variance; the input is normalised with them and the running
// statistics updated with the global unbiased variance. Backward: the local
// sums of dy and dy x^ (the eval backward kernel) are summed over the
// processes, and dx = gamma invstd (dy - S_dy / n - x^ S_dyx / n), computed
// in the parameters' precision and rounded once to x's (16-bit activations:
// float32). gamma's and beta's gradients are the local sums, as PyTorch's
// (the data-parallel all-reduce then averages them). Every process must
// call it, in the same order, in forward and backward.
using StatsReducer = std::function<void(std::vector<double>&)>;
Tensor sync_batch_norm2d(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& running_mean,
                         Tensor& running_var, double momentum, double eps, const StatsReducer& reduce);

// Fusion: relu(batch_norm2d(x) + residual) (residual may be undefined) as one
// op: batch norm writes its output, one pass adds and clamps it in place,
// and backward masks the gradient once and hands it to the residual and to
// batch norm's backward. The same numbers as the three ops, fewer passes
// over memory and fewer tensors.
Tensor batch_norm_relu(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& running_mean,
                       Tensor& running_var, bool training, double momentum, double eps, const Tensor& residual = Tensor());

}  // namespace ich
