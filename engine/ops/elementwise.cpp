// relu, sigmoid, add, mul, scale, sum, mean, reshape, cast: forward and backward.
// relu and sigmoid save their output (as a detached alias: a tensor must not
// own the node that made it) because their derivatives are cheapest from y.
#include "engine/autograd.h"
#include "engine/graph.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/op_util.h"
#ifdef ICH_WITH_CUDA
#include "engine/cuda/runtime.h"
#endif

namespace ich {

// Pointwise ops keep their input's layout; their CUDA kernels walk raw
// memory and so take channels-last tensors as they are (op_util.h).
Tensor relu(const Tensor& x) {
  const Layout L = layout_for(x, true);
  const Tensor xc = L.in(x);
  Tensor y = L.empty(x.shape(), x);
  ICH_DISPATCH(x.device(), relu_forward, xc, y);
  return record("relu", L.out(y), {x}, [L, y_saved = y.detach()](const Tensor& gy, const NeedsGrad&) {
    Tensor gx = L.empty(y_saved.shape(), y_saved);
    ICH_DISPATCH(gy.device(), relu_backward, L.in(gy), y_saved, gx);
    return std::vector<Tensor>{L.out(gx)};
  });
}

Tensor sigmoid(const Tensor& x) {
  const Layout L = layout_for(x, true);
  const Tensor xc = L.in(x);
  Tensor y = L.empty(x.shape(), x);
  ICH_DISPATCH(x.device(), sigmoid_forward, xc, y);
  return record("sigmoid", L.out(y), {x}, [L, y_saved = y.detach()](const Tensor& gy, const NeedsGrad&) {
    Tensor gx = L.empty(y_saved.shape(), y_saved);
    ICH_DISPATCH(gy.device(), sigmoid_backward, L.in(gy), y_saved, gx);
    return std::vector<Tensor>{L.out(gx)};
  });
}

Tensor add(const Tensor& a, const Tensor& b) {
  ICH_CHECK(a.shape() == b.shape(), "add: shapes differ: ", a.str(), " and ", b.str());
  same_device_dtype("add", a, {&b});
  const Layout L = layout_for(a, true);  // b joins a's layout
  Tensor y = L.empty(a.shape(), a);
  ICH_DISPATCH(a.device(), add_forward, L.in(a), L.in(b), y);
  // The same gradient flows to both branches: the autograd engine never
  // writes into a gradient it hands on, so sharing the tensor is safe.
  const MemoryFormat fb = memory_format_of(b);
  return record("add", L.out(y), {a, b}, [fb](const Tensor& gy, const NeedsGrad&) {
    return std::vector<Tensor>{gy, gy.contiguous(fb)};
  });
}

Tensor mul(const Tensor& a, const Tensor& b) {
  ICH_CHECK(a.shape() == b.shape(), "mul: shapes differ: ", a.str(), " and ", b.str());
  same_device_dtype("mul", a, {&b});
  const Layout L = layout_for(a, true);
  const Tensor ac = L.in(a), bc = L.in(b);
  Tensor y = L.empty(a.shape(), a);
  ICH_DISPATCH(a.device(), mul_forward, ac, bc, y);
  const MemoryFormat fb = memory_format_of(b);
  return record("mul", L.out(y), {a, b},
                [L, fb, as = ac.detach(), bs = bc.detach()](const Tensor& gy_in, const NeedsGrad& need) {
                  const Tensor gy = L.in(gy_in);
                  Tensor ga, gb;
                  if (need[0]) {
                    ga = L.empty(gy.shape(), gy);
                    ICH_DISPATCH(gy.device(), mul_forward, gy, bs, ga);
                    ga = L.out(ga);
                  }
                  if (need[1]) {
                    gb = L.empty(gy.shape(), gy);
                    ICH_DISPATCH(gy.device(), mul_forward, gy, as, gb);
                    gb = gb.contiguous(fb);
                  }
                  return std::vector<Tensor>{ga, gb};
                });
}

Tensor scale(const Tensor& x, double s) {
  const Layout L = layout_for(x, true);
  Tensor y = L.empty(x.shape(), x);
  ICH_DISPATCH(x.device(), scale_forward, L.in(x), s, y);
  return record("scale", L.out(y), {x}, [L, s](const Tensor& gy, const NeedsGrad&) {
    Tensor gx = L.empty(gy.shape(), gy);
    ICH_DISPATCH(gy.device(), scale_forward, L.in(gy), s, gx);
    return std::vector<Tensor>{L.out(gx)};
  });
}

Tensor sum(const Tensor& x) {
  Tensor y = empty_on(x, {});
  ICH_DISPATCH(x.device(), sum_forward, x.contiguous(), y);
  const Shape x_shape = x.shape();
  return record("sum", y, {x}, [x_shape](const Tensor& gy, const NeedsGrad&) {
    Tensor gx = empty_on(gy, x_shape);
    ICH_DISPATCH(gy.device(), fill_like_scalar, gy.contiguous(), 1.0, gx);
    return std::vector<Tensor>{gx};
  });
}

Tensor mean(const Tensor& x) {
  ICH_CHECK(x.numel() > 0, "mean of an empty tensor ", x.str());
  return scale(sum(x), 1.0 / double(x.numel()));
}

Tensor reshape(const Tensor& x, const Shape& shape) {
  ICH_CHECK(shape_numel(shape) == x.numel(), "reshape: cannot reshape ", x.str(), " to ", shape_str(shape));
  Tensor y = x.contiguous().view(shape);
  const Shape x_shape = x.shape();
  return record("reshape", y, {x}, [x_shape](const Tensor& gy, const NeedsGrad&) {
    return std::vector<Tensor>{gy.contiguous().view(x_shape)};
  });
}

Tensor cast(const Tensor& x, DType dtype) {
  const bool fl = dtype == DType::Float32 || dtype == DType::Float64 || is_16bit(dtype);
  ICH_CHECK(fl && (x.dtype() == DType::Float32 || x.dtype() == DType::Float64 || is_16bit(x.dtype())), "cast: ",
            x.str(), " to ", dtype_name(dtype), ": only between floating-point dtypes");
  if (dtype == x.dtype()) return x;
  const DType from = x.dtype();
  return record("cast", x.to(dtype), {x}, [from](const Tensor& gy, const NeedsGrad&) {
    return std::vector<Tensor>{gy.to(from)};
  });
}

Tensor flatten(const Tensor& x) {
  ICH_CHECK(x.dim() >= 1, "flatten of a 0-d tensor");
  return reshape(x, {x.size(0), x.numel() / std::max<int64_t>(x.size(0), 1)});
}

}  // namespace ich
