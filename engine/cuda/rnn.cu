// rnn.cu: the recurrent cells on a GPU, one fused kernel per time step (the
// math, and the contract, are those of engine/cpu/rnn.cpp). The gate
// projections around them are cuBLAS GEMMs (linear_forward and friends,
// engine/cuda/linear.cu), called by engine/ops/rnn.cpp. One thread per
// (row, hidden unit). Why not cuDNN's RNN API: its packed weight buffer and
// its own workspace rules would make the layer's parameters a second layout
// beside torch's names; a step here is two GEMMs and one pointwise kernel,
// and the sequences of a CT series are short (tens of slices).
#include "engine/cuda/cuda_util.h"
#include "engine/kernels.h"
#include "engine/ops/rnn_step.h"

namespace ich::cuda {

namespace {

template <class T> __device__ T sig(T x) { return T(1) / (T(1) + exp(-x)); }

struct StepArgs {
  int64_t B, H, DH, t, col;
  const int64_t* len;
};

StepArgs step_args(const char* k, const Tensor& gx, int64_t gates, const Tensor& h, const Tensor& out,
                   const Tensor& lengths, int64_t t, int64_t col) {
  const RnnStepShape s = rnn_step_shape(k, gx, gates, h, out, lengths, t, col);
  expect(lengths, k, "lengths", DType::Int64);
  return {s.B, s.H, s.DH, t, col, ptr<int64_t>(lengths)};
}

template <class T>
__global__ void lstm_fwd(StepArgs s, const T* gx, const T* gh, T* h, T* c, T* act, T* cprev, T* hprev, T* out) {
  const int64_t n = s.B * s.H;
  for (int64_t q = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; q < n; q += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = q / s.H, j = q % s.H, H = s.H;
    T* a = act + (s.t * s.B + b) * 4 * H;
    const int64_t st = s.t * s.B * H + q;
    T* o_ = out + (s.t * s.B + b) * s.DH + s.col + j;
    if (s.t >= s.len[b]) {
      a[j] = a[H + j] = a[2 * H + j] = a[3 * H + j] = T(0);
      cprev[st] = hprev[st] = *o_ = T(0);
      continue;
    }
    const T* x = gx + (s.t * s.B + b) * 4 * H;
    const T* r = gh + b * 4 * H;
    const T i = sig(x[j] + r[j]), f = sig(x[H + j] + r[H + j]);
    const T g = tanh(x[2 * H + j] + r[2 * H + j]), o = sig(x[3 * H + j] + r[3 * H + j]);
    cprev[st] = c[q];
    hprev[st] = h[q];
    const T cn = f * c[q] + i * g;
    c[q] = cn;
    h[q] = o * tanh(cn);
    *o_ = h[q];
    a[j] = i, a[H + j] = f, a[2 * H + j] = g, a[3 * H + j] = o;
  }
}

template <class T>
__global__ void lstm_bwd(StepArgs s, const T* gout, const T* act, const T* cprev, T* dh, T* dc, T* dgates) {
  const int64_t n = s.B * s.H;
  for (int64_t q = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; q < n; q += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = q / s.H, j = q % s.H, H = s.H;
    T* d = dgates + (s.t * s.B + b) * 4 * H;
    if (s.t >= s.len[b]) {
      d[j] = d[H + j] = d[2 * H + j] = d[3 * H + j] = T(0);
      continue;
    }
    const T* a = act + (s.t * s.B + b) * 4 * H;
    const T i = a[j], f = a[H + j], g = a[2 * H + j], o = a[3 * H + j];
    const T cp = cprev[s.t * s.B * H + q];
    const T cn = f * cp + i * g, tc = tanh(cn);
    const T dht = gout[(s.t * s.B + b) * s.DH + s.col + j] + dh[q];
    const T dct = dc[q] + dht * o * (T(1) - tc * tc);
    d[j] = dct * g * i * (T(1) - i);
    d[H + j] = dct * cp * f * (T(1) - f);
    d[2 * H + j] = dct * i * (T(1) - g * g);
    d[3 * H + j] = dht * tc * o * (T(1) - o);
    dc[q] = dct * f;
    dh[q] = T(0);
  }
}

template <class T>
__global__ void gru_fwd(StepArgs s, const T* gx, const T* gh, T* h, T* act, T* hprev, T* out) {
  const int64_t n = s.B * s.H;
  for (int64_t q = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; q < n; q += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = q / s.H, j = q % s.H, H = s.H;
    T* a = act + (s.t * s.B + b) * 4 * H;
    const int64_t st = s.t * s.B * H + q;
    T* o_ = out + (s.t * s.B + b) * s.DH + s.col + j;
    if (s.t >= s.len[b]) {
      a[j] = a[H + j] = a[2 * H + j] = a[3 * H + j] = T(0);
      hprev[st] = *o_ = T(0);
      continue;
    }
    const T* x = gx + (s.t * s.B + b) * 3 * H;
    const T* r_ = gh + b * 3 * H;
    const T r = sig(x[j] + r_[j]), z = sig(x[H + j] + r_[H + j]);
    const T nn = tanh(x[2 * H + j] + r * r_[2 * H + j]);
    hprev[st] = h[q];
    h[q] = (T(1) - z) * nn + z * h[q];
    *o_ = h[q];
    a[j] = r, a[H + j] = z, a[2 * H + j] = nn, a[3 * H + j] = r_[2 * H + j];
  }
}

template <class T>
__global__ void gru_bwd(StepArgs s, const T* gout, const T* act, const T* hprev, T* dh, T* dgx, T* dgh) {
  const int64_t n = s.B * s.H;
  for (int64_t q = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; q < n; q += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = q / s.H, j = q % s.H, H = s.H;
    T *x = dgx + (s.t * s.B + b) * 3 * H, *y = dgh + (s.t * s.B + b) * 3 * H;
    if (s.t >= s.len[b]) {
      x[j] = x[H + j] = x[2 * H + j] = y[j] = y[H + j] = y[2 * H + j] = T(0);
      continue;
    }
    const T* a = act + (s.t * s.B + b) * 4 * H;
    const T r = a[j], z = a[H + j], nn = a[2 * H + j], ghn = a[3 * H + j];
    const T dht = gout[(s.t * s.B + b) * s.DH + s.col + j] + dh[q];
    const T dan = dht * (T(1) - z) * (T(1) - nn * nn);
    const T dar = dan * ghn * r * (T(1) - r);
    const T daz = dht * (hprev[s.t * s.B * H + q] - nn) * z * (T(1) - z);
    x[j] = y[j] = dar;
    x[H + j] = y[H + j] = daz;
    x[2 * H + j] = dan;
    y[2 * H + j] = dan * r;
    dh[q] = dht * z;
  }
}

template <class T> __global__ void rows_fwd(const T* x, const int64_t* rows, int64_t M, int64_t C, T* y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < M * C; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = x[rows[i / C] * C + i % C];
}
template <class T> __global__ void rows_bwd(const T* gy, const int64_t* rows, int64_t M, int64_t C, T* gx) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < M * C; i += int64_t(gridDim.x) * blockDim.x)
    gx[rows[i / C] * C + i % C] = gy[i];
}

}  // namespace

