// amp.cpp: the CPU kernels of mixed precision (engine/ops/amp.h): rounding, and
// the loss scaler's unscale/check and update.
#include <cmath>

#include "engine/cpu/cpu_util.h"
#include "engine/half.h"
#include "engine/kernels.h"

namespace ich::cpu {

void round_to_precision_(Tensor& t, DType precision) {
  expect(t, "round_to_precision_", "t", DType::Float32);
  float* p = t.data<float>();
  const int64_t n = t.numel();
  if (precision == DType::BFloat16) {
#pragma omp parallel for if (n > (1 << 16))
    for (int64_t i = 0; i < n; ++i) p[i] = bf16_bits_to_float(float_to_bf16_bits(p[i]));
  } else if (precision == DType::Float16) {
#pragma omp parallel for if (n > (1 << 16))
    for (int64_t i = 0; i < n; ++i) p[i] = fp16_bits_to_float(float_to_fp16_bits(p[i]));
  } else {
    throw Error(std::string("round_to_precision_: ") + dtype_name(precision) + " is not bfloat16 or float16");
  }
}

void unscale_check_(Tensor& g, double inv_scale, Tensor& found_inf) {
  const char* k = "unscale_check_";
  expect(found_inf, k, "found_inf", DType::Float32);
  ICH_CHECK(found_inf.numel() == 1, k, ": found_inf must hold one element");
  dispatch_float(g, k, [&](auto zero) {
    using T = decltype(zero);
    expect(g, k, "g", g.dtype());
    T* p = g.template data<T>();
    bool bad = false;
    for (int64_t i = 0; i < g.numel(); ++i) {
      p[i] = T(p[i] * inv_scale);
      bad |= !std::isfinite(p[i]);
    }
    if (bad) found_inf.data<float>()[0] = 1;
  });
}

void unscale_check_by_(Tensor& g, const Tensor& scale, Tensor& found_inf) {
  expect(scale, "unscale_check_by_", "scale", DType::Float32);
  unscale_check_(g, 1.0 / double(scale.data<float>()[0]), found_inf);
}

void update_scale_(Tensor& scale, Tensor& tracker, const Tensor& found_inf, const Tensor& skip_if, double growth,
                   double backoff, int64_t interval) {
  const char* k = "update_scale_";
  for (const Tensor* t : TensorList{&scale, &tracker, &found_inf}) expect(*t, k, "scale/tracker/found_inf", DType::Float32);
  if (skip_if.defined() && skip_if.data<float>()[0] != 0.f) return;
  float& s = scale.data<float>()[0];
  float& t = tracker.data<float>()[0];
  if (found_inf.data<float>()[0] != 0.f) {
    s = float(double(s) * backoff);
    t = 0;
  } else if ((t += 1.f) == float(interval)) {
    s = float(double(s) * growth);
    t = 0;
  }
}

}  // namespace ich::cpu
