// optim.h: optimizers with torch.optim's semantics.
//
// An optimizer holds the parameter tensors (leaves that require grad) and its
// per-parameter state. step() reads each parameter's accumulated .grad and
// updates the parameter in place under no-grad; parameters without a
// gradient are skipped, as in PyTorch. zero_grad() drops the gradients
// (set_to_none). The state is exposed by name so that checkpoints can save
// and restore it exactly.
#pragma once
#include <string>
#include <vector>

#include "engine/kernels.h"
#include "engine/tensor.h"

namespace ich {

class Optimizer {
 public:
  explicit Optimizer(std::vector<Tensor> params);
  virtual ~Optimizer() = default;
  virtual void step() = 0;
  void zero_grad();
  const std::vector<Tensor>& params() const { return params_; }
  // Named state tensors ("exp_avg.3" is param 3's first moment) and the step
  // count, for checkpoints; load_state() checks names and shapes.
  virtual std::vector<std::pair<std::string, Tensor>> state() = 0;
  int64_t steps() const { return steps_; }
  virtual void set_steps(int64_t s) { steps_ = s; }

 protected:
  std::vector<Tensor> params_;
  int64_t steps_ = 0;
};

class Adam final : public Optimizer {
 public:
  struct Options {
    double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  };
  Adam(std::vector<Tensor> params, Options o);
  void step() override;
  std::vector<std::pair<std::string, Tensor>> state() override;
  Options& options() { return o_; }

  // For a captured step (engine/graph.h; PyTorch's Adam(capturable=True)):
  // the step count moves to a tensor on the parameters' device, which step()
  // advances there and the bias correction reads there; the update is
  // skipped on the device when skip_if (one float32 element) is non-zero.
  // step() then leaves steps() alone: the caller, who reads the outcome
  // after the replay, keeps the host's count with set_steps().
  void keep_count_on_device(Tensor skip_if);
  void set_steps(int64_t s) override;  // both copies (a resume)
  void note_device_step() { ++steps_; }  // the host's copy after a step the device counted: no write there
  const Tensor& device_count() const { return device_count_; }

 private:
  Options o_;
  std::vector<Tensor> exp_avg_, exp_avg_sq_;
  Tensor device_count_, skip_if_;
};

class Sgd final : public Optimizer {
 public:
  struct Options {
    double lr = 1e-2, momentum = 0.0, dampening = 0.0, weight_decay = 0.0;
    bool nesterov = false;
  };
  Sgd(std::vector<Tensor> params, Options o);
  void step() override;
  std::vector<std::pair<std::string, Tensor>> state() override;

 private:
  Options o_;
  std::vector<Tensor> buf_;
  std::vector<bool> has_buf_;
};

}  // namespace ich
