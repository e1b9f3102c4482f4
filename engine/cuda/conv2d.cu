// conv2d.cu: convolution through cuDNN, forward, backward data, backward
// filter, with the native group count (cudnnSetConvolutionGroupCount: one
// call for all 32 groups of a ResNeXt block, not a loop over groups).
//
// For one convolution, from the tensor to the library call:
//   x (N,C,H,W) contiguous        -> cudnnTensorDescriptor  NCHW, float
//   w (O,C/G,kh,kw)               -> cudnnFilterDescriptor  NCHW (K=O, C=C/G)
//   stride, padding, groups       -> cudnnConvolutionDescriptor, cross-correlation
//                                    (what deep learning calls convolution),
//                                    group count G, math type FMA (no TF32)
//                                    unless set_allow_tf32(true)
//   y (N,O,Ho,Wo)                 -> cudnnTensorDescriptor
// The algorithm for each of the three directions is chosen once per shape by
// cudnnFind*Algorithm (cuDNN times its candidates) and cached with the
// descriptors in a Plan; the workspace comes from the caching allocator.
// Backward data and filter write (beta = 0): the autograd layer accumulates.
#include <map>
#include <memory>
#include <mutex>
#include <tuple>

#include "engine/cuda/cuda_util.h"
#include "engine/cuda/runtime.h"
#include "engine/graph.h"
#include "engine/kernels.h"

namespace ich::cuda {

namespace {

// The algorithm cuDNN chose for one direction, and its workspace.
template <class Algo> struct Choice {
  Algo algo{};
  size_t workspace = 0;
  bool ready = false;
};

struct Plan {
  TensorDesc x, y, bias;
  FilterDesc w;
  ConvDesc conv;
  Choice<cudnnConvolutionFwdAlgo_t> fwd;
  Choice<cudnnConvolutionBwdDataAlgo_t> data;
  Choice<cudnnConvolutionBwdFilterAlgo_t> filter;
};

// Runs a cuDNN Find* call the first time (cuDNN times its candidates) and
// keeps the first usable answer.
template <class Perf, class Algo, class Find>
void choose(Choice<Algo>& c, Find&& find, const char* kernel, const Tensor& a, const Tensor& b) {
  if (c.ready) return;
  // cudnnFind runs and times kernels, which a capture cannot: the eager
  // warm-up steps before a capture (train/graph_step.h) choose every algorithm.
  ICH_CHECK(!capturing(), kernel, ": a convolution shape (", a.str(), ", ", b.str(),
            ") met for the first time while a step is captured; run it once eagerly first");
  Perf perf[8];
  int found = 0;
  ICH_CUDNN_CHECK(find(perf, &found));
  const int i = first_usable(perf, found);
  ICH_CHECK(i >= 0, kernel, ": cuDNN has no algorithm for ", a.str(), " and ", b.str());
  c = {perf[i].algo, perf[i].memory, true};
}

// The element types a convolution runs in. float32 and float64 compute in
// their own type (FMA math, no TF32 unless allowed, so that they compare
// with the CPU); bfloat16 and float16 (mixed precision, engine/ops/amp.h) store
// 16 bits, accumulate in float32 and may use tensor cores. Tags stand for
// the 16-bit types: only their cuDNN descriptions matter here.
struct BF16Tag {};
struct F16Tag {};
template <class T> struct ConvType {  // float, double
  using Scale = T;
  static cudnnDataType_t data() { return cudnn_type<T>(); }
  static cudnnDataType_t compute() { return cudnn_type<T>(); }
  static cudnnMathType_t math() { return allow_tf32() ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH; }
};
template <> struct ConvType<BF16Tag> {
  using Scale = float;
  static cudnnDataType_t data() { return CUDNN_DATA_BFLOAT16; }
  static cudnnDataType_t compute() { return CUDNN_DATA_FLOAT; }
  static cudnnMathType_t math() { return CUDNN_TENSOR_OP_MATH; }
};
template <> struct ConvType<F16Tag> {
  using Scale = float;
  static cudnnDataType_t data() { return CUDNN_DATA_HALF; }
  static cudnnDataType_t compute() { return CUDNN_DATA_FLOAT; }
  static cudnnMathType_t math() { return CUDNN_TENSOR_OP_MATH; }
};

template <class F> void dispatch_conv(const Tensor& t, const char* kernel, F&& f) {
  switch (t.dtype()) {
    case DType::Float32: f(float{}); return;
    case DType::Float64: f(double{}); return;
    case DType::BFloat16: f(BF16Tag{}); return;
    case DType::Float16: f(F16Tag{}); return;
    default: throw Error(std::string(kernel) + ": dtype " + dtype_name(t.dtype()) + " is not supported on cuda");
  }
}

using Key = std::tuple<int, int, bool, bool, Shape, Shape, int64_t, int64_t, int64_t, int64_t, int64_t>;
std::mutex g_mu;
std::map<Key, std::unique_ptr<Plan>> g_plans;

// nhwc: activations channels-last (N,H,W,C in memory) and the filter K,R,S,C
// to match, the layout cuDNN's tensor-core and grouped kernels work in.
template <class T>
Plan& plan_for(const Shape& xs, const Shape& ws, const Conv2dParams& p, int device, bool nhwc) {
  const Key key{device, int(ConvType<T>::data()), allow_tf32(), nhwc, xs, ws, p.stride_h, p.stride_w, p.pad_h, p.pad_w,
                p.groups};
  std::lock_guard<std::mutex> lock(g_mu);
  auto& slot = g_plans[key];
  if (slot) return *slot;
  const cudnnDataType_t t = ConvType<T>::data();
  if (t == CUDNN_DATA_BFLOAT16) {  // Turing (T4, RTX 20) has float16 tensor cores but no bfloat16
    const Context& c = context(device);
    ICH_CHECK(c.major >= 8, "bfloat16 convolutions need an Ampere or newer GPU (compute capability 8.0); cuda:",
              device, " is ", c.major, ".", c.minor, ": use --precision fp16 (loss-scaled) or fp32");
  }
  auto pl = std::make_unique<Plan>();
  const cudnnTensorFormat_t fmt = nhwc ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW;
  ICH_CUDNN_CHECK(cudnnSetTensor4dDescriptor(pl->x, fmt, t, int(xs[0]), int(xs[1]), int(xs[2]), int(xs[3])));
  ICH_CUDNN_CHECK(cudnnSetFilter4dDescriptor(pl->w, t, fmt, int(ws[0]), int(ws[1]), int(ws[2]), int(ws[3])));
  ICH_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(pl->conv, int(p.pad_h), int(p.pad_w), int(p.stride_h),
                                                  int(p.stride_w), 1, 1, CUDNN_CROSS_CORRELATION,
                                                  ConvType<T>::compute()));
  ICH_CUDNN_CHECK(cudnnSetConvolutionGroupCount(pl->conv, int(p.groups)));
  ICH_CUDNN_CHECK(cudnnSetConvolutionMathType(pl->conv, ConvType<T>::math()));
  int n, c, h, w;
  ICH_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(pl->conv, pl->x, pl->w, &n, &c, &h, &w));
  ICH_CUDNN_CHECK(cudnnSetTensor4dDescriptor(pl->y, fmt, t, n, c, h, w));
  ICH_CUDNN_CHECK(cudnnSetTensor4dDescriptor(pl->bias, CUDNN_TENSOR_NCHW, t, 1, c, 1, 1));
  slot = std::move(pl);
  return *slot;
}


