// linear.cpp: the fully connected layer on the CPU, y = x w^T + b.
//
// x (N,in), w (out,in), b (out). Backward:
//   dx = dy w        (N,out)x(out,in)
//   dw = dy^T x      (out,N)x(N,in)
//   db = sum of dy over the N rows
#include "engine/cpu/cpu_util.h"
#include "engine/cpu/gemm.h"
#include "engine/kernels.h"

namespace ich::cpu {

void linear_forward(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y) {
  const char* k = "linear_forward";
  expect(x, k, "x", x.dtype());
  expect(w, k, "w", x.dtype());
  expect(y, k, "y", x.dtype());
  ICH_CHECK(x.dim() == 2 && w.dim() == 2 && x.size(1) == w.size(1), k, ": x ", x.str(), " and w ", w.str(),
            " do not match (expected (N,in) and (out,in))");
  const int64_t N = x.size(0), in = x.size(1), out = w.size(0);
  if (b.defined()) {
    expect(b, k, "b", x.dtype());
    ICH_CHECK(b.numel() == out, k, ": bias ", b.str(), " for ", out, " outputs");
  }
  dispatch_float(x, k, [&](auto zero) {
    using T = decltype(zero);
    T* yp = y.data<T>();
    gemm<T>(false, true, N, out, in, T(1), x.data<T>(), in, w.data<T>(), in, T(0), yp, out);
    if (b.defined()) {
      const T* bp = b.data<T>();
      for (int64_t n = 0; n < N; ++n)
        for (int64_t o = 0; o < out; ++o) yp[n * out + o] += bp[o];
    }
  });
}

void linear_backward_input(const Tensor& gy, const Tensor& w, Tensor& gx) {
  const char* k = "linear_backward_input";
  expect(gy, k, "gy", w.dtype());
  expect(w, k, "w", w.dtype());
  expect(gx, k, "gx", w.dtype());
  const int64_t N = gy.size(0), out = w.size(0), in = w.size(1);
  dispatch_float(w, k, [&](auto zero) {
    using T = decltype(zero);
    gemm<T>(false, false, N, in, out, T(1), gy.data<T>(), out, w.data<T>(), in, T(0), gx.data<T>(), in);
  });
}

void linear_backward_params(const Tensor& gy, const Tensor& x, Tensor& gw, Tensor& gb) {
  const char* k = "linear_backward_params";
  expect(gy, k, "gy", x.dtype());
  expect(x, k, "x", x.dtype());
  const int64_t N = x.size(0), in = x.size(1), out = gy.size(1);
  dispatch_float(x, k, [&](auto zero) {
    using T = decltype(zero);
    const T* g = gy.data<T>();
    if (gw.defined()) {
      expect(gw, k, "gw", x.dtype());
      gemm<T>(true, false, out, in, N, T(1), g, out, x.data<T>(), in, T(0), gw.data<T>(), in);
    }
    if (gb.defined()) {
      expect(gb, k, "gb", x.dtype());
      T* bp = gb.data<T>();
      for (int64_t o = 0; o < out; ++o) {
        double s = 0;
        for (int64_t n = 0; n < N; ++n) s += double(g[n * out + o]);
        bp[o] = T(s);
      }
    }
  });
}

}  // namespace ich::cpu
