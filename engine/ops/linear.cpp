// linear: y = x w^T + b, forward and backward (see engine/cpu/linear.cpp).
#include "engine/ops/amp.h"
#include "engine/autograd.h"
#include "engine/ops/linear.h"
#include "engine/ops/op_util.h"

namespace ich {

namespace {

// Under autocast (engine/ops/amp.h): operands and results rounded to the low
// precision, float32 GEMMs (a 2048 x 6 head: not worth a 16-bit path). The
// output is float32 (the logits, for the loss), x's gradient in x's dtype.
Tensor linear_mixed(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  const MixedOperands m{autocast_dtype(), /*native=*/false};
  const Tensor xl = m.operand(x), wl = m.operand(weight), bl = bias.defined() ? m.operand(bias) : Tensor();
  Tensor y = m.result({x.size(0), weight.size(0)}, x);
  ICH_DISPATCH(x.device(), linear_forward, xl, wl, bl, y);
  const Tensor x_saved = xl.detach(), w_saved = wl.detach();
  const Shape x_shape = x.shape(), w_shape = weight.shape();
  const DType x_dtype = x.dtype();
  return record("linear", m.finish(y, DType::Float32), {x, weight, bias},
                [m, x_saved, w_saved, x_shape, w_shape, x_dtype](const Tensor& gy_in, const NeedsGrad& need) {
                  const Tensor gyl = m.operand(gy_in);
                  Tensor gx, gw, gb;
                  if (need[0]) {
                    gx = m.result(x_shape, gyl);
                    ICH_DISPATCH(gyl.device(), linear_backward_input, gyl, w_saved, gx);
                    gx = m.finish(gx, x_dtype);
                  }
                  if (need[1]) gw = m.result(w_shape, gyl);
                  if (need[2]) gb = m.result({w_shape[0]}, gyl);
                  if (need[1] || need[2]) {
                    ICH_DISPATCH(gyl.device(), linear_backward_params, gyl, x_saved, gw, gb);
                    if (need[1]) gw = m.finish(gw, DType::Float32);
                    if (need[2]) gb = m.finish(gb, DType::Float32);
                  }
                  return std::vector<Tensor>{gx, gw, gb};
                });
}

}  // namespace

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  ICH_CHECK(x.dim() == 2 && weight.dim() == 2 && x.size(1) == weight.size(1), "linear: input ", x.str(),
            " and weight ", weight.str(), " do not match (expected (N,in) and (out,in))");
  ICH_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == weight.size(0)), "linear: bias ", bias.str(),
            " does not match weight ", weight.str());
  if (autocast_dtype() != DType::Float32 && (x.dtype() == DType::Float32 || x.dtype() == autocast_dtype())) {
    same_device_dtype("linear", weight, {&bias});  // float32 parameters
    same_device_as("linear", weight, {&x});
    return linear_mixed(x, weight, bias);
  }
  same_device_dtype("linear", x, {&weight, &bias});
  const Tensor xc = x.contiguous(), wc = weight.contiguous();
  Tensor y = empty_on(x, {x.size(0), weight.size(0)});
  ICH_DISPATCH(x.device(), linear_forward, xc, wc, bias, y);
  const Tensor x_saved = weight.requires_grad() ? xc.detach() : Tensor();
  const Tensor w_saved = x.requires_grad() ? wc.detach() : Tensor();
  const Shape x_shape = x.shape(), w_shape = weight.shape();
  return record("linear", y, {x, weight, bias},
                [x_saved, w_saved, x_shape, w_shape](const Tensor& gy_in, const NeedsGrad& need) {
                  const Tensor gy = gy_in.contiguous();
                  Tensor gx, gw, gb;
                  if (need[0]) {
                    gx = empty_on(gy, x_shape);
                    ICH_DISPATCH(gy.device(), linear_backward_input, gy, w_saved, gx);
                  }
                  if (need[1]) gw = empty_on(gy, w_shape);
                  if (need[2]) gb = empty_on(gy, {w_shape[0]});
                  if (need[1] || need[2]) {
                    // without a weight gradient, x was not saved: bias only needs gy
                    const Tensor xs = need[1] ? x_saved : empty_on(gy, x_shape);
                    ICH_DISPATCH(gy.device(), linear_backward_params, gy, xs, gw, gb);
                  }
                  return std::vector<Tensor>{gx, gw, gb};
                });
}

}  // namespace ich
