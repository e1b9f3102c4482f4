// The op table (tests/op_cases.h): one row per case, grouped by op file.
#include "tests/op_cases.h"

#include <algorithm>
#include <cmath>

namespace ich::test {

namespace {

OpInput in(const std::string& name, Shape s, double sd = 1) { return {name, std::move(s), OpInput::Normal, sd}; }
OpInput fixed(const std::string& name, Shape s, std::vector<double> v) {
  OpInput i{name, std::move(s), OpInput::Fixed};
  i.values = std::move(v);
  i.grad = false;
  return i;
}
OpInput uniform(const std::string& name, Shape s, double lo, double hi, bool grad = false) {
  OpInput i{name, std::move(s), OpInput::Uniform, lo, hi};
  i.grad = grad;
  return i;
}
OpInput binary(const std::string& name, Shape s, double p) {
  OpInput i{name, std::move(s), OpInput::Binary, p};
  i.grad = false;
  return i;
}
OpInput optional(OpInput i) {
  i.optional = true;
  return i;
}
OpInput constant(OpInput i) {
  i.grad = false;
  return i;
}

Tensor arg(const std::vector<Tensor>& t, size_t i) { return i < t.size() ? t[i] : Tensor(); }

// --- conv2d ---------------------------------------------------------------

OpFn conv_op(int64_t stride, int64_t pad, int64_t groups) {
  const Conv2dParams p{stride, stride, pad, pad, groups};
  return [p](const std::vector<Tensor>& t) { return conv2d(t[0], t[1], arg(t, 2), p); };
}
OpCase conv(const std::string& name, unsigned checks, Shape x, Shape w, int64_t stride, int64_t pad, int64_t groups,
            bool bias, uint64_t seed) {
  OpCase c{"conv2d/" + name, checks, {in("a", x), in("b", w)}, conv_op(stride, pad, groups), seed};
  if (bias) c.inputs.push_back(in("c", {w[0]}));
  return c;
}
// Against PyTorch: the fixture holds stride, pad, groups and whether there is a bias.
OpCase conv_torch(const std::string& name, int64_t stride, int64_t pad, int64_t groups, bool bias) {
  OpCase c{"conv2d/torch_" + name, kReference, {in("a", {}), in("b", {}), optional(in("c", {}))},
           conv_op(stride, pad, groups)};
  c.fixture = "conv2d/" + name;
  c.params = {double(stride), double(pad), double(groups), bias ? 1.0 : 0.0};
  return c;
}
// float32 accuracy: a sum of C/G*kh*kw products forward, at most O/G*kh*kw
// for the data gradient, N*Ho*Wo for the filter gradient.
OpCase conv_accuracy(const std::string& name, int64_t stride, int64_t pad, int64_t groups) {
  OpCase c{"conv2d/f32_" + name, kAccuracy, {in("a", {}), in("b", {})}, conv_op(stride, pad, groups)};
  c.fixture = "conv2d/" + name;
  c.params = {double(stride), double(pad), double(groups)};
  c.sum_terms = [groups](const std::vector<Tensor>& t, const Tensor& y) {
    const Tensor& w = t[1];
    return std::vector<std::pair<std::string, int64_t>>{{"y", w.size(1) * w.size(2) * w.size(3)},
                                                         {"g_a", (w.size(0) / groups) * w.size(2) * w.size(3)},
                                                         {"g_b", y.size(0) * y.size(2) * y.size(3)}};
  };
  return c;
}

// --- batch_norm -----------------------------------------------------------

OpFn bn_op(bool training) {
  return [training](const std::vector<Tensor>& t) {
    Tensor rm = t[3], rv = t[4];  // handles: the running statistics are updated in place
    return batch_norm2d(t[0], t[1], t[2], rm, rv, training);
  };
}
OpFn bn_relu_op() {
  return [](const std::vector<Tensor>& t) {
    Tensor rm = t[3], rv = t[4];
    return batch_norm_relu(t[0], t[1], t[2], rm, rv, true, 0.1, 1e-5, arg(t, 5));
  };
}

// --- pool -----------------------------------------------------------------

OpFn max_pool_op(int64_t k, int64_t s, int64_t p) {
  const Pool2dParams pp{k, k, s, s, p, p};
  return [pp](const std::vector<Tensor>& t) { return max_pool2d(t[0], pp); };
}
OpFn avg_pool_op(int64_t oh, int64_t ow) {
  return [oh, ow](const std::vector<Tensor>& t) { return adaptive_avg_pool2d(t[0], oh, ow); };
}

OpFn unary(Tensor (*f)(const Tensor&)) {
  return [f](const std::vector<Tensor>& t) { return f(t[0]); };
}
OpFn binary_op(Tensor (*f)(const Tensor&, const Tensor&)) {
  return [f](const std::vector<Tensor>& t) { return f(t[0], t[1]); };
}
OpFn bce_op() {
  return [](const std::vector<Tensor>& t) { return bce_with_logits(t[0], t[1], arg(t, 2)); };
}
OpFn rnn_op(RnnCell cell, std::vector<int64_t> lengths) {
  // inputs: the forward direction's w_ih, w_hh, b_ih, b_hh, the reverse's, then x
  return [cell, lengths](const std::vector<Tensor>& t) {
    return rnn_layer(cell, t[8], lengths, {{t[0], t[1], t[2], t[3]}, {t[4], t[5], t[6], t[7]}});
  };
}
// x batch-first (B, T, in), drawn after the weights
std::vector<OpInput> rnn_inputs(RnnCell cell, int64_t T, int64_t B, int64_t in_size, int64_t H, double sd) {
  const int64_t G = cell == RnnCell::LSTM ? 4 : 3;
  std::vector<OpInput> v;
  for (const char* d : {"f", "r"})
    for (const auto& [n, s] : {std::pair<const char*, Shape>{"w_ih", {G * H, in_size}}, {"w_hh", {G * H, H}},
                               {"b_ih", {G * H}}, {"b_hh", {G * H}}})
      v.push_back(in(std::string(d) + "_" + n, s, sd));
  v.push_back(in("x", {B, T, in_size}));
  return v;
}

std::vector<OpCase> build() {
  std::vector<OpCase> v;
  const unsigned GC = kGradcheck | kCuda;

  // conv2d: small cases for the gradient check (and the GPU); the direct
  // grouped 3x3 forward (8 or 16 output channels at a time, 8 pixels, a
  // ragged last run: 8, 16 and 24 channels per group, small because the
  // mutation check runs these on an unoptimised build 30 times); the direct
  // backward kernels: the data gradient needs 8 or 16 input channels per
  // group (stride 1); the filter gradient sums blocks of whole rows (here 3
  // blocks of one 40-pixel row) and 2 images in order.
  v.push_back(conv("k3_pad1_bias", GC, {1, 3, 5, 6}, {4, 3, 3, 3}, 1, 1, 1, true, 7));
  v.push_back(conv("groups2_stride2_odd", GC, {2, 4, 7, 5}, {6, 2, 3, 3}, 2, 1, 2, false, 7));
  v.push_back(conv("groups32", GC, {1, 64, 4, 5}, {64, 2, 3, 3}, 1, 1, 32, false, 7));
  v.push_back(conv("groups8_stride2_nonsquare", GC, {2, 32, 5, 3}, {32, 4, 3, 3}, 2, 1, 8, false, 7));
  v.push_back(conv("pointwise_stride2", GC, {2, 3, 9, 7}, {5, 3, 1, 1}, 2, 0, 1, false, 7));
  v.push_back(conv("pointwise_identity_bias", GC, {1, 2, 7, 8}, {3, 2, 1, 1}, 1, 0, 1, true, 7));
  v.push_back(conv("stem_k7_stride2_pad3", GC, {1, 3, 11, 9}, {4, 3, 7, 7}, 2, 3, 1, false, 7));
  v.push_back(conv("direct_og8_bias_ragged", GC, {2, 4, 3, 11}, {16, 2, 3, 3}, 1, 1, 2, true, 7));
  v.push_back(conv("direct_og16_stride2", GC, {1, 4, 7, 6}, {32, 2, 3, 3}, 2, 1, 2, false, 7));
  v.push_back(conv("direct_og24", GC, {1, 2, 3, 9}, {48, 1, 3, 3}, 1, 1, 2, false, 7));
  v.push_back(conv("direct_backward_cg8_row_blocks", GC, {1, 16, 3, 40}, {16, 8, 3, 3}, 1, 1, 2, false, 7));
  v.push_back(conv("direct_backward_cg16_two_images", GC, {2, 32, 4, 5}, {32, 16, 3, 3}, 1, 1, 2, false, 7));
  // ResNeXt's own sizes on the GPU (cuDNN's algorithms differ with size)
  v.push_back(conv("gpu_k3_bias", kCuda, {2, 3, 9, 7}, {4, 3, 3, 3}, 1, 1, 1, true, 1));
  v.push_back(conv("gpu_resnext_grouped_32", kCuda, {2, 256, 13, 13}, {256, 8, 3, 3}, 2, 1, 32, false, 1));
  v.push_back(conv("gpu_stem", kCuda, {2, 3, 50, 50}, {64, 3, 7, 7}, 2, 3, 1, false, 1));
  v.push_back(conv("gpu_pointwise", kCuda, {2, 64, 13, 11}, {128, 64, 1, 1}, 1, 0, 1, false, 1));
  v.push_back(conv("gpu_downsample", kCuda, {2, 64, 13, 11}, {128, 64, 1, 1}, 2, 0, 1, false, 1));
  v.push_back(conv_torch("plain", 1, 1, 1, true));
  v.push_back(conv_torch("groups2_stride2", 2, 1, 2, false));
  v.push_back(conv_torch("groups32", 1, 1, 32, false));
  v.push_back(conv_torch("downsample_1x1_s2", 2, 0, 1, false));
  v.push_back(conv_torch("stem_7x7_s2", 2, 3, 1, false));
  v.push_back(conv_torch("pointwise_1x1", 1, 0, 1, true));
  v.push_back(conv_accuracy("stem_7x7_s2", 2, 3, 1));
  v.push_back(conv_accuracy("grouped_3x3_g32", 1, 1, 32));
  v.push_back(conv_accuracy("grouped_3x3_g32_s2", 2, 1, 32));
  v.push_back(conv_accuracy("pointwise_1x1", 1, 0, 1));
  v.push_back(conv_accuracy("downsample_1x1_s2", 2, 0, 1));

  // batch_norm: training (4-d and the 2-d of a feature batch), eval with
  // given statistics, the fusion with the residual add and ReLU; the
  // running statistics are results too.
  auto bn = [&](const std::string& name, unsigned checks, Shape x, double sd, std::vector<OpInput> stats, OpFn op,
                uint64_t seed) {
    const int64_t C = x.size() > 1 ? x[1] : 0;  // fixture cases: shapes from the file
    OpCase c{"batch_norm/" + name, checks, {in("a", x, sd), in("b", {C}), in("c", {C})}, std::move(op), seed};
    for (OpInput& s : stats) c.inputs.push_back(std::move(s));
    c.state = {{"rm", 3}, {"rv", 4}};
    return c;
  };
  auto unit_stats = [](int64_t C) { return std::vector<OpInput>{fixed("rm0", {C}, {0.0}), fixed("rv0", {C}, {1.0})}; };
  v.push_back(bn("train_4d", kGradcheck, {3, 4, 3, 5}, 2.0, unit_stats(4), bn_op(true), 8));
  v.push_back(bn("train_2d", kGradcheck, {6, 3}, 1.0, unit_stats(3), bn_op(true), 9));
  v.push_back(bn("eval", kGradcheck, {2, 3, 4, 3}, 1.0,
                 {fixed("rm0", {3}, {0.1, -0.2, 0.3}), fixed("rv0", {3}, {0.5, 1.5, 2.0})}, bn_op(false), 10));
  {
    OpCase c = bn("relu_fused_residual", kGradcheck, {2, 4, 3, 3}, 2.0, unit_stats(4), bn_relu_op(), 11);
    c.inputs.push_back(in("residual", {2, 4, 3, 3}));
    v.push_back(c);
    v.push_back(bn("relu_fused", kGradcheck, {2, 4, 3, 3}, 2.0, unit_stats(4), bn_relu_op(), 11));
  }
  v.push_back(bn("gpu_train", kCuda, {4, 16, 7, 5}, 1.0, unit_stats(16), bn_op(true), 2));
  v.push_back(bn("gpu_eval", kCuda, {3, 8, 5, 6}, 1.0, {constant(in("rm0", {8})), uniform("rv0", {8}, 0.5, 2.0)}, bn_op(false), 3));
  for (const char* name : {"centered", "offset_mean"}) {
    OpCase c = bn(std::string("f32_") + name, kAccuracy, {}, 1.0, {constant(in("rm0", {})), constant(in("rv0", {}))},
                  bn_op(true), 1);
    c.fixture = std::string("batch_norm/") + name;
    v.push_back(c);
  }

  // elementwise
  v.push_back({"elementwise/relu", GC, {in("a", {3, 4, 5})}, unary(relu), 11});
  v.push_back({"elementwise/sigmoid", GC, {in("a", {3, 4, 5}, 3.0)}, unary(sigmoid), 12});
  for (const auto& [name, f] : {std::pair<const char*, Tensor (*)(const Tensor&, const Tensor&)>{"add", add}, {"mul", mul}})
    v.push_back({std::string("elementwise/") + name, GC, {in("a", {2, 3, 4}), in("b", {2, 3, 4})}, binary_op(f), 13});
  v.push_back({"elementwise/scale", GC, {in("a", {2, 3, 4})},
               [](const std::vector<Tensor>& t) { return scale(t[0], -2.5); }, 13});
  v.push_back({"elementwise/sum", kGradcheck, {in("a", {2, 3, 2, 2})}, unary(sum), 14});
  v.push_back({"elementwise/mean", GC, {in("a", {2, 3, 2, 2})}, unary(mean), 14});
  v.push_back({"elementwise/reshape", GC, {in("a", {2, 3, 2, 2})},
               [](const std::vector<Tensor>& t) { return reshape(t[0], {4, 6}); }, 14});
  v.push_back({"elementwise/flatten", GC, {in("a", {2, 3, 2, 2})}, unary(flatten), 14});
  v.push_back({"elementwise/gpu_sum_100k", kCuda, {in("a", {100000})}, unary(sum), 5});
  for (const char* name : {"relu", "sigmoid"})
    v.push_back({std::string("elementwise/torch_") + name, kReference, {in("a", {})},
                 unary(std::string(name) == "relu" ? relu : sigmoid), 1, std::string(name) + "/a"});
  for (const auto& [name, f] : {std::pair<const char*, Tensor (*)(const Tensor&, const Tensor&)>{"add", add}, {"mul", mul}})
    v.push_back({std::string("elementwise/torch_") + name, kReference, {in("a", {}), in("b", {})}, binary_op(f), 1,
                 std::string(name) + "/a"});
  v.push_back({"elementwise/f32_sum_1m", kAccuracy, {in("a", {})}, unary(sum), 1, "sum/1m"});

  // pool
  v.push_back({"pool/max_stem_k3_s2_p1", GC, {in("a", {2, 3, 9, 10})}, max_pool_op(3, 2, 1), 15});
  v.push_back({"pool/max_k2_s2_ragged_edge", GC, {in("a", {1, 2, 7, 7})}, max_pool_op(2, 2, 0), 15});
  v.push_back({"pool/max_k3_s1_p1_overlapping", GC, {in("a", {1, 1, 5, 6})}, max_pool_op(3, 1, 1), 15});
  v.push_back({"pool/avg_global", GC, {in("a", {2, 3, 7, 5})}, avg_pool_op(1, 1), 16});
  v.push_back({"pool/avg_3x2", GC, {in("a", {2, 3, 7, 5})}, avg_pool_op(3, 2), 16});
  v.push_back({"pool/gpu_max_stem", kCuda, {in("a", {2, 3, 25, 24})}, max_pool_op(3, 2, 1), 6});
  v.push_back({"pool/gpu_avg_global_8x7x7", kCuda, {in("a", {2, 8, 7, 7})}, avg_pool_op(1, 1), 6});
  v.push_back({"pool/torch_max_stem_3x3_s2_p1", kReference, {in("a", {})}, max_pool_op(3, 2, 1), 1,
               "max_pool2d/stem_3x3_s2_p1", {3, 2, 1}});
  v.push_back({"pool/torch_max_k2_s2", kReference, {in("a", {})}, max_pool_op(2, 2, 0), 1, "max_pool2d/k2_s2", {2, 2, 0}});
  v.push_back({"pool/torch_avg_global", kReference, {in("a", {})}, avg_pool_op(1, 1), 1, "adaptive_avg_pool2d/global",
               {1, 1}});
  v.push_back({"pool/torch_avg_3x2", kReference, {in("a", {})}, avg_pool_op(3, 2), 1, "adaptive_avg_pool2d/3x2", {3, 2}});
  v.push_back({"pool/f32_max_stem_3x3_s2_p1", kAccuracy, {in("a", {})}, max_pool_op(3, 2, 1), 1,
               "max_pool2d/stem_3x3_s2_p1", {3, 2, 1}});
  v.push_back({"pool/f32_avg_global_7x7", kAccuracy, {in("a", {})}, avg_pool_op(1, 1), 1,
               "adaptive_avg_pool2d/global_7x7"});

  // linear
  const OpFn lin = [](const std::vector<Tensor>& t) { return linear(t[0], t[1], arg(t, 2)); };
  v.push_back({"linear/bias", GC, {in("a", {5, 7}), in("b", {3, 7}), in("c", {3})}, lin, 17});
  v.push_back({"linear/no_bias", kGradcheck, {in("a", {5, 7}), in("b", {3, 7}), in("c", {3})},
               [](const std::vector<Tensor>& t) { return linear(t[0], t[1], Tensor()); }, 17});
  v.push_back({"linear/gpu_head_2048x6", kCuda, {in("a", {8, 2048}), in("b", {6, 2048}), in("c", {6})}, lin, 7});
  v.push_back({"linear/torch", kReference, {in("a", {}), in("b", {}), in("c", {})}, lin, 1, "linear/a"});
  {
    // a sum of in + 1 terms forward (the bias the last), out for the input's gradient, N for the weight's
    OpCase c{"linear/f32_head_2048x6", kAccuracy, {in("a", {}), in("b", {}), in("c", {})}, lin, 1, "linear/head_2048x6"};
    c.sum_terms = [](const std::vector<Tensor>& t, const Tensor&) {
      return std::vector<std::pair<std::string, int64_t>>{
          {"y", t[1].size(1) + 1}, {"g_a", t[1].size(0)}, {"g_b", t[0].size(0)}};
    };
    v.push_back(c);
  }

  // loss: targets and class weights are constants
  const std::vector<double> pw{1.0, 3.0, 0.5, 10.0, 2.0, 1.5};
  v.push_back({"loss/bce", GC, {in("x", {4, 6}, 3.0), binary("target", {4, 6}, 0.3)}, bce_op(), 18});
  v.push_back({"loss/bce_pos_weight", GC, {in("x", {4, 6}, 3.0), binary("target", {4, 6}, 0.3), fixed("pos_weight", {6}, pw)},
               bce_op(), 18});
  v.push_back({"loss/gpu_bce_soft_targets", kCuda,
               {in("x", {8, 6}), uniform("target", {8, 6}, 0, 1), uniform("pos_weight", {6}, 0.5, 5)}, bce_op(), 7});
  for (const char* name : {"plain", "pos_weight"})
    v.push_back({std::string("loss/torch_bce_") + name, kReference,
                 {in("x", {}), constant(in("target", {})), optional(constant(in("pos_weight", {})))}, bce_op(), 1,
                 std::string("bce/") + name});
  v.push_back({"loss/f32_bce_32x6", kAccuracy, {in("a", {}), constant(in("target", {}))}, bce_op(), 1, "bce/32x6"});

  // rnn: one bidirectional layer over ragged lengths, both cells; the row
  // selection of the sequence model's loss
  for (RnnCell cell : {RnnCell::LSTM, RnnCell::GRU}) {
    const std::string n = cell == RnnCell::LSTM ? "lstm" : "gru";
    v.push_back({"rnn/" + n + "_bidirectional_ragged", kGradcheck, rnn_inputs(cell, 4, 3, 3, 2, 0.5),
                 rnn_op(cell, {4, 1, 3}), 21});
    v.push_back({"rnn/gpu_" + n + "_bidirectional_ragged", kCuda, rnn_inputs(cell, 7, 3, 6, 8, 1.0),
                 rnn_op(cell, {7, 3, 5}), 11});
  }
  v.push_back({"rnn/select_rows", GC, {in("a", {5, 3})},
               [](const std::vector<Tensor>& t) { return select_rows(t[0], {4, 0, 2}); }, 25});

  // 16-bit activations (tests/test_activations16.cpp): ReLU exact both
  // ways; the sum rounded once, its gradient passed on exactly; the max pool
  // exact forward, up to four gradients summed per input (overlapping
  // windows); the average pools rounded once of their sums ((3,2) of (5,7):
  // cells overlap).
  {
    using R = HalfRule;
    v.push_back({"elementwise/half_relu", kHalf, {in("a", {2, 3, 4, 5})}, unary(relu), 12});
    v.back().half = {R{"y", true}, R{"g_a", true}};
    OpInput small = in("b", {2, 3, 4, 5}, 0.01);
    v.push_back({"elementwise/half_add", kHalf, {in("a", {2, 3, 4, 5}), small}, binary_op(add), 12});
    v.back().half = {R{"y"}, R{"g_a", true}, R{"g_b", true}};
    v.push_back({"pool/half_max_stem_k3_s2_p1", kHalf, {in("a", {2, 3, 9, 8})}, max_pool_op(3, 2, 1), 12});
    v.back().half = {R{"y", true}, R{"g_a", false, 4, R::kOfGy}};
    for (const auto& [oh, ow] : {std::pair<int64_t, int64_t>{1, 1}, {3, 2}}) {
      OpInput x = in("a", {2, 3, 5, 7});
      x.q = 1.0;
      v.push_back({"pool/half_avg_" + std::to_string(oh) + "x" + std::to_string(ow), kHalf, {x}, avg_pool_op(oh, ow), 12});
      v.back().half = {R{"y", false, 1, 0}, R{"g_a", false, 1, R::kOfGy}};
    }
  }

  // input: bytes normalised on their device (no gradient: the input is a leaf)
  {
    OpInput bytes{"a", {2, 3, 5, 4}, OpInput::Bytes};
    bytes.grad = false;
    v.push_back({"input/normalize_u8", kCuda, {bytes}, unary(normalize_input), 4});
  }
  return v;
}

}  // namespace

const std::vector<OpCase>& op_cases() {
  static const std::vector<OpCase> v = build();
  return v;
}

std::vector<OpCase> op_cases_with(unsigned check) {
  std::vector<OpCase> v;
  for (const OpCase& c : op_cases())
    if (c.checks & check) v.push_back(c);
  return v;
}

std::vector<Tensor> generate_inputs(const OpCase& c, DType dt) {
  Generator gen(c.seed);
  std::vector<Tensor> out;
  for (const OpInput& i : c.inputs) {
    Tensor t;
    const int64_t n = shape_numel(i.shape);
    switch (i.kind) {
      case OpInput::Normal:
        t = Tensor::randn(i.shape, gen, dt);
        if (i.p != 1.0 || i.q != 0.0) {
          std::vector<double> v = t.to_vector();
          for (double& x : v) x = i.q + i.p * x;
          t = Tensor::from_vector(v, i.shape, dt);
        }
        break;
      case OpInput::Uniform:
        t = Tensor::uniform(i.shape, i.p, i.q, gen, dt);
        break;
      case OpInput::Binary: {
        std::vector<double> v(static_cast<size_t>(n));
        for (double& x : v) x = gen.uniform() < i.p ? 1.0 : 0.0;
        t = Tensor::from_vector(v, i.shape, dt);
        break;
      }
      case OpInput::Fixed: {
        std::vector<double> v = i.values;
        if (v.size() == 1) v.assign(size_t(n), i.values[0]);
        t = Tensor::from_vector(v, i.shape, dt);
        break;
      }
      case OpInput::Bytes: {
        std::vector<double> v(static_cast<size_t>(n));
        for (double& x : v) x = std::min(255.0, std::floor(gen.uniform() * 256));
        t = Tensor::empty(i.shape, DType::UInt8);
        std::transform(v.begin(), v.end(), t.data<uint8_t>(), [](double x) { return uint8_t(x); });
        break;
      }
    }
    if (i.grad) t.set_requires_grad(true);
    out.push_back(t);
  }
  return out;
}

std::string op_case_test_name(const ::testing::TestParamInfo<OpCase>& i) {
  std::string s = i.param.name;
  std::replace(s.begin(), s.end(), '/', '_');
  return s;
}

}  // namespace ich::test
