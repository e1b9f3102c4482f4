// rnn.h: the recurrent op (engine/ops/rnn.cpp), one layer of an LSTM or a
// GRU over padded batch-first sequences; layers/rnn.h stacks layers.
#pragma once
#include <vector>

#include "engine/tensor.h"

namespace ich {

enum class RnnCell { LSTM, GRU };

// One direction's parameters, torch.nn.LSTM/GRU's layout: w_ih (G*H, in),
// w_hh (G*H, H), b_ih and b_hh (G*H) or undefined; G = 4 (gates i, f, g, o)
// for the LSTM, 3 (r, z, n) for the GRU.
struct RnnDirection {
  Tensor w_ih, w_hh, b_ih, b_hh;
};

// x (B, T, in), lengths[b] in 1..T, dirs: forward, then (bidirectional)
// reverse. Returns (B, T, D*H), zero past each sequence's length. h_n and
// c_n (LSTM), when given, receive the final states (D, B, H) after each
// sequence's last valid step, as values (no gradient flows back through
// them). Initial states are zero.
Tensor rnn_layer(RnnCell cell, const Tensor& x, const std::vector<int64_t>& lengths,
                 const std::vector<RnnDirection>& dirs, Tensor* h_n = nullptr, Tensor* c_n = nullptr);

// y (M, C) = the given rows of x (N, C), distinct; the gradient goes back to
// those rows (the others get zero). Masks padding out of a loss.
Tensor select_rows(const Tensor& x, const std::vector<int64_t>& rows);

}  // namespace ich
