// layers.h: the basic layers, each a thin Module over one op of engine/ops.h,
// with torch.nn's parameter names, shapes and initialisation.
#pragma once
#include <memory>

#include "engine/kernels.h"
#include "engine/ops.h"
#include "engine/random.h"
#include "layers/module.h"

namespace ich {

// weight (out, in/groups, k, k), optional bias (out); kaiming normal
// (fan_out, relu) as torchvision's ResNet; bias zero.
class Conv2d : public Module {
 public:
  Conv2d(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding, int64_t groups, bool bias,
         Generator& gen, DType dtype = DType::Float32);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Conv2d"; }
  const Conv2dParams& params() const { return p_; }
  Tensor& weight;
  Tensor& bias;  // undefined without bias

 private:
  Conv2dParams p_;
};

// weight 1, bias 0, running_mean 0, running_var 1, num_batches_tracked 0;
// eps 1e-5, momentum 0.1.
class BatchNorm2d : public Module {
 public:
  explicit BatchNorm2d(int64_t channels, DType dtype = DType::Float32);
  Tensor forward(const Tensor& x) override;
  // relu(this(x) + residual) (residual may be undefined): in training one
  // fused op (engine/ops.h batch_norm_relu), in evaluation the separate ops.
  Tensor forward_relu(const Tensor& x, const Tensor& residual = Tensor());
  std::string type_name() const override { return "BatchNorm2d"; }
  Tensor &weight, &bias, &running_mean, &running_var, &num_batches_tracked;
  double eps = 1e-5, momentum = 0.1;
  // When set, training normalises over the whole batch of every process
  // (engine/ops.h sync_batch_norm2d; ich-train --sync-bn).
  StatsReducer sync;
};

// Sets (or, with an empty reducer, clears) every BatchNorm2d's `sync` in m.
void set_sync_batch_norm(Module& m, const StatsReducer& reduce);

// weight (out, in), bias (out); PyTorch's default init.
class Linear : public Module {
 public:
  Linear(int64_t in, int64_t out, Generator& gen, bool bias = true, DType dtype = DType::Float32);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Linear"; }
  Tensor& weight;
  Tensor& bias;
};

class ReLU : public Module {
 public:
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "ReLU"; }
};

class MaxPool2d : public Module {
 public:
  MaxPool2d(int64_t kernel, int64_t stride, int64_t padding);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "MaxPool2d"; }

 private:
  Pool2dParams p_;
};

class AdaptiveAvgPool2d : public Module {
 public:
  AdaptiveAvgPool2d(int64_t out_h = 1, int64_t out_w = 1) : h_(out_h), w_(out_w) {}
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "AdaptiveAvgPool2d"; }

 private:
  int64_t h_, w_;
};

// Children named "0", "1", ... run in order.
class Sequential : public Module {
 public:
  template <class M> M& add(std::shared_ptr<M> m) { return register_module(std::to_string(size_++), std::move(m)); }
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Sequential"; }
  int64_t size() const { return size_; }

 private:
  int64_t size_ = 0;
};

}  // namespace ich
