// conv2d: forward and backward (see engine/cpu/conv2d.cpp for the math).
// Gradient rules: dx from conv2d_backward_data, dw from
// conv2d_backward_filter, db = sum of dy over (N,H,W). x is saved only when
// the weight needs its gradient, w only when x needs its gradient.
#include "engine/ops/amp.h"
#include "engine/autograd.h"
#include "engine/ops/conv2d.h"
#include "engine/ops/op_util.h"

namespace ich {

namespace {

// Under autocast (engine/ops/amp.h): bfloat16/float16 operands, float32
// accumulation, results rounded; cuDNN takes 16-bit tensors natively. The
// output is a 16-bit tensor; x's gradient comes back in x's dtype (float32
// for the network's input), the weight's and bias's in float32.
Tensor conv2d_mixed(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& p,
                    const Shape& y_shape) {
  const MixedOperands m{autocast_dtype(), x.device().is_cuda()};
  const Layout L = layout_for(x, true);
  // x as a 16-bit tensor in the kernel's layout, kept for backward (half the
  // bytes of float32; the same tensor as x when x is a 16-bit activation).
  // The weight is kept as the float32 parameter and rounded (in the
  // kernel's layout: K,R,S,C for a channels-last call on a GPU) again in
  // backward: 16-bit copies of all weights, kept through the step, would
  // cost ResNeXt-101 176 MB.
  const Tensor x16 = m.low(x, L.kernel);
  const Tensor bl = bias.defined() ? m.operand(bias) : Tensor();
  Tensor yl = m.result(y_shape, x, L.kernel);
  ICH_DISPATCH(x.device(), conv2d_forward, m.for_kernel(x16), m.operand(weight, L.kernel), bl, yl, p);
  const Tensor x_saved = weight.requires_grad() ? x16.detach() : Tensor();
  const Tensor w_saved = x.requires_grad() ? weight.detach() : Tensor();
  const Shape x_shape = x.shape(), w_shape = weight.shape();
  const DType x_dtype = x.dtype();
  return record("conv2d", L.out(m.finish(yl, m.precision)), {x, weight, bias},
                [m, L, x_saved, w_saved, x_shape, w_shape, x_dtype, p](const Tensor& gy_in, const NeedsGrad& need) {
                  const Tensor gyl = m.operand(gy_in, L.kernel);
                  Tensor gx, gw, gb;
                  if (need[0]) {
                    Tensor r = m.result(x_shape, gyl, L.kernel);
                    ICH_DISPATCH(gyl.device(), conv2d_backward_data, gyl, m.operand(w_saved, L.kernel), r, p);
                    gx = L.out(m.finish(r, x_dtype));
                  }
                  if (need[1]) {
                    Tensor r = m.result(w_shape, gyl);
                    ICH_DISPATCH(gyl.device(), conv2d_backward_filter, gyl, m.for_kernel(x_saved), r, p);
                    gw = m.finish(r, DType::Float32);
                  }
                  if (need[2]) {  // float32, from the 16-bit gradient widened
                    const Tensor gy = L.in(gy_in).to(DType::Float32);
                    gb = empty_on(gy, {w_shape[0]});
                    ICH_DISPATCH(gy.device(), conv2d_backward_bias, gy, gb);
                  }
                  return std::vector<Tensor>{gx, gw, gb};
                });
}

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& p) {
  ICH_CHECK(x.dim() == 4, "conv2d: input must be (N,C,H,W), got ", x.str());
  ICH_CHECK(weight.dim() == 4, "conv2d: weight must be (O,C/groups,kh,kw), got ", weight.str());
  const bool mixed = autocast_dtype() != DType::Float32 &&
                     (x.dtype() == DType::Float32 || x.dtype() == autocast_dtype());  // float32 parameters
  if (mixed) {
    same_device_dtype("conv2d", weight, {&bias});
    same_device_as("conv2d", weight, {&x});
  } else {
    same_device_dtype("conv2d", x, {&weight, &bias});
  }
  ICH_CHECK(p.groups >= 1 && x.size(1) % p.groups == 0 && weight.size(0) % p.groups == 0 &&
                weight.size(1) * p.groups == x.size(1),
            "conv2d: input ", x.str(), " and weight ", weight.str(), " do not fit groups=", p.groups);
  ICH_CHECK(p.stride_h >= 1 && p.stride_w >= 1 && p.pad_h >= 0 && p.pad_w >= 0, "conv2d: bad stride or padding");
  ICH_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == weight.size(0)), "conv2d: bias ", bias.str(),
            " does not match ", weight.size(0), " output channels");
  const int64_t Ho = (x.size(2) + 2 * p.pad_h - weight.size(2)) / p.stride_h + 1;
  const int64_t Wo = (x.size(3) + 2 * p.pad_w - weight.size(3)) / p.stride_w + 1;
  ICH_CHECK(x.size(2) + 2 * p.pad_h >= weight.size(2) && x.size(3) + 2 * p.pad_w >= weight.size(3),
            "conv2d: input ", x.str(), " is smaller than the kernel ", weight.str());
  if (mixed) return conv2d_mixed(x, weight, bias, p, {x.size(0), weight.size(0), Ho, Wo});
  // cuDNN takes channels-last activations as they are (op_util.h).
  const Layout L = layout_for(x, true);
  // The weight in the kernel's layout too (K,R,S,C for a channels-last call
  // on a GPU), made once here and kept for backward.
  const Tensor xc = L.in(x), wc = L.in(weight);
  Tensor y = L.empty({x.size(0), weight.size(0), Ho, Wo}, x);
  ICH_DISPATCH(x.device(), conv2d_forward, xc, wc, bias, y, p);

  const Tensor x_saved = weight.requires_grad() ? xc.detach() : Tensor();
  const Tensor w_saved = x.requires_grad() ? wc.detach() : Tensor();
  const Shape x_shape = x.shape(), w_shape = weight.shape();
  return record("conv2d", L.out(y), {x, weight, bias},
                [L, x_saved, w_saved, x_shape, w_shape, p](const Tensor& gy_in, const NeedsGrad& need) {
                  const Tensor gy = L.in(gy_in);
                  Tensor gx, gw, gb;
                  if (need[0]) {
                    gx = L.empty(x_shape, gy);
                    ICH_DISPATCH(gy.device(), conv2d_backward_data, gy, w_saved, gx, p);
                    gx = L.out(gx);
                  }
                  if (need[1]) {
                    gw = empty_on(gy, w_shape);
                    ICH_DISPATCH(gy.device(), conv2d_backward_filter, gy, x_saved, gw, p);
                  }
                  if (need[2]) {
                    gb = empty_on(gy, {w_shape[0]});
                    ICH_DISPATCH(gy.device(), conv2d_backward_bias, gy, gb);
                  }
                  return std::vector<Tensor>{gx, gw, gb};
                });
}

}  // namespace ich
