// relu, sigmoid, add, mul, scale, sum, mean, reshape, cast: forward and backward;
// to_device_input (batches from the loader onto the device).
// relu and sigmoid save their output (as a detached alias: a tensor must not
// own the node that made it) because their derivatives are cheapest from y.
#include "engine/autograd.h"
#include "engine/graph.h"
#include "engine/ops.h"
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

Tensor bce_with_logits(const Tensor& logits, const Tensor& target, const Tensor& pos_weight, const Tensor& weight) {
  ICH_CHECK(logits.shape() == target.shape(), "bce_with_logits: logits ", logits.str(), " and target ", target.str(),
            " differ in shape");
  ICH_CHECK(logits.numel() > 0, "bce_with_logits: empty batch");
  same_device_dtype("bce_with_logits", logits, {&target, &pos_weight, &weight});
  ICH_CHECK(!target.requires_grad() && !(pos_weight.defined() && pos_weight.requires_grad()) &&
                !(weight.defined() && weight.requires_grad()),
            "bce_with_logits: gradients for target, pos_weight or weight are not supported");
  const Tensor xc = logits.contiguous(), tc = target.contiguous();
  const Tensor pw = pos_weight.defined() ? pos_weight.contiguous() : Tensor();
  const Tensor cw = weight.defined() ? weight.contiguous() : Tensor();
  Tensor loss = empty_on(logits, {});
  ICH_DISPATCH(logits.device(), bce_with_logits_forward, xc, tc, pw, cw, loss);
  return record("bce_with_logits", loss, {logits},
                [xs = xc.detach(), tc, pw, cw](const Tensor& gloss, const NeedsGrad&) {
                  Tensor gx = empty_like(xs);
                  ICH_DISPATCH(xs.device(), bce_with_logits_backward, gloss.contiguous(), xs, tc, pw, cw, gx);
                  return std::vector<Tensor>{gx};
                });
}

Tensor to_device_input(const Tensor& batch, Device d) {
  if (batch.dtype() != DType::UInt8) return batch.to(d);
  if (batch.device() == d) return normalize_input(batch.contiguous());
  const Tensor host = batch.to(Device::cpu()).contiguous();
  Tensor bytes = Tensor::empty(host.shape(), DType::UInt8, d);
  load_input_(bytes, host);
  return normalize_input(bytes);
}

void load_input_(Tensor& dst, const Tensor& host) {
  ICH_CHECK((host.device().is_cpu() || host.device() == dst.device()) && host.shape() == dst.shape() &&
                host.dtype() == dst.dtype(),
            "load_input_: ", host.str(), " does not fit the input buffer ", dst.str());
  ICH_CHECK(!capturing(), "load_input_ inside a captured step: inputs are loaded before the replay");
  if (dst.device() == host.device()) return dst.copy_(host);  // on the CPU, or already on the device
  const MemoryFormat f = memory_format_of(dst);
  ICH_CHECK(dst.is_contiguous(f), "load_input_: the buffer ", dst.str(), " is not dense");
  const Tensor h = host.contiguous(f);
#ifdef ICH_WITH_CUDA
  cuda::upload_async(dst.raw_data(), h.raw_data(), size_t(h.numel()) * dtype_size(h.dtype()), dst.device());
#else
  missing_kernel("upload_async", dst.device());
#endif
}

Tensor normalize_input(const Tensor& bytes) {
  Tensor y = Tensor::empty(bytes.shape(), DType::Float32, bytes.device());
  ICH_DISPATCH(bytes.device(), normalize_u8, bytes, y);
  return y;
}

}  // namespace ich
