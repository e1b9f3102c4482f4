// rnn.cpp: the recurrent cells on the CPU, one time step at a time (the
// recurrence, the matrix products and backward through time are in
// engine/ops/rnn.cpp; the contracts in engine/kernel_decls.inc).
//
// LSTM (torch.nn.LSTM's gate order i, f, g, o), with a = gx[t] + gh:
//   i = s(a_i), f = s(a_f), g = tanh(a_g), o = s(a_o)       s = sigmoid
//   c' = f c + i g,  h' = o tanh(c')
// Backward, given dh' (from the output and the later steps) and dc':
//   do = dh' tanh(c'),  dc = dc' + dh' o (1 - tanh(c')^2)
//   di = dc g,  dg = dc i,  df = dc c,  dc_prev = dc f
//   da_i = di i (1-i), da_f = df f (1-f), da_g = dg (1-g^2), da_o = do o (1-o)
// GRU (torch.nn.GRU's r, z, n):
//   r = s(gx_r + gh_r), z = s(gx_z + gh_z), n = tanh(gx_n + r gh_n)
//   h' = (1-z) n + z h
// Backward: dn = dh' (1-z), dz = dh' (h - n), dh_direct = dh' z
//   da_n = dn (1-n^2) (into gx_n; into gh_n times r), dr = da_n gh_n
//   da_r = dr r (1-r), da_z = dz z (1-z) (into both projections)
// Rows past their sequence's length keep their state and pass gradients
// through unchanged (packed sequences, as PyTorch's pack_padded_sequence).
#include <cmath>

#include "engine/cpu/cpu_util.h"
#include "engine/kernels.h"
#include "engine/ops/rnn_step.h"

namespace ich::cpu {

namespace {

template <class T> T sig(T x) { return T(1) / (T(1) + std::exp(-x)); }

// The shared shape checks, and lengths on the CPU.
RnnStepShape step_geom(const char* k, const Tensor& gx, int64_t gates, const Tensor& h, const Tensor& out,
                       const Tensor& lengths, int64_t t, int64_t col) {
  ICH_CHECK(lengths.device().is_cpu(), k, ": lengths must be on the CPU, got ", lengths.str());
  return rnn_step_shape(k, gx, gates, h, out, lengths, t, col);
}

}  // namespace

void lstm_step_forward(const Tensor& gx, const Tensor& gh, const Tensor& lengths, int64_t t, Tensor& h, Tensor& c,
                       Tensor& act, Tensor& cprev, Tensor& hprev, Tensor& out, int64_t col) {
  const char* k = "lstm_step_forward";
  const RnnStepShape s = step_geom(k, gx, 4, h, out, lengths, t, col);
  for (const Tensor* x : TensorList{&gx, &gh, &h, &c, &act, &cprev, &hprev, &out}) expect(*x, k, "tensor", gx.dtype());
  dispatch_float(gx, k, [&](auto zero) {
    using T = decltype(zero);
    const int64_t B = s.B, H = s.H;
    const int64_t* len = lengths.data<int64_t>();
    const T *gxt = gx.data<T>() + t * B * 4 * H, *ghp = gh.data<T>();
    T *hp = h.data<T>(), *cp = c.data<T>(), *at = act.data<T>() + t * B * 4 * H;
    T *cpt = cprev.data<T>() + t * B * H, *hpt = hprev.data<T>() + t * B * H, *ot = out.data<T>() + t * B * s.DH + col;
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < B; ++b) {
      const bool live = t < len[b];
      for (int64_t j = 0; j < H; ++j) {
        T* a = at + b * 4 * H;
        const int64_t q = b * H + j;
        if (!live) {
          a[j] = a[H + j] = a[2 * H + j] = a[3 * H + j] = T(0);
          cpt[q] = hpt[q] = ot[b * s.DH + j] = T(0);
          continue;
        }
        const T* x = gxt + b * 4 * H;
        const T* r = ghp + b * 4 * H;
        const T i = sig(x[j] + r[j]), f = sig(x[H + j] + r[H + j]);
        const T g = std::tanh(x[2 * H + j] + r[2 * H + j]), o = sig(x[3 * H + j] + r[3 * H + j]);
        cpt[q] = cp[q];
        hpt[q] = hp[q];
        const T cn = f * cp[q] + i * g;
        cp[q] = cn;
        hp[q] = o * std::tanh(cn);
        ot[b * s.DH + j] = hp[q];
        a[j] = i, a[H + j] = f, a[2 * H + j] = g, a[3 * H + j] = o;
      }
    }
  });
}

