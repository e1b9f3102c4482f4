// elementwise.cpp: pointwise ops and the full sum, on the CPU.
//
//   relu:     y = max(x, 0);          dx = dy * (y > 0)   (0 at the kink, as PyTorch)
//   sigmoid:  y = 1 / (1 + e^-x);     dx = dy * y * (1 - y)
//   add:      y = a + b;              da = db = dy
//   mul:      y = a * b;              da = dy * b, db = dy * a
//   scale:    y = s * x;              dx = s * dy
//   sum:      y = sum(x);             dx = dy everywhere
// sum adds fixed-size blocks in double, then the block sums in order, so its
// result does not depend on the number of threads. relu, add and add_relu_
// also take bfloat16/float16 tensors (cpu_util.h: computed in float32,
// rounded once).
#include <cmath>
#include <vector>

#include "engine/cpu/cpu_util.h"
#include "engine/kernels.h"

namespace ich::cpu {

namespace {
// y[i] = f(inputs[i]...) over n elements, in parallel and in vectors: each
// y[i] depends on element i alone (y may be one of the inputs), which
// `simd` asserts; without it the compiler kept every pointer in memory (y
// might alias them) and a select as a branch, and relu_backward ran at a
// fifth of the memory's speed (2.4 ns an element on random signs).
template <class T, class F> void map(int64_t n, T* y, F&& f) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) y[i] = f(i);
}
void same_shape(const char* k, const Tensor& a, const Tensor& b) {
  ICH_CHECK(a.shape() == b.shape(), k, ": shapes differ: ", a.str(), " and ", b.str());
}
}  // namespace

void relu_forward(const Tensor& x, Tensor& y) {
  expect(x, "relu_forward", "x", x.dtype());
  expect(y, "relu_forward", "y", x.dtype());
  dispatch_activation(x, "relu_forward", [&](auto zero) {
    using T = decltype(zero);
    using A = wide_t<T>;
    const T* xp = x.data<T>();
    // As torch.relu: NaN stays NaN (so a NaN reaches the loss and is caught there)
    map(x.numel(), y.data<T>(), [&](int64_t i) { return A(xp[i]) <= A(0) ? T(A(0)) : xp[i]; });
  });
}

void relu_backward(const Tensor& gy, const Tensor& y, Tensor& gx) {
  for (const Tensor* t : TensorList{&gy, &y, &gx}) expect(*t, "relu_backward", "gy/y/gx", y.dtype());
  dispatch_activation(y, "relu_backward", [&](auto zero) {
    using T = decltype(zero);
    using A = wide_t<T>;
    const T *g = gy.data<T>(), *yp = y.data<T>();
    // both loaded whatever the sign: a select, not a branch on random signs
    map(y.numel(), gx.data<T>(), [&](int64_t i) {
      const T gi = g[i];
      return A(yp[i]) > A(0) ? gi : T(A(0));
    });
  });
}

void sigmoid_forward(const Tensor& x, Tensor& y) {
  expect(x, "sigmoid_forward", "x", x.dtype());
  expect(y, "sigmoid_forward", "y", x.dtype());
  dispatch_float(x, "sigmoid_forward", [&](auto zero) {
    using T = decltype(zero);
    const T* xp = x.data<T>();
    map(x.numel(), y.data<T>(), [&](int64_t i) { return T(1) / (T(1) + std::exp(-xp[i])); });
  });
}

void sigmoid_backward(const Tensor& gy, const Tensor& y, Tensor& gx) {
  for (const Tensor* t : TensorList{&gy, &y, &gx}) expect(*t, "sigmoid_backward", "gy/y/gx", y.dtype());
  dispatch_float(y, "sigmoid_backward", [&](auto zero) {
    using T = decltype(zero);
    const T *g = gy.data<T>(), *yp = y.data<T>();
    map(y.numel(), gx.data<T>(), [&](int64_t i) { return g[i] * yp[i] * (T(1) - yp[i]); });
  });
}

