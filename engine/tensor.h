// tensor.h: the tensor, the one data type every layer above works with.
//
// A Tensor is a handle (shared_ptr) to a TensorImpl: a logical shape, strides
// in elements, an offset, a dtype, and shared Storage on a device. Copying a
// Tensor copies the handle, not the data (as in PyTorch). Views (detach, view,
// channels-last strides) share Storage.
//
// Memory formats. The logical layout of an image batch is always NCHW:
// shape (N,C,H,W). Channels-last (NHWC in memory) is the same logical tensor
// with strides (H*W*C, 1, W*C, C). CPU kernels read NCHW-contiguous data and
// call contiguous() at their entry, which is the one conversion point; the
// CUDA convolution path keeps channels-last end to end.
//
// Autograd state lives here too: requires_grad, the accumulated .grad of a
// leaf, and grad_fn, the Node that produced a non-leaf (engine/autograd.h).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/device.h"
#include "engine/dtype.h"
#include "engine/error.h"

namespace ich {

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);
int64_t shape_numel(const Shape& s);

enum class MemoryFormat { Contiguous, ChannelsLast };

class Allocator;

// Raw bytes on a device, freed through the allocator they came from: the
// device's, or the private pool active when they were allocated
// (engine/allocator.h), which they then keep alive.
struct Storage {
  Storage(size_t bytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data = nullptr;
  size_t bytes = 0;
  Device device;
  Allocator* allocator = nullptr;
  std::shared_ptr<Allocator> pool;
};

class Generator;
struct Node;

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // in elements
  Shape shape;
  Shape strides;  // in elements
  DType dtype = DType::Float32;
  // autograd
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;  // leaves only: accumulated gradient
  std::shared_ptr<Node> grad_fn;     // non-leaves: the op that made this tensor
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- factories -------------------------------------------------------
  static Tensor empty(const Shape& shape, DType dtype = DType::Float32, Device device = Device::cpu(),
                      MemoryFormat fmt = MemoryFormat::Contiguous);
  static Tensor zeros(const Shape& shape, DType dtype = DType::Float32, Device device = Device::cpu());
  static Tensor ones(const Shape& shape, DType dtype = DType::Float32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::Float32, Device device = Device::cpu());
  // Standard normal / uniform [lo, hi) samples from a seeded generator,
  // drawn in row-major order, so a seed gives the same tensor everywhere.
  static Tensor randn(const Shape& shape, Generator& gen, DType dtype = DType::Float32);
  static Tensor uniform(const Shape& shape, double lo, double hi, Generator& gen, DType dtype = DType::Float32);
  // Copies host values (row-major) into a new CPU tensor of the given dtype.
  static Tensor from_vector(const std::vector<double>& values, const Shape& shape, DType dtype = DType::Float32);
  template <class T> static Tensor from_data(const T* values, const Shape& shape);

  // ---- metadata --------------------------------------------------------
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  const Shape& strides() const { return impl().strides; }
  int64_t dim() const { return int64_t(impl().shape.size()); }
  int64_t size(int64_t d) const;
  int64_t numel() const { return shape_numel(impl().shape); }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage->device; }
  int64_t offset() const { return impl().offset; }
  bool is_contiguous(MemoryFormat fmt = MemoryFormat::Contiguous) const;
  std::string str() const;  // "float32[2, 3, 4] on cpu"

  // ---- data access (CPU, checked dtype) ---------------------------------
  template <class T> T* data();
  template <class T> const T* data() const;
  void* raw_data() const;  // first element, any device
  std::vector<double> to_vector() const;  // values in logical row-major order, as double
  double item() const;                    // the single value of a one-element tensor

  // ---- copies and views (no autograd) ------------------------------------
  Tensor contiguous(MemoryFormat fmt = MemoryFormat::Contiguous) const;  // self if already so
  Tensor clone() const;
  Tensor to(DType dtype) const;
  Tensor to(Device device) const;
  Tensor view(const Shape& shape) const;  // same storage; needs a contiguous tensor
  Tensor transpose(int64_t d0, int64_t d1) const;  // same storage, two dimensions swapped (strided)
  Tensor select0(int64_t i) const;                 // same storage: t[i], the first dimension dropped
  Tensor detach() const;                  // same storage, no autograd history
  void copy_(const Tensor& src);          // values of src (same shape) into self
  void fill_(double value);
  void zero_() { fill_(0.0); }

  // ---- autograd ----------------------------------------------------------
  bool requires_grad() const { return impl().requires_grad; }
  Tensor& set_requires_grad(bool r);  // leaves only
  bool is_leaf() const { return impl().grad_fn == nullptr; }
  Tensor grad() const { return Tensor(impl().grad); }
  void set_grad(const Tensor& g) { impl().grad = g.impl_; }
  void zero_grad() { impl().grad.reset(); }  // PyTorch's set_to_none=True
  const std::shared_ptr<Node>& grad_fn() const { return impl().grad_fn; }
  // Reverse-mode differentiation from this tensor. Without a gradient, the
  // tensor must hold one element (a loss) and its gradient is 1.
  void backward(const Tensor& gradient = Tensor(), bool retain_graph = false) const;

  TensorImpl& impl() const {
    ICH_CHECK(impl_ != nullptr, "use of an undefined tensor");
    return *impl_;
  }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& o) const { return impl_ == o.impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

Shape contiguous_strides(const Shape& shape, MemoryFormat fmt = MemoryFormat::Contiguous);
// ChannelsLast for a 4-D tensor laid out N,H,W,C (and not also N,C,H,W, as
// when C or H*W is 1); otherwise Contiguous.
MemoryFormat memory_format_of(const Tensor& t);
MemoryFormat memory_format_of(const Shape& shape, const Shape& strides);

template <class T> T* Tensor::data() {
  ICH_CHECK(dtype() == dtype_of<T>(), "tensor ", str(), ": data<", dtype_name(dtype_of<T>()), "> requested");
  ICH_CHECK(device().is_cpu(), "tensor ", str(), ": host data requested for a device tensor");
  return static_cast<T*>(impl().storage->data) + impl().offset;
}
template <class T> const T* Tensor::data() const { return const_cast<Tensor*>(this)->data<T>(); }

template <class T> Tensor Tensor::from_data(const T* values, const Shape& shape) {
  Tensor t = empty(shape, dtype_of<T>());
  std::copy(values, values + t.numel(), t.data<T>());
  return t;
}

}  // namespace ich