// The layout of one call's activations: channels-last when either is (then
// both must be dense so), else N,C,H,W.
bool channels_last_call(const char* k, const Tensor& a, const Tensor& b) {
  const bool cl = memory_format_of(a) == MemoryFormat::ChannelsLast || memory_format_of(b) == MemoryFormat::ChannelsLast;
  const MemoryFormat f = cl ? MemoryFormat::ChannelsLast : MemoryFormat::Contiguous;
  ICH_CHECK(a.is_contiguous(f) && b.is_contiguous(f), k, ": ", a.str(), " and ", b.str(),
            " are not both dense in one layout");
  return cl;
}

void expect_on_device(const Tensor& t, const char* k, const char* arg, DType dtype) {
  ICH_CHECK(t.defined() && t.device().is_cuda() && t.dtype() == dtype, k, ": ", arg, " is ", t.str(),
            ", expected ", dtype_name(dtype), " on a CUDA device");
}

// The filter in the call's layout: weights stay K,C,R,S in memory; a
// channels-last call needs K,R,S,C, which the op (engine/ops/conv2d.cpp)
// hands over already, once per step for forward and backward; a copy is
// made here only for a caller that did not.
Tensor filter_for(const Tensor& w, bool nhwc) { return nhwc ? w.contiguous(MemoryFormat::ChannelsLast) : w; }

Tensor workspace(size_t bytes, const Tensor& like) {
  return Tensor::empty({int64_t((bytes + 3) / 4)}, DType::Float32, like.device());
}

}  // namespace

void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y, const Conv2dParams& p) {
  const char* k = "conv2d_forward";
  for (const Tensor* t : TensorList{&x, &y}) expect_on_device(*t, k, "x/y", x.dtype());
  expect(w, k, "w", x.dtype());
  if (b.defined()) expect(b, k, "b", x.dtype());
  const bool nhwc = channels_last_call(k, x, y);
  const Tensor wk = filter_for(w, nhwc);
  Context& c = context_of(x);
  dispatch_conv(x, k, [&](auto zero_value) {
    using T = decltype(zero_value);
    using S = typename ConvType<T>::Scale;
    Plan& pl = plan_for<T>(x.shape(), w.shape(), p, c.device, nhwc);
    choose<cudnnConvolutionFwdAlgoPerf_t>(pl.fwd, [&](auto* perf, int* found) {
      return cudnnFindConvolutionForwardAlgorithm(c.cudnn, pl.x, pl.w, pl.conv, pl.y, 8, found, perf);
    }, k, x, w);
    Tensor ws = workspace(pl.fwd.workspace, x);
    ICH_CUDNN_CHECK(cudnnConvolutionForward(c.cudnn, one<S>(), pl.x, x.raw_data(), pl.w, wk.raw_data(), pl.conv,
                                            pl.fwd.algo, ws.raw_data(), pl.fwd.workspace, zero<S>(), pl.y,
                                            y.raw_data()));
    if (b.defined())
      ICH_CUDNN_CHECK(cudnnAddTensor(c.cudnn, one<S>(), pl.bias, b.raw_data(), one<S>(), pl.y, y.raw_data()));
  });
}