void add_forward(const Tensor& a, const Tensor& b, Tensor& y) {
  same_shape("add_forward", a, b);
  for (const Tensor* t : TensorList{&a, &b, &y}) expect(*t, "add_forward", "a/b/y", a.dtype());
  dispatch_activation(a, "add_forward", [&](auto zero) {
    using T = decltype(zero);
    using A = wide_t<T>;
    const T *ap = a.data<T>(), *bp = b.data<T>();
    map(a.numel(), y.data<T>(), [&](int64_t i) { return T(A(ap[i]) + A(bp[i])); });
  });
}

void add_inplace(Tensor& dst, const Tensor& src) {
  same_shape("add_inplace", dst, src);
  for (const Tensor* t : TensorList{&dst, &src}) expect(*t, "add_inplace", "dst/src", dst.dtype());
  dispatch_activation(dst, "add_inplace", [&](auto zero) {
    using T = decltype(zero);
    using A = wide_t<T>;
    T* d = dst.data<T>();
    const T* s = src.data<T>();
    map(dst.numel(), d, [&](int64_t i) { return T(A(d[i]) + A(s[i])); });
  });
}

void mul_forward(const Tensor& a, const Tensor& b, Tensor& y) {
  same_shape("mul_forward", a, b);
  for (const Tensor* t : TensorList{&a, &b, &y}) expect(*t, "mul_forward", "a/b/y", a.dtype());
  dispatch_float(a, "mul_forward", [&](auto zero) {
    using T = decltype(zero);
    const T *ap = a.data<T>(), *bp = b.data<T>();
    map(a.numel(), y.data<T>(), [&](int64_t i) { return ap[i] * bp[i]; });
  });
}

void scale_forward(const Tensor& x, double s, Tensor& y) {
  for (const Tensor* t : TensorList{&x, &y}) expect(*t, "scale_forward", "x/y", x.dtype());
  dispatch_float(x, "scale_forward", [&](auto zero) {
    using T = decltype(zero);
    const T* xp = x.data<T>();
    map(x.numel(), y.data<T>(), [&](int64_t i) { return T(s) * xp[i]; });
  });
}

void sum_forward(const Tensor& x, Tensor& y) {
  expect(x, "sum_forward", "x", x.dtype());
  expect(y, "sum_forward", "y", x.dtype());
  dispatch_float(x, "sum_forward", [&](auto zero) {
    using T = decltype(zero);
    const T* xp = x.data<T>();
    const int64_t n = x.numel(), blocks = (n + kReduceBlock - 1) / kReduceBlock;
    std::vector<double> part(size_t(blocks), 0.0);
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      double s = 0;
      const int64_t end = std::min(n, (b + 1) * kReduceBlock);
      for (int64_t i = b * kReduceBlock; i < end; ++i) s += double(xp[i]);
      part[size_t(b)] = s;
    }
    double total = 0;
    for (double s : part) total += s;
    y.data<T>()[0] = T(total);
  });
}

void fill_like_scalar(const Tensor& gy, double s, Tensor& gx) {
  expect(gy, "fill_like_scalar", "gy", gy.dtype());
  expect(gx, "fill_like_scalar", "gx", gy.dtype());
  dispatch_float(gy, "fill_like_scalar", [&](auto zero) {
    using T = decltype(zero);
    const T v = T(double(gy.data<T>()[0]) * s);
    map(gx.numel(), gx.data<T>(), [&](int64_t) { return v; });
  });
}

void add_relu_(Tensor& y, const Tensor& r) {
  const char* k = "add_relu_";
  dispatch_activation(y, k, [&](auto z) {
    using T = decltype(z);
    using A = wide_t<T>;
    expect(y, k, "y", y.dtype());
    if (r.defined()) expect(r, k, "residual", y.dtype());
    ICH_CHECK(!r.defined() || r.shape() == y.shape(), k, ": residual ", r.str(), " for ", y.str());
    T* p = y.template data<T>();
    const T* q = r.defined() ? r.template data<T>() : nullptr;
    const int64_t n = y.numel();
#pragma omp parallel for if (n > (1 << 16))
    for (int64_t i = 0; i < n; ++i) {
      const A v = q ? A(p[i]) + A(q[i]) : A(p[i]);
      p[i] = T(v <= A(0) ? A(0) : v);  // NaN stays NaN, as torch.relu
    }
  });
}

}  // namespace ich::cpu
