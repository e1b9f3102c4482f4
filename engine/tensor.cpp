#include "engine/tensor.h"

#include <cstring>
#include <sstream>

#include "engine/allocator.h"
#include "engine/graph.h"
#include "engine/autograd.h"
#include "engine/half.h"
#include "engine/random.h"
#ifdef ICH_WITH_CUDA
#include "engine/cuda/runtime.h"
#endif

namespace ich {


std::string shape_str(const Shape& s) {
  std::ostringstream o;
  o << "[";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << "]";
  return o.str();
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

namespace {
// a * b, or an error naming the shape when it does not fit in 64 bits
int64_t checked_mul(int64_t a, int64_t b, const Shape& shape) {
  int64_t r = 0;
  ICH_CHECK(!__builtin_mul_overflow(a, b, &r), "shape ", shape_str(shape), " is too large: its strides overflow 64 bits");
  return r;
}
}  // namespace

Shape contiguous_strides(const Shape& shape, MemoryFormat fmt) {
  Shape st(shape.size());
  for (int64_t d : shape) ICH_CHECK(d >= 0, "shape ", shape_str(shape), " has a negative size");
  if (fmt == MemoryFormat::ChannelsLast) {
    ICH_CHECK(shape.size() == 4, "channels-last needs a 4-d (N,C,H,W) shape, got ", shape_str(shape));
    const int64_t C = shape[1], H = shape[2], W = shape[3];
    const int64_t WC = checked_mul(W, C, shape);
    return {checked_mul(H, WC, shape), 1, WC, C};
  }
  // Every stride, not just the element count: a zero size elsewhere makes the
  // count 0 while the strides of the other sizes still overflow.
  int64_t s = 1;
  for (int64_t i = int64_t(shape.size()) - 1; i >= 0; --i) {
    st[i] = s;
    if (i > 0) s = checked_mul(s, shape[i], shape);
  }
  return st;
}

Storage::Storage(size_t n, Device d) : bytes(n), device(d), pool(active_pool(d)) {
  allocator = pool ? pool.get() : &allocator_for(d);
  data = allocator->allocate(n);
}
Storage::~Storage() { allocator->deallocate(data, bytes); }

// ---- factories -----------------------------------------------------------

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device, MemoryFormat fmt) {
  for (int64_t d : shape) ICH_CHECK(d >= 0, "negative dimension in shape ", shape_str(shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(size_t(shape_numel(shape)) * dtype_size(dtype), device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape, fmt);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0, dtype, device); }
Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1.0, dtype, device); }

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(value);
  return t;
}

namespace {
template <class F> Tensor sample(const Shape& shape, DType dtype, F&& draw) {
  std::vector<double> v(size_t(shape_numel(shape)));
  for (auto& x : v) x = draw();
  return Tensor::from_vector(v, shape, dtype);
}
}  // namespace

Tensor Tensor::randn(const Shape& shape, Generator& gen, DType dtype) {
  return sample(shape, dtype, [&] { return gen.normal(); });
}
Tensor Tensor::uniform(const Shape& shape, double lo, double hi, Generator& gen, DType dtype) {
  return sample(shape, dtype, [&] { return gen.uniform(lo, hi); });
}

namespace {
// Calls f(value_as_T&) for each element; T chosen from the dtype.
template <class F> void with_dtype(DType t, const char* what, F&& f) {
  switch (t) {
    case DType::Float32: f(float{}); return;
    case DType::Float64: f(double{}); return;
    case DType::UInt8: f(uint8_t{}); return;
    case DType::Int64: f(int64_t{}); return;
    case DType::BFloat16: f(BFloat16{}); return;
    case DType::Float16: f(Float16{}); return;
  }
  throw Error(std::string(what) + ": unknown dtype " + std::to_string(int(t)));
}

// One element to another type; the 16-bit floats go through float.
template <class T> constexpr bool is_half = std::is_same_v<T, BFloat16> || std::is_same_v<T, Float16>;
template <class D, class S> D convert(S v) {
  if constexpr (is_half<S>) return D(float(v));
  else return D(v);
}
}  // namespace

Tensor Tensor::from_vector(const std::vector<double>& values, const Shape& shape, DType dtype) {
  ICH_CHECK(int64_t(values.size()) == shape_numel(shape), "from_vector: ", values.size(), " values for shape ",
            shape_str(shape));
  Tensor t = empty(shape, dtype);
  with_dtype(dtype, "from_vector", [&](auto zero) {
    using T = decltype(zero);
    T* p = t.data<T>();
    for (size_t i = 0; i < values.size(); ++i) p[i] = T(values[i]);
  });
  return t;
}

// ---- metadata ------------------------------------------------------------