void lstm_step_backward(const Tensor& gout, int64_t col, const Tensor& act, const Tensor& cprev, const Tensor& lengths,
                        int64_t t, Tensor& dh, Tensor& dc, Tensor& dgates) {
  const char* k = "lstm_step_backward";
  const RnnStepShape s = step_geom(k, act, 4, dh, gout, lengths, t, col);
  for (const Tensor* x : TensorList{&gout, &act, &cprev, &dh, &dc, &dgates}) expect(*x, k, "tensor", act.dtype());
  dispatch_float(act, k, [&](auto zero) {
    using T = decltype(zero);
    const int64_t B = s.B, H = s.H;
    const int64_t* len = lengths.data<int64_t>();
    const T *at = act.data<T>() + t * B * 4 * H, *cpt = cprev.data<T>() + t * B * H;
    const T* got = gout.data<T>() + t * B * s.DH + col;
    T *dhp = dh.data<T>(), *dcp = dc.data<T>(), *dg = dgates.data<T>() + t * B * 4 * H;
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < B; ++b) {
      const bool live = t < len[b];
      for (int64_t j = 0; j < H; ++j) {
        T* d = dg + b * 4 * H;
        const int64_t q = b * H + j;
        if (!live) {
          d[j] = d[H + j] = d[2 * H + j] = d[3 * H + j] = T(0);
          continue;
        }
        const T* a = at + b * 4 * H;
        const T i = a[j], f = a[H + j], g = a[2 * H + j], o = a[3 * H + j];
        const T c = f * cpt[q] + i * g, tc = std::tanh(c);
        const T dht = got[b * s.DH + j] + dhp[q];
        const T dct = dcp[q] + dht * o * (T(1) - tc * tc);
        d[j] = dct * g * i * (T(1) - i);
        d[H + j] = dct * cpt[q] * f * (T(1) - f);
        d[2 * H + j] = dct * i * (T(1) - g * g);
        d[3 * H + j] = dht * tc * o * (T(1) - o);
        dcp[q] = dct * f;
        dhp[q] = T(0);
      }
    }
  });
}

void gru_step_forward(const Tensor& gx, const Tensor& gh, const Tensor& lengths, int64_t t, Tensor& h, Tensor& act,
                      Tensor& hprev, Tensor& out, int64_t col) {
  const char* k = "gru_step_forward";
  const RnnStepShape s = step_geom(k, gx, 3, h, out, lengths, t, col);
  for (const Tensor* x : TensorList{&gx, &gh, &h, &act, &hprev, &out}) expect(*x, k, "tensor", gx.dtype());
  dispatch_float(gx, k, [&](auto zero) {
    using T = decltype(zero);
    const int64_t B = s.B, H = s.H;
    const int64_t* len = lengths.data<int64_t>();
    const T *gxt = gx.data<T>() + t * B * 3 * H, *ghp = gh.data<T>();
    T *hp = h.data<T>(), *at = act.data<T>() + t * B * 4 * H, *hpt = hprev.data<T>() + t * B * H;
    T* ot = out.data<T>() + t * B * s.DH + col;
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < B; ++b) {
      const bool live = t < len[b];
      for (int64_t j = 0; j < H; ++j) {
        T* a = at + b * 4 * H;
        const int64_t q = b * H + j;
        if (!live) {
          a[j] = a[H + j] = a[2 * H + j] = a[3 * H + j] = T(0);
          hpt[q] = ot[b * s.DH + j] = T(0);
          continue;
        }
        const T* x = gxt + b * 3 * H;
        const T* r_ = ghp + b * 3 * H;
        const T r = sig(x[j] + r_[j]), z = sig(x[H + j] + r_[H + j]);
        const T n = std::tanh(x[2 * H + j] + r * r_[2 * H + j]);
        hpt[q] = hp[q];
        hp[q] = (T(1) - z) * n + z * hp[q];
        ot[b * s.DH + j] = hp[q];
        a[j] = r, a[H + j] = z, a[2 * H + j] = n, a[3 * H + j] = r_[2 * H + j];
      }
    }
  });
}

