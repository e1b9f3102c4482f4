// rnn.h: torch.nn.LSTM and torch.nn.GRU as modules: multi-layer,
// bidirectional, batch-first, over padded sequences with lengths (the op is
// rnn_layer in engine/ops/rnn.h; docs/layers/rnn.md explains it).
//
// Parameters, in torch's order and names, per layer k and direction
// (suffix "" or "_reverse"): weight_ih_l{k}{s} (G*H, in_k), weight_hh_l{k}{s}
// (G*H, H), bias_ih_l{k}{s}, bias_hh_l{k}{s} (G*H); in_0 = input_size, later
// layers take both directions' outputs (D*H). Gate order: i, f, g, o (LSTM),
// r, z, n (GRU). Initialised uniform in +-1/sqrt(H), as torch. A state_dict
// of torch.nn.LSTM(input_size, hidden_size, num_layers, bidirectional=...,
// batch_first=True) loads as it is. Not supported: dropout between layers,
// proj_size, initial states other than zero.
#pragma once
#include <array>
#include <vector>

#include "engine/random.h"
#include "engine/ops/rnn.h"
#include "layers/module.h"

namespace ich {

struct RnnOptions {
  RnnCell cell = RnnCell::LSTM;
  int64_t input_size = 0, hidden_size = 0, num_layers = 1;
  bool bidirectional = false, bias = true;
};

class RNN : public Module {
 public:
  RNN(const RnnOptions& o, Generator& gen, DType dtype = DType::Float32);
  // x (B, T, input_size), every sequence of length T.
  Tensor forward(const Tensor& x) override;
  // x (B, T, input_size), lengths[b] valid steps of sequence b -> (B, T,
  // D*H), zero past each length; h_n, c_n (LSTM) receive the final states
  // (num_layers*D, B, H) as torch orders them (no gradient through them).
  Tensor forward(const Tensor& x, const std::vector<int64_t>& lengths, Tensor* h_n = nullptr, Tensor* c_n = nullptr);
  std::string type_name() const override { return o_.cell == RnnCell::LSTM ? "LSTM" : "GRU"; }
  const RnnOptions& options() const { return o_; }

 private:
  RnnOptions o_;
  // Per layer and direction: w_ih, w_hh, b_ih, b_hh as registered (read at
  // each forward: to(device) replaces the tensors behind them).
  std::vector<std::vector<std::array<Tensor*, 4>>> params_;
};

}  // namespace ich