void lstm_step_forward(const Tensor& gx, const Tensor& gh, const Tensor& lengths, int64_t t, Tensor& h, Tensor& c,
                       Tensor& act, Tensor& cprev, Tensor& hprev, Tensor& out, int64_t col) {
  const char* k = "lstm_step_forward";
  const StepArgs s = step_args(k, gx, 4, h, out, lengths, t, col);
  for (const Tensor* x : TensorList{&gx, &gh, &h, &c, &act, &cprev, &hprev, &out}) expect(*x, k, "tensor", gx.dtype());
  dispatch_float(gx, k, [&](auto z) {
    using T = decltype(z);
    lstm_fwd<T><<<blocks_for(s.B * s.H), 256, 0, context_of(gx).stream>>>(
        s, ptr<T>(gx), ptr<T>(gh), ptr<T>(h), ptr<T>(c), ptr<T>(act), ptr<T>(cprev), ptr<T>(hprev), ptr<T>(out));
    ICH_CUDA_LAUNCH_CHECK();
  });
}

void lstm_step_backward(const Tensor& gout, int64_t col, const Tensor& act, const Tensor& cprev, const Tensor& lengths,
                        int64_t t, Tensor& dh, Tensor& dc, Tensor& dgates) {
  const char* k = "lstm_step_backward";
  const StepArgs s = step_args(k, act, 4, dh, gout, lengths, t, col);
  for (const Tensor* x : TensorList{&gout, &act, &cprev, &dh, &dc, &dgates}) expect(*x, k, "tensor", act.dtype());
  dispatch_float(act, k, [&](auto z) {
    using T = decltype(z);
    lstm_bwd<T><<<blocks_for(s.B * s.H), 256, 0, context_of(act).stream>>>(
        s, ptr<T>(gout), ptr<T>(act), ptr<T>(cprev), ptr<T>(dh), ptr<T>(dc), ptr<T>(dgates));
    ICH_CUDA_LAUNCH_CHECK();
  });
}