void gru_step_backward(const Tensor& gout, int64_t col, const Tensor& act, const Tensor& hprev, const Tensor& lengths,
                       int64_t t, Tensor& dh, Tensor& dgx, Tensor& dgh) {
  const char* k = "gru_step_backward";
  const RnnStepShape s = step_geom(k, dgx, 3, dh, gout, lengths, t, col);
  for (const Tensor* x : TensorList{&gout, &act, &hprev, &dh, &dgx, &dgh}) expect(*x, k, "tensor", act.dtype());
  dispatch_float(act, k, [&](auto zero) {
    using T = decltype(zero);
    const int64_t B = s.B, H = s.H;
    const int64_t* len = lengths.data<int64_t>();
    const T *at = act.data<T>() + t * B * 4 * H, *hpt = hprev.data<T>() + t * B * H;
    const T* got = gout.data<T>() + t * B * s.DH + col;
    T *dhp = dh.data<T>(), *dx = dgx.data<T>() + t * B * 3 * H, *dr = dgh.data<T>() + t * B * 3 * H;
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < B; ++b) {
      const bool live = t < len[b];
      for (int64_t j = 0; j < H; ++j) {
        T *x = dx + b * 3 * H, *y = dr + b * 3 * H;
        const int64_t q = b * H + j;
        if (!live) {
          x[j] = x[H + j] = x[2 * H + j] = y[j] = y[H + j] = y[2 * H + j] = T(0);
          continue;
        }
        const T* a = at + b * 4 * H;
        const T r = a[j], z = a[H + j], n = a[2 * H + j], ghn = a[3 * H + j];
        const T dht = got[b * s.DH + j] + dhp[q];
        const T dan = dht * (T(1) - z) * (T(1) - n * n);
        const T dar = dan * ghn * r * (T(1) - r);
        const T daz = dht * (hpt[q] - n) * z * (T(1) - z);
        x[j] = y[j] = dar;
        x[H + j] = y[H + j] = daz;
        x[2 * H + j] = dan;
        y[2 * H + j] = dan * r;
        dhp[q] = dht * z;
      }
    }
  });
}

void select_rows_forward(const Tensor& x, const Tensor& rows, Tensor& y) {
  const char* k = "select_rows_forward";
  expect(x, k, "x", x.dtype());
  expect(y, k, "y", x.dtype());
  expect(rows, k, "rows", DType::Int64);
  const int64_t N = x.size(0), C = x.numel() / std::max<int64_t>(N, 1), M = rows.numel();
  dispatch_float(x, k, [&](auto zero) {
    using T = decltype(zero);
    const int64_t* r = rows.data<int64_t>();
    const T* xp = x.data<T>();
    T* yp = y.data<T>();
    for (int64_t m = 0; m < M; ++m) {
      ICH_CHECK(r[m] >= 0 && r[m] < N, k, ": row ", r[m], " of ", N);
      std::copy(xp + r[m] * C, xp + (r[m] + 1) * C, yp + m * C);
    }
  });
}

void select_rows_backward(const Tensor& gy, const Tensor& rows, Tensor& gx) {
  const char* k = "select_rows_backward";
  expect(gy, k, "gy", gy.dtype());
  expect(gx, k, "gx", gy.dtype());
  expect(rows, k, "rows", DType::Int64);
  const int64_t N = gx.size(0), C = gx.numel() / std::max<int64_t>(N, 1), M = rows.numel();
  dispatch_float(gy, k, [&](auto zero) {
    using T = decltype(zero);
    const int64_t* r = rows.data<int64_t>();
    const T* g = gy.data<T>();
    T* out = gx.data<T>();
    std::fill(out, out + N * C, T(0));
    for (int64_t m = 0; m < M; ++m) std::copy(g + m * C, g + (m + 1) * C, out + r[m] * C);
  });
}

}  // namespace ich::cpu