void conv2d_backward_data(const Tensor& gy, const Tensor& w, Tensor& gx, const Conv2dParams& p) {
  const char* k = "conv2d_backward_data";
  for (const Tensor* t : TensorList{&gy, &gx}) expect_on_device(*t, k, "gy/gx", w.dtype());
  expect(w, k, "w", w.dtype());
  const bool nhwc = channels_last_call(k, gy, gx);
  const Tensor wk = filter_for(w, nhwc);
  Context& c = context_of(w);
  dispatch_conv(w, k, [&](auto zero_value) {
    using T = decltype(zero_value);
    using S = typename ConvType<T>::Scale;
    Plan& pl = plan_for<T>(gx.shape(), w.shape(), p, c.device, nhwc);
    choose<cudnnConvolutionBwdDataAlgoPerf_t>(pl.data, [&](auto* perf, int* found) {
      return cudnnFindConvolutionBackwardDataAlgorithm(c.cudnn, pl.w, pl.y, pl.conv, pl.x, 8, found, perf);
    }, k, gx, w);
    Tensor ws = workspace(pl.data.workspace, w);
    ICH_CUDNN_CHECK(cudnnConvolutionBackwardData(c.cudnn, one<S>(), pl.w, wk.raw_data(), pl.y, gy.raw_data(), pl.conv,
                                                 pl.data.algo, ws.raw_data(), pl.data.workspace, zero<S>(), pl.x,
                                                 gx.raw_data()));
  });
}

void conv2d_backward_filter(const Tensor& gy, const Tensor& x, Tensor& gw, const Conv2dParams& p) {
  const char* k = "conv2d_backward_filter";
  for (const Tensor* t : TensorList{&gy, &x}) expect_on_device(*t, k, "gy/x", x.dtype());
  expect(gw, k, "gw", x.dtype());
  const bool nhwc = channels_last_call(k, x, gy);
  // A channels-last call writes K,R,S,C: into scratch, then into gw's K,C,R,S.
  Tensor gwk = nhwc ? Tensor::empty(gw.shape(), gw.dtype(), gw.device(), MemoryFormat::ChannelsLast) : gw;
  Context& c = context_of(x);
  dispatch_conv(x, k, [&](auto zero_value) {
    using T = decltype(zero_value);
    using S = typename ConvType<T>::Scale;
    Plan& pl = plan_for<T>(x.shape(), gw.shape(), p, c.device, nhwc);
    choose<cudnnConvolutionBwdFilterAlgoPerf_t>(pl.filter, [&](auto* perf, int* found) {
      return cudnnFindConvolutionBackwardFilterAlgorithm(c.cudnn, pl.x, pl.y, pl.conv, pl.w, 8, found, perf);
    }, k, x, gw);
    Tensor ws = workspace(pl.filter.workspace, x);
    ICH_CUDNN_CHECK(cudnnConvolutionBackwardFilter(c.cudnn, one<S>(), pl.x, x.raw_data(), pl.y, gy.raw_data(),
                                                   pl.conv, pl.filter.algo, ws.raw_data(), pl.filter.workspace,
                                                   zero<S>(), pl.w, gwk.raw_data()));
  });
  if (nhwc) gw.copy_(gwk);
}

void conv2d_backward_bias(const Tensor& gy, Tensor& gb) {
  const char* k = "conv2d_backward_bias";
  expect_dense(gy, gy, k, "gy", gy.dtype());
  expect(gb, k, "gb", gy.dtype());
  Context& c = context_of(gy);
  dispatch_float(gy, k, [&](auto zero_value) {
    using T = decltype(zero_value);
    TensorDesc dy, db;
    set_strided(dy, cudnn_type<T>(), gy);  // N,C,H,W or channels-last
    ICH_CUDNN_CHECK(cudnnSetTensor4dDescriptor(db, CUDNN_TENSOR_NCHW, cudnn_type<T>(), 1, int(gy.size(1)), 1, 1));
    ICH_CUDNN_CHECK(cudnnConvolutionBackwardBias(c.cudnn, one<T>(), dy, gy.raw_data(), zero<T>(), db, gb.raw_data()));
  });
}

}  // namespace ich::cuda