int64_t Tensor::size(int64_t d) const {
  const int64_t n = dim();
  if (d < 0) d += n;
  ICH_CHECK(d >= 0 && d < n, "dimension ", d, " out of range for tensor ", str());
  return impl().shape[size_t(d)];
}

namespace {
// Strides of a dense tensor in that format (those of size-1 dimensions do not matter).
bool dense(const Shape& shape, const Shape& strides, MemoryFormat fmt) {
  if (fmt == MemoryFormat::ChannelsLast && shape.size() != 4) return false;
  const Shape want = contiguous_strides(shape, fmt);
  for (size_t i = 0; i < want.size(); ++i)
    if (shape[i] != 1 && strides[i] != want[i]) return false;
  return true;
}
}  // namespace

bool Tensor::is_contiguous(MemoryFormat fmt) const { return dense(shape(), strides(), fmt); }

MemoryFormat memory_format_of(const Shape& shape, const Shape& strides) {
  return !dense(shape, strides, MemoryFormat::Contiguous) && dense(shape, strides, MemoryFormat::ChannelsLast)
             ? MemoryFormat::ChannelsLast
             : MemoryFormat::Contiguous;
}

MemoryFormat memory_format_of(const Tensor& t) { return memory_format_of(t.shape(), t.strides()); }

std::string Tensor::str() const {
  if (!defined()) return "undefined tensor";
  return std::string(dtype_name(dtype())) + shape_str(shape()) + " on " + device().str();
}

void* Tensor::raw_data() const {
  return static_cast<char*>(impl().storage->data) + impl().offset * int64_t(dtype_size(dtype()));
}

// ---- strided copy ----------------------------------------------------------

namespace {
// Walks every logical index of `shape` in row-major order and calls
// f(src_offset, dst_offset) with element offsets under the two stride sets.
template <class F>
void for_each_index(const Shape& shape, const Shape& s1, const Shape& s2, F&& f) {
  const size_t nd = shape.size();
  const int64_t n = shape_numel(shape);
  if (n == 0) return;
  std::vector<int64_t> idx(nd, 0);
  int64_t o1 = 0, o2 = 0;
  for (int64_t k = 0; k < n; ++k) {
    f(o1, o2);
    for (int64_t d = int64_t(nd) - 1; d >= 0; --d) {
      if (++idx[d] < shape[d]) {
        o1 += s1[d];
        o2 += s2[d];
        break;
      }
      o1 -= s1[d] * (shape[d] - 1);
      o2 -= s2[d] * (shape[d] - 1);
      idx[d] = 0;
    }
  }
}

void copy_cpu(const Tensor& src, Tensor& dst) {
  if (src.dtype() == dst.dtype() && src.strides() == dst.strides() && src.is_contiguous() && dst.is_contiguous()) {
    std::memcpy(dst.raw_data(), src.raw_data(), size_t(src.numel()) * dtype_size(src.dtype()));
    return;
  }
  with_dtype(src.dtype(), "copy", [&](auto zs) {
    using S = decltype(zs);
    with_dtype(dst.dtype(), "copy", [&](auto zd) {
      using D = decltype(zd);
      const S* s = static_cast<const S*>(src.raw_data());
      D* d = static_cast<D*>(dst.raw_data());
      for_each_index(src.shape(), src.strides(), dst.strides(), [&](int64_t a, int64_t b) { d[b] = convert<D>(s[a]); });
    });
  });
}
}  // namespace

void Tensor::copy_(const Tensor& src) {
  ICH_CHECK(src.shape() == shape(), "copy_: source ", src.str(), " does not match destination ", str());
  if (device().is_cpu() && src.device().is_cpu()) return copy_cpu(src, *this);
#ifdef ICH_WITH_CUDA
  if (device() == src.device()) {  // on one GPU: kernels, no host in the way
    if (src.dtype() != dtype()) {
      const Tensor s = src.contiguous();
      Tensor d = is_contiguous() ? *this : empty(shape(), dtype(), device());
      cuda::cast(d.raw_data(), dtype(), s.raw_data(), s.dtype(), numel(), device());
      if (d.raw_data() != raw_data()) copy_(d);
      return;
    }
    return cuda::copy_strided(raw_data(), strides(), src.raw_data(), src.strides(), shape(), dtype_size(dtype()),
                              device());
  }
  ICH_CHECK(src.dtype() == dtype() && src.strides() == strides() && src.is_contiguous(memory_format_of(src)),
            "copy_ between devices needs dense tensors of one dtype and layout: ", src.str(), " -> ", str());
  ICH_CHECK(!capturing(), "copy_ from ", src.str(), " to ", str(),
            " inside a captured step: a graph replay would not copy it again (engine/graph.h)");
  cuda::copy_bytes(raw_data(), device(), src.raw_data(), src.device(), size_t(numel()) * dtype_size(dtype()));
#else
  throw Error("copy_ from " + src.str() + " to " + str() + ": this build has no CUDA backend");
#endif
}

