// max_pool2d and adaptive_avg_pool2d: forward and backward (see
// engine/cpu/pool.cpp). max pooling saves the argmax of every window, so
// backward needs neither x nor y.
#include "engine/autograd.h"
#include "engine/ops/pool.h"
#include "engine/ops/op_util.h"

namespace ich {

Tensor max_pool2d(const Tensor& x, const Pool2dParams& p) {
  ICH_CHECK(x.dim() == 4, "max_pool2d: input must be (N,C,H,W), got ", x.str());
  ICH_CHECK(p.kernel_h >= 1 && p.kernel_w >= 1 && p.stride_h >= 1 && p.stride_w >= 1, "max_pool2d: bad window");
  ICH_CHECK(2 * p.pad_h <= p.kernel_h && 2 * p.pad_w <= p.kernel_w,
            "max_pool2d: padding must be at most half the kernel (as PyTorch requires)");
  const int64_t Ho = (x.size(2) + 2 * p.pad_h - p.kernel_h) / p.stride_h + 1;
  const int64_t Wo = (x.size(3) + 2 * p.pad_w - p.kernel_w) / p.stride_w + 1;
  ICH_CHECK(Ho >= 1 && Wo >= 1, "max_pool2d: input ", x.str(), " is smaller than the window");
  const Layout L = layout_for(x, false);  // N,C,H,W kernels on both devices; the layout is kept around them
  const Tensor xc = L.in(x);
  Tensor y = L.empty({x.size(0), x.size(1), Ho, Wo}, x);
  Tensor argmax = Tensor::empty(y.shape(), DType::Int64, x.device());
  ICH_DISPATCH(x.device(), max_pool2d_forward, xc, y, argmax, p);
  const Shape x_shape = x.shape();
  return record("max_pool2d", L.out(y), {x}, [L, argmax, x_shape, p](const Tensor& gy_in, const NeedsGrad&) {
    const Tensor gy = L.in(gy_in);
    Tensor gx = L.empty(x_shape, gy);
    ICH_DISPATCH(gy.device(), max_pool2d_backward, gy, argmax, gx, p);
    return std::vector<Tensor>{L.out(gx)};
  });
}

Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_h, int64_t out_w) {
  ICH_CHECK(x.dim() == 4, "adaptive_avg_pool2d: input must be (N,C,H,W), got ", x.str());
  ICH_CHECK(out_h >= 1 && out_w >= 1, "adaptive_avg_pool2d: output size must be positive");
  const Layout L = layout_for(x, false);
  const Tensor xc = L.in(x);
  Tensor y = L.empty({x.size(0), x.size(1), out_h, out_w}, x);
  ICH_DISPATCH(x.device(), adaptive_avg_pool2d_forward, xc, y);
  const Shape x_shape = x.shape();
  return record("adaptive_avg_pool2d", L.out(y), {x}, [L, x_shape](const Tensor& gy_in, const NeedsGrad&) {
    const Tensor gy = L.in(gy_in);
    Tensor gx = L.empty(x_shape, gy);
    ICH_DISPATCH(gy.device(), adaptive_avg_pool2d_backward, gy, gx);
    return std::vector<Tensor>{L.out(gx)};
  });
}

}  // namespace ich
