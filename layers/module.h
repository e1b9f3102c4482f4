// module.h: the Module abstraction that layers are built from.
//
// A Module owns named parameters (leaves that require grad, updated by the
// optimizer) and named buffers (state such as BatchNorm's running
// statistics), and named child modules. Names compose with dots exactly as
// PyTorch's state_dict does ("layer3.17.conv2.weight"), in registration
// order: a module's own parameters, then its buffers, then its children's.
// train()/eval() switch the mode recursively (BatchNorm reads it).
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"
#include "weights/weights_file.h"

namespace ich {

class Module;
// Called after every module's forward on this thread while set: the hook
// that inspection (layers/summary.h) uses to see each layer's output.
using ForwardObserver = std::function<void(Module& m, const Tensor& input, const Tensor& output)>;
// Whether a forward observer is watching this thread (fused paths, which
// skip modules, then run the modules one by one so that each is seen).
bool forward_observed();

class ForwardObserverScope {
 public:
  explicit ForwardObserverScope(ForwardObserver f);
  ~ForwardObserverScope();
  ForwardObserverScope(const ForwardObserverScope&) = delete;
  ForwardObserverScope& operator=(const ForwardObserverScope&) = delete;

 private:
  ForwardObserver prev_;
};

class Module {
 public:
  virtual ~Module() = default;
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  virtual Tensor forward(const Tensor& x) = 0;
  // Runs forward(), then tells the forward observer, if one is set.
  Tensor operator()(const Tensor& x);
  virtual std::string type_name() const = 0;

  NamedTensors named_parameters() const;
  NamedTensors named_buffers() const;
  NamedTensors state_dict() const;  // parameters and buffers, torch's order
  std::vector<Tensor> parameters() const;
  std::vector<std::pair<std::string, Module*>> named_children() const;
  // Every module in the tree with its dotted name ("" for this one).
  std::vector<std::pair<std::string, Module*>> named_modules();

  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }
  // Moves parameters and buffers to a device (parameters stay leaves that
  // require grad).
  void to(Device d);
  // Converts floating-point parameters and buffers to a floating dtype
  // (float64 for the oracle comparisons); integer buffers stay as they are.
  void to(DType t);
  int64_t parameter_count() const;

 protected:
  // An undefined t registers an absent optional parameter (bias=False).
  Tensor& register_parameter(const std::string& name, Tensor t);
  Tensor& register_buffer(const std::string& name, Tensor t);
  template <class M> M& register_module(const std::string& name, std::shared_ptr<M> m) {
    children_.emplace_back(name, m);
    return *m;
  }
  // Swaps the child registered under name (keeps its place in the order).
  void replace_module(const std::string& name, std::shared_ptr<Module> m);

 private:
  void collect(const std::string& prefix, bool params, bool buffers, NamedTensors& out) const;
  // unique_ptr keeps each Tensor's address stable for the references
  // register_* returned to the subclass.
  std::vector<std::pair<std::string, std::unique_ptr<Tensor>>> params_, buffers_;
  std::vector<std::unique_ptr<Tensor>> absent_;  // optional parameters left out
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

}  // namespace ich