void Tensor::fill_(double value) {
  if (device().is_cuda()) {
#ifdef ICH_WITH_CUDA
    ICH_CHECK(is_contiguous(), "fill_ on ", str(), ": needs a contiguous device tensor");
    return cuda::fill(raw_data(), device(), numel(), dtype(), value);
#else
    throw Error("fill_ on " + str() + ": this build has no CUDA backend");
#endif
  }
  with_dtype(dtype(), "fill_", [&](auto z) {
    using T = decltype(z);
    T* p = static_cast<T*>(raw_data());
    for_each_index(shape(), strides(), strides(), [&](int64_t a, int64_t) { p[a] = T(value); });
  });
}

Tensor Tensor::contiguous(MemoryFormat fmt) const {
  if (is_contiguous(fmt)) return *this;
  Tensor out = empty(shape(), dtype(), device(), fmt);
  out.copy_(*this);
  return out;
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape(), dtype(), device(), memory_format_of(*this));  // the layout is kept
  out.copy_(*this);
  return out;
}

Tensor Tensor::to(DType t) const {
  if (t == dtype()) return *this;
  Tensor out = empty(shape(), t, device(), memory_format_of(*this));  // the layout is kept
  out.copy_(*this);
  return out;
}

Tensor Tensor::to(Device d) const {
  if (d == device()) return *this;
  const MemoryFormat f = memory_format_of(*this);  // the layout travels too
  Tensor src = contiguous(f);
  Tensor out = empty(shape(), dtype(), d, f);
  out.copy_(src);
  return out;
}

Tensor Tensor::view(const Shape& s) const {
  ICH_CHECK(shape_numel(s) == numel(), "view: cannot view ", str(), " as ", shape_str(s));
  ICH_CHECK(is_contiguous(), "view: tensor ", str(), " is not contiguous");
  auto impl2 = std::make_shared<TensorImpl>();
  impl2->storage = impl().storage;
  impl2->offset = impl().offset;
  impl2->shape = s;
  impl2->strides = contiguous_strides(s);
  impl2->dtype = dtype();
  return Tensor(std::move(impl2));
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  ICH_CHECK(d0 >= 0 && d1 >= 0 && d0 < dim() && d1 < dim(), "transpose: dimensions ", d0, " and ", d1, " of ", str());
  Tensor t = detach();
  std::swap(t.impl().shape[size_t(d0)], t.impl().shape[size_t(d1)]);
  std::swap(t.impl().strides[size_t(d0)], t.impl().strides[size_t(d1)]);
  return t;
}

Tensor Tensor::select0(int64_t i) const {
  ICH_CHECK(dim() >= 1 && i >= 0 && i < size(0), "select0: index ", i, " out of range for ", str());
  Tensor t = detach();
  t.impl().offset += i * strides()[0];
  t.impl().shape.erase(t.impl().shape.begin());
  t.impl().strides.erase(t.impl().strides.begin());
  return t;
}

Tensor Tensor::detach() const {
  auto impl2 = std::make_shared<TensorImpl>();
  impl2->storage = impl().storage;
  impl2->offset = impl().offset;
  impl2->shape = impl().shape;
  impl2->strides = impl().strides;
  impl2->dtype = impl().dtype;
  return Tensor(std::move(impl2));
}

std::vector<double> Tensor::to_vector() const {
  ICH_CHECK(!capturing(), "reading ", str(),
            " back to the host inside a captured step: a replay would not read it again (engine/graph.h)");
  Tensor c = to(Device::cpu()).contiguous().to(DType::Float64);
  const double* p = c.data<double>();
  return std::vector<double>(p, p + c.numel());
}

double Tensor::item() const {
  ICH_CHECK(numel() == 1, "item() on ", str(), ": needs exactly one element");
  return to_vector()[0];
}

Tensor& Tensor::set_requires_grad(bool r) {
  ICH_CHECK(is_leaf(), "set_requires_grad on a non-leaf tensor ", str(), ": detach() it first");
  ICH_CHECK(!r || dtype() == DType::Float32 || dtype() == DType::Float64 || is_16bit(dtype()),
            "only floating-point tensors can require gradients, got ", str());
  impl().requires_grad = r;
  return *this;
}

void Tensor::backward(const Tensor& gradient, bool retain_graph) const { run_backward(*this, gradient, retain_graph); }

}  // namespace ich
