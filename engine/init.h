// init.h: parameter initialisers with torchvision's and PyTorch's choices.
//
//   kaiming_normal_fan_out: N(0, 2/fan_out), fan_out = out_channels*kh*kw;
//     what torchvision's ResNet uses for every conv (mode="fan_out",
//     nonlinearity="relu").
//   linear_default: PyTorch's nn.Linear reset_parameters: weight and bias
//     uniform in [-1/sqrt(in), 1/sqrt(in)] (kaiming_uniform with a=sqrt(5)
//     reduces to that bound for the weight).
//   uniform_symmetric: uniform in [-bound, bound]; torch.nn.LSTM/GRU draw
//     every weight and bias so with bound 1/sqrt(hidden_size).
// Values are drawn from our Generator, so they are reproducible for a seed,
// but not the same numbers as torch's generator: comparisons with PyTorch
// pass weights through files instead.
//
// SkipInitGuard: while one is alive on a thread, both initialisers leave
// their tensors as allocated (uninitialised) and draw nothing, as
// torch.nn.utils.skip_init does. For models whose every parameter is loaded
// from a file next (load_resnext, load_checkpoint): drawing ResNeXt-101's 88M
// normals took seconds, and they were overwritten at once.
#pragma once
#include "engine/random.h"
#include "engine/tensor.h"

namespace ich {

void kaiming_normal_fan_out(Tensor& conv_weight, Generator& gen);
void linear_default(Tensor& weight, Tensor& bias, Generator& gen);
void uniform_symmetric(Tensor& t, double bound, Generator& gen);

class SkipInitGuard {
 public:
  SkipInitGuard();
  ~SkipInitGuard();
  SkipInitGuard(const SkipInitGuard&) = delete;
  SkipInitGuard& operator=(const SkipInitGuard&) = delete;
  static bool active();

 private:
  bool prev_;
};

}  // namespace ich
