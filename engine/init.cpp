#include "engine/init.h"

#include <cmath>

namespace ich {

namespace {
thread_local bool skip_init = false;
}

SkipInitGuard::SkipInitGuard() : prev_(skip_init) { skip_init = true; }
SkipInitGuard::~SkipInitGuard() { skip_init = prev_; }
bool SkipInitGuard::active() { return skip_init; }

void kaiming_normal_fan_out(Tensor& w, Generator& gen) {
  ICH_CHECK(w.dim() >= 2, "kaiming_normal_fan_out: weight ", w.str(), " needs at least 2 dimensions");
  int64_t receptive = 1;
  for (int64_t d = 2; d < w.dim(); ++d) receptive *= w.size(d);
  if (skip_init) return;
  const double std = std::sqrt(2.0 / double(w.size(0) * receptive));
  Tensor v = Tensor::randn(w.shape(), gen, w.dtype());
  std::vector<double> s = v.to_vector();
  for (double& x : s) x *= std;
  w.copy_(Tensor::from_vector(s, w.shape(), w.dtype()).to(w.device()));
}

void linear_default(Tensor& weight, Tensor& bias, Generator& gen) {
  ICH_CHECK(weight.dim() == 2, "linear_default: weight ", weight.str(), " must be (out,in)");
  if (skip_init) return;
  const double bound = 1.0 / std::sqrt(double(weight.size(1)));
  weight.copy_(Tensor::uniform(weight.shape(), -bound, bound, gen, weight.dtype()).to(weight.device()));
  if (bias.defined()) bias.copy_(Tensor::uniform(bias.shape(), -bound, bound, gen, bias.dtype()).to(bias.device()));
}

}  // namespace ich
