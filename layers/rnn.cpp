#include "layers/rnn.h"

#include <cmath>

#include "engine/init.h"

namespace ich {

RNN::RNN(const RnnOptions& o, Generator& gen, DType dtype) : o_(o) {
  ICH_CHECK(o.input_size >= 1 && o.hidden_size >= 1 && o.num_layers >= 1, "RNN: input_size ", o.input_size,
            ", hidden_size ", o.hidden_size, " and num_layers ", o.num_layers, " must be at least 1");
  const int64_t G = o.cell == RnnCell::LSTM ? 4 : 3, H = o.hidden_size, D = o.bidirectional ? 2 : 1;
  const double bound = 1.0 / std::sqrt(double(H));
  for (int64_t k = 0; k < o.num_layers; ++k) {
    const int64_t in = k == 0 ? o.input_size : D * H;
    params_.emplace_back();
    for (int64_t d = 0; d < D; ++d) {
      const std::string s = "_l" + std::to_string(k) + (d ? "_reverse" : "");
      Tensor& w_ih = register_parameter("weight_ih" + s, Tensor::empty({G * H, in}, dtype));
      Tensor& w_hh = register_parameter("weight_hh" + s, Tensor::empty({G * H, H}, dtype));
      Tensor& b_ih = register_parameter("bias_ih" + s, o.bias ? Tensor::empty({G * H}, dtype) : Tensor());
      Tensor& b_hh = register_parameter("bias_hh" + s, o.bias ? Tensor::empty({G * H}, dtype) : Tensor());
      for (Tensor* t : {&w_ih, &w_hh, &b_ih, &b_hh}) uniform_symmetric(*t, bound, gen);
      params_.back().push_back({&w_ih, &w_hh, &b_ih, &b_hh});
    }
  }
}

Tensor RNN::forward(const Tensor& x) {
  ICH_CHECK(x.dim() == 3, type_name(), ": input must be (batch, time, features), got ", x.str());
  return forward(x, std::vector<int64_t>(size_t(x.size(0)), x.size(1)));
}

Tensor RNN::forward(const Tensor& x, const std::vector<int64_t>& lengths, Tensor* h_n, Tensor* c_n) {
  ICH_CHECK(x.dim() == 3 && x.size(2) == o_.input_size, type_name(), ": input must be (batch, time, ", o_.input_size,
            "), got ", x.str());
  Tensor h = x;
  std::vector<Tensor> hs, cs;
  for (const auto& layer : params_) {
    std::vector<RnnDirection> dirs;
    for (const auto& p : layer) dirs.push_back({*p[0], *p[1], *p[2], *p[3]});
    Tensor hl, cl;
    h = rnn_layer(o_.cell, h, lengths, dirs, h_n ? &hl : nullptr, c_n ? &cl : nullptr);
    if (h_n) hs.push_back(hl);
    if (c_n && cl.defined()) cs.push_back(cl);
  }
  // (num_layers * D, B, H), layer-major as torch: l0, l0_reverse, l1, ...
  auto stack = [](const std::vector<Tensor>& parts) {
    const int64_t D = parts[0].size(0), B = parts[0].size(1), H = parts[0].size(2);
    Tensor out = Tensor::empty({int64_t(parts.size()) * D, B, H}, parts[0].dtype(), parts[0].device());
    for (size_t k = 0; k < parts.size(); ++k)
      for (int64_t d = 0; d < D; ++d) out.select0(int64_t(k) * D + d).copy_(parts[k].select0(d));
    return out;
  };
  if (h_n) *h_n = stack(hs);
  if (c_n) *c_n = cs.empty() ? Tensor() : stack(cs);
  return h;
}

}  // namespace ich
