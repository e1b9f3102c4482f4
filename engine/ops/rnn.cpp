// rnn: one layer of an LSTM or GRU over padded, batch-first sequences, both
// directions, forward and backward through time (the cells' math is in
// engine/cpu/rnn.cpp).
//
// Shapes: x (B,T,In); lengths[b] <= T valid steps of sequence b; per
// direction d: w_ih (G*H,In), w_hh (G*H,H), b_ih, b_hh (G*H), G = 4 (LSTM)
// or 3 (GRU). Output y (B,T,D*H): direction d's h in columns d*H..(d+1)*H,
// zero past a sequence's length; the reverse direction reads each sequence
// from its last valid step back to its first (as PyTorch on a packed
// sequence). Initial states are zero.
//
// Inside, time-major: x is copied to (T,B,In), so that step t of every
// tensor is one dense block. Per direction:
//   gx = x W_ih^T + b_ih for all steps at once (one GEMM);
//   per step: gh = h W_hh^T + b_hh (a GEMM), then one cell kernel.
// Backward through time, per direction, steps in the reverse of the order
// they ran: the cell kernel turns dh, dc into the gates' gradients at t and
// the state gradient that flows on; dh += dgates[t] W_hh (a GEMM). Then,
// over all steps at once: dW_hh = dgh^T hprev, dW_ih = dgx^T x, dx +=
// dgx W_ih (LSTM: dgh = dgx, the same pre-activations).
// Gradient rules: parameter gradients are written here and accumulated by
// autograd into .grad; both directions' dx add.
#include "engine/autograd.h"
#include "engine/kernels.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/op_util.h"
#include "engine/ops/rnn.h"

