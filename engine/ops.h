// ops.h: the differentiable op set, the API that layers/ and the loss use.
//
// Each op checks its arguments, allocates its output on the input's device,
// runs the device kernel (engine/kernels.h) and, when an input requires a
// gradient, records its backward on the tape (engine/autograd.h). The
// forward and the backward of an op sit together in engine/ops/<op>.cpp.
// All ops accept float32 and float64 on the CPU.
#pragma once
#include <functional>
#include "engine/kernels.h"
#include "engine/tensor.h"

namespace ich {

// x (N,C,H,W), weight (O,C/groups,kh,kw), bias (O) or undefined.
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& p);

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

Tensor relu(const Tensor& x);
// Fusion: relu(batch_norm2d(x) + residual) (residual may be undefined) as one
// op: batch norm writes its output, one pass adds and clamps it in place,
// and backward masks the gradient once and hands it to the residual and to
// batch norm's backward. The same numbers as the three ops, fewer passes
// over memory and fewer tensors.
Tensor batch_norm_relu(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& running_mean,
                       Tensor& running_var, bool training, double momentum, double eps, const Tensor& residual = Tensor());
Tensor sigmoid(const Tensor& x);
Tensor max_pool2d(const Tensor& x, const Pool2dParams& p);
// Output (N,C,out_h,out_w); (1,1) is the global average pool of ResNet.
Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_h = 1, int64_t out_w = 1);
// x (N,in), weight (out,in), bias (out) or undefined: x weight^T + bias.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias);
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
// A batch from the loader onto the device, as network input: float32
// batches are copied; uint8 ones (BatchLoader bytes mode) are uploaded as
// bytes (a quarter of the traffic; asynchronously on a GPU) and normalised
// there by normalize_u8.
Tensor to_device_input(const Tensor& batch, Device d);
// A batch into an existing dense tensor of the same shape and dtype on a
// device (a captured step's input buffer): from the host on a GPU through
// the pinned staging buffer on the copy stream, the host not waiting; from
// the same device, a copy there.
void load_input_(Tensor& dst, const Tensor& host);
// uint8 images (B,C,S,S) on their device -> the network's float32 input.
Tensor normalize_input(const Tensor& bytes);
// Mean binary cross-entropy of logits against targets of the same shape;
// pos_weight (C) or undefined weighs the positives of each class (last dim),
// weight (C) or undefined each class's whole term (torch's weight=: the
// competition's any x2 is weight (1,1,1,1,1,2) * 6/7, each row's weighted
// mean).
Tensor bce_with_logits(const Tensor& logits, const Tensor& target, const Tensor& pos_weight = Tensor(),
                       const Tensor& weight = Tensor());

}  // namespace ich