void gru_step_forward(const Tensor& gx, const Tensor& gh, const Tensor& lengths, int64_t t, Tensor& h, Tensor& act,
                      Tensor& hprev, Tensor& out, int64_t col) {
  const char* k = "gru_step_forward";
  const StepArgs s = step_args(k, gx, 3, h, out, lengths, t, col);
  for (const Tensor* x : TensorList{&gx, &gh, &h, &act, &hprev, &out}) expect(*x, k, "tensor", gx.dtype());
  dispatch_float(gx, k, [&](auto z) {
    using T = decltype(z);
    gru_fwd<T><<<blocks_for(s.B * s.H), 256, 0, context_of(gx).stream>>>(s, ptr<T>(gx), ptr<T>(gh), ptr<T>(h),
                                                                         ptr<T>(act), ptr<T>(hprev), ptr<T>(out));
    ICH_CUDA_LAUNCH_CHECK();
  });
}

void gru_step_backward(const Tensor& gout, int64_t col, const Tensor& act, const Tensor& hprev, const Tensor& lengths,
                       int64_t t, Tensor& dh, Tensor& dgx, Tensor& dgh) {
  const char* k = "gru_step_backward";
  const StepArgs s = step_args(k, dgx, 3, dh, gout, lengths, t, col);
  for (const Tensor* x : TensorList{&gout, &act, &hprev, &dh, &dgx, &dgh}) expect(*x, k, "tensor", act.dtype());
  dispatch_float(act, k, [&](auto z) {
    using T = decltype(z);
    gru_bwd<T><<<blocks_for(s.B * s.H), 256, 0, context_of(act).stream>>>(
        s, ptr<T>(gout), ptr<T>(act), ptr<T>(hprev), ptr<T>(dh), ptr<T>(dgx), ptr<T>(dgh));
    ICH_CUDA_LAUNCH_CHECK();
  });
}

void select_rows_forward(const Tensor& x, const Tensor& rows, Tensor& y) {
  const char* k = "select_rows_forward";
  expect(x, k, "x", x.dtype());
  expect(y, k, "y", x.dtype());
  expect(rows, k, "rows", DType::Int64);
  const int64_t M = rows.numel(), C = x.size(1);
  if (M == 0) return;
  dispatch_float(x, k, [&](auto z) {
    using T = decltype(z);
    rows_fwd<T><<<blocks_for(M * C), 256, 0, context_of(x).stream>>>(ptr<T>(x), ptr<int64_t>(rows), M, C, ptr<T>(y));
    ICH_CUDA_LAUNCH_CHECK();
  });
}

void select_rows_backward(const Tensor& gy, const Tensor& rows, Tensor& gx) {
  const char* k = "select_rows_backward";
  expect(gy, k, "gy", gy.dtype());
  expect(gx, k, "gx", gy.dtype());
  expect(rows, k, "rows", DType::Int64);
  const int64_t M = rows.numel(), C = gx.size(1);
  gx.zero_();
  if (M == 0) return;
  dispatch_float(gy, k, [&](auto z) {
    using T = decltype(z);
    rows_bwd<T><<<blocks_for(M * C), 256, 0, context_of(gy).stream>>>(ptr<T>(gy), ptr<int64_t>(rows), M, C, ptr<T>(gx));
    ICH_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace ich::cuda