namespace ich {

namespace {

int64_t gates_of(RnnCell cell) { return cell == RnnCell::LSTM ? 4 : 3; }

// x (N,in) W^T + b -> y (N,out): the linear kernel on dense tensors.
void project(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y) {
  ICH_DISPATCH(x.device(), linear_forward, x, w, b, y);
}

}  // namespace

Tensor rnn_layer(RnnCell cell, const Tensor& x, const std::vector<int64_t>& lengths,
                 const std::vector<RnnDirection>& dirs, Tensor* h_n, Tensor* c_n) {
  ICH_CHECK(x.dim() == 3, "rnn_layer: input must be (batch, time, features), got ", x.str());
  ICH_CHECK(dirs.size() == 1 || dirs.size() == 2, "rnn_layer: 1 or 2 directions, got ", dirs.size());
  const int64_t B = x.size(0), T = x.size(1), In = x.size(2), G = gates_of(cell);
  const int64_t H = dirs[0].w_hh.defined() ? dirs[0].w_hh.size(1) : 0, D = int64_t(dirs.size());
  ICH_CHECK(B >= 1 && T >= 1, "rnn_layer: empty input ", x.str());
  ICH_CHECK(int64_t(lengths.size()) == B, "rnn_layer: ", lengths.size(), " lengths for a batch of ", B);
  for (int64_t L : lengths) ICH_CHECK(L >= 1 && L <= T, "rnn_layer: length ", L, " outside 1..", T);
  for (const RnnDirection& d : dirs) {
    ICH_CHECK(d.w_ih.dim() == 2 && d.w_ih.size(0) == G * H && d.w_ih.size(1) == In, "rnn_layer: weight_ih ",
              d.w_ih.str(), " is not (", G * H, ", ", In, ")");
    ICH_CHECK(d.w_hh.dim() == 2 && d.w_hh.size(0) == G * H && d.w_hh.size(1) == H, "rnn_layer: weight_hh ",
              d.w_hh.str(), " is not (", G * H, ", ", H, ")");
    for (const Tensor* b : {&d.b_ih, &d.b_hh})
      ICH_CHECK(!b->defined() || (b->dim() == 1 && b->size(0) == G * H), "rnn_layer: bias ", b->str(), " is not (",
                G * H, ")");
    same_device_dtype("rnn_layer", x, {&d.w_ih, &d.w_hh, &d.b_ih, &d.b_hh});
  }
  const Device dev = x.device();
  const DType dt = x.dtype();
  Tensor len_host = Tensor::empty({B}, DType::Int64);
  std::copy(lengths.begin(), lengths.end(), len_host.data<int64_t>());
  const Tensor len = len_host.to(dev);

  const Tensor xt = x.transpose(0, 1).contiguous();  // (T,B,In)
  const Tensor x2 = xt.view({T * B, In});
  Tensor out = Tensor::empty({T, B, D * H}, dt, dev);
  struct Saved {
    Tensor act, cprev, hprev;  // (T,B,4H), (T,B,H) LSTM only, (T,B,H)
  };
  std::vector<Saved> saved(static_cast<size_t>(D));
  if (h_n) *h_n = Tensor::empty({D, B, H}, dt, dev);
  if (c_n && cell == RnnCell::LSTM) *c_n = Tensor::empty({D, B, H}, dt, dev);
  for (int64_t d = 0; d < D; ++d) {
    const RnnDirection& w = dirs[size_t(d)];
    Tensor gx = Tensor::empty({T, B, G * H}, dt, dev);
    Tensor gx2 = gx.view({T * B, G * H});
    project(x2, w.w_ih, w.b_ih, gx2);
    Tensor h = Tensor::zeros({B, H}, dt, dev), c = Tensor::zeros({B, H}, dt, dev), gh = Tensor::empty({B, G * H}, dt, dev);
    Saved& s = saved[size_t(d)];
    s.act = Tensor::empty({T, B, 4 * H}, dt, dev);
    s.hprev = Tensor::empty({T, B, H}, dt, dev);
    if (cell == RnnCell::LSTM) s.cprev = Tensor::empty({T, B, H}, dt, dev);
    for (int64_t k = 0; k < T; ++k) {
      const int64_t t = d == 0 ? k : T - 1 - k;
      project(h, w.w_hh, w.b_hh, gh);
      if (cell == RnnCell::LSTM)
        ICH_DISPATCH(dev, lstm_step_forward, gx, gh, len, t, h, c, s.act, s.cprev, s.hprev, out, d * H);
      else
        ICH_DISPATCH(dev, gru_step_forward, gx, gh, len, t, h, s.act, s.hprev, out, d * H);
    }
    if (h_n) h_n->select0(d).copy_(h);
    if (c_n && cell == RnnCell::LSTM) c_n->select0(d).copy_(c);
  }
  const Tensor y = out.transpose(0, 1).contiguous();  // (B,T,D*H)

  std::vector<Tensor> inputs{x};
  for (const RnnDirection& d : dirs)
    for (const Tensor* p : {&d.w_ih, &d.w_hh, &d.b_ih, &d.b_hh}) inputs.push_back(*p);
  const char* name = cell == RnnCell::LSTM ? "lstm" : "gru";
  std::vector<RnnDirection> kept;  // the weights backward reads, without their autograd state
  for (const RnnDirection& d : dirs) kept.push_back({d.w_ih.detach(), d.w_hh.detach(), Tensor(), Tensor()});
  return record(name, y, inputs, [cell, dirs = kept, saved, len, x2, B, T, In, H, G, D](const Tensor& gy, const NeedsGrad& need) {
    const Device dev = gy.device();
    const DType dt = gy.dtype();
    const Tensor gout = gy.transpose(0, 1).contiguous();  // (T,B,D*H)
    std::vector<Tensor> grads(1 + 4 * size_t(D));
    Tensor dx2;
    if (need[0]) dx2 = Tensor::zeros({T * B, In}, dt, dev);
    for (int64_t d = 0; d < D; ++d) {
      const RnnDirection& w = dirs[size_t(d)];
      const Saved& s = saved[size_t(d)];
      Tensor dgx = Tensor::empty({T, B, G * H}, dt, dev);
      Tensor dgh = cell == RnnCell::LSTM ? dgx : Tensor::empty({T, B, G * H}, dt, dev);
      Tensor dh = Tensor::zeros({B, H}, dt, dev), dc = Tensor::zeros({B, H}, dt, dev), back = Tensor::empty({B, H}, dt, dev);
      for (int64_t k = T - 1; k >= 0; --k) {
        const int64_t t = d == 0 ? k : T - 1 - k;
        if (cell == RnnCell::LSTM)
          ICH_DISPATCH(dev, lstm_step_backward, gout, d * H, s.act, s.cprev, len, t, dh, dc, dgx);
        else
          ICH_DISPATCH(dev, gru_step_backward, gout, d * H, s.act, s.hprev, len, t, dh, dgx, dgh);
        ICH_DISPATCH(dev, linear_backward_input, dgh.select0(t), w.w_hh, back);
        ICH_DISPATCH(dev, add_inplace, dh, back);
      }
      const Tensor dgx2 = dgx.view({T * B, G * H}), dgh2 = dgh.view({T * B, G * H});
      const size_t base = 1 + 4 * size_t(d);
      if (need[base] || need[base + 2]) {
        Tensor gw = Tensor::empty(w.w_ih.shape(), dt, dev), gb = need[base + 2] ? Tensor::empty({G * H}, dt, dev) : Tensor();
        ICH_DISPATCH(dev, linear_backward_params, dgx2, x2, gw, gb);
        grads[base] = need[base] ? gw : Tensor();
        grads[base + 2] = gb;
      }
      if (need[base + 1] || need[base + 3]) {
        Tensor gw = Tensor::empty(w.w_hh.shape(), dt, dev), gb = need[base + 3] ? Tensor::empty({G * H}, dt, dev) : Tensor();
        ICH_DISPATCH(dev, linear_backward_params, dgh2, s.hprev.view({T * B, H}), gw, gb);
        grads[base + 1] = need[base + 1] ? gw : Tensor();
        grads[base + 3] = gb;
      }
      if (need[0]) {
        Tensor part = Tensor::empty({T * B, In}, dt, dev);
        ICH_DISPATCH(dev, linear_backward_input, dgx2, w.w_ih, part);
        ICH_DISPATCH(dev, add_inplace, dx2, part);
      }
    }
    if (need[0]) grads[0] = dx2.view({T, B, In}).transpose(0, 1).contiguous();
    return grads;
  });
}

Tensor select_rows(const Tensor& x, const std::vector<int64_t>& rows) {
  ICH_CHECK(x.dim() == 2, "select_rows: input must be (N, C), got ", x.str());
  ICH_CHECK(!rows.empty(), "select_rows: no rows");
  std::vector<char> seen(size_t(x.size(0)), 0);
  for (int64_t r : rows) {
    ICH_CHECK(r >= 0 && r < x.size(0), "select_rows: row ", r, " outside 0..", x.size(0) - 1);
    ICH_CHECK(!seen[size_t(r)], "select_rows: row ", r, " twice");
    seen[size_t(r)] = 1;
  }
  Tensor idx_host = Tensor::empty({int64_t(rows.size())}, DType::Int64);
  std::copy(rows.begin(), rows.end(), idx_host.data<int64_t>());
  const Tensor idx = idx_host.to(x.device()), xc = x.contiguous();
  Tensor y = empty_on(x, {int64_t(rows.size()), x.size(1)});
  ICH_DISPATCH(x.device(), select_rows_forward, xc, idx, y);
  const Shape xs = x.shape();
  return record("select_rows", y, {x}, [idx, xs](const Tensor& gy, const NeedsGrad&) {
    Tensor gx = empty_on(gy, xs);
    ICH_DISPATCH(gy.device(), select_rows_backward, gy.contiguous(), idx, gx);
    return std::vector<Tensor>{gx};
  });
}

}  // namespace ich
