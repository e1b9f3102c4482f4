// export.cpp: the ONNX graphs and state_dicts of export.h.
#include "infer/export.h"

#include <map>
#include <set>

#include "data/labels.h"
#include "engine/error.h"
#include "io/csv.h"
#include "weights/torch_writer.h"

namespace ich {

namespace {

using onnx::attr_float;
using onnx::attr_int;
using onnx::attr_ints;
using onnx::Node;

// Builds a graph from the state_dict's names: every initializer is a
// state_dict entry (or a derived tensor with a name of its own).
struct GraphBuilder {
  onnx::Model m;
  std::map<std::string, Tensor> state;
  std::set<std::string> used;  // state entries already initializers
  int64_t counter = 0;

  explicit GraphBuilder(const NamedTensors& sd) {
    for (const auto& [n, t] : sd) state.emplace(n, t);
  }
  bool has(const std::string& n) const { return state.count(n) > 0; }
  // The state_dict entry n as an initializer (once), its name returned.
  std::string param(const std::string& n) {
    auto it = state.find(n);
    ICH_CHECK(it != state.end(), "export: the model has no parameter ", n);
    if (used.insert(n).second) m.initializers.emplace_back(n, it->second);
    return n;
  }
  std::string constant(const std::string& n, const Tensor& t) {
    m.initializers.emplace_back(n, t);
    return n;
  }
  std::string node(const std::string& op, std::vector<std::string> in, std::vector<onnx::Attr> attrs = {},
                   const std::string& out = "") {
    Node nd;
    nd.op_type = op;
    nd.inputs = std::move(in);
    nd.attrs = std::move(attrs);
    nd.name = op + "_" + std::to_string(counter++);
    nd.outputs = {out.empty() ? nd.name : out};
    m.nodes.push_back(nd);
    return nd.outputs[0];
  }
  // conv (no bias) + batch norm, named by the state_dict's prefixes
  std::string conv_bn(const std::string& x, const std::string& conv, const std::string& bn, int64_t k,
                      int64_t stride, int64_t pad, int64_t groups) {
    const std::string c = node("Conv", {x, param(conv + ".weight")},
                               {attr_ints("kernel_shape", {k, k}), attr_ints("strides", {stride, stride}),
                                attr_ints("pads", {pad, pad, pad, pad}), attr_int("group", groups)},
                               conv);
    return node("BatchNormalization",
                {c, param(bn + ".weight"), param(bn + ".bias"), param(bn + ".running_mean"),
                 param(bn + ".running_var")},
                {attr_float("epsilon", 1e-5f)}, bn);
  }
};

std::string labels_list() {
  std::string s;
  for (const char* l : kSubtypes) s += std::string(s.empty() ? "" : ",") + l;
  return s;
}

std::string floats_list(const std::vector<double>& v) {  // float32 values, each to 9 digits (round trip)
  std::string s;
  for (double x : v) s += std::string(s.empty() ? "" : ",") + fmt_double(x, 9);
  return s;
}

onnx::Dim free_dim(const char* name) { return onnx::Dim{-1, name}; }
onnx::Dim fixed_dim(int64_t v) { return onnx::Dim{v, ""}; }

// logits -> "probabilities" = sigmoid(logits / T)
void add_probabilities(GraphBuilder& b, const std::string& logits, const std::vector<double>& temperature) {
  std::vector<float> t(temperature.begin(), temperature.end());
  const std::string tn = b.constant("temperature", Tensor::from_data(t.data(), {int64_t(t.size())}));
  b.node("Sigmoid", {b.node("Div", {logits, tn})}, {}, "probabilities");
}

}  // namespace

onnx::Model slice_model_onnx(const ResNeXt& model, const CheckpointMeta& meta) {
  const ResNeXtConfig& cfg = model.config();
  GraphBuilder b(model.state_dict());
  b.m.graph_name = "ich_slice_model";
  std::string x = b.conv_bn("input", "conv1", "bn1", 7, 2, 3, 1);
  x = b.node("Relu", {x});
  x = b.node("MaxPool", {x}, {attr_ints("kernel_shape", {3, 3}), attr_ints("strides", {2, 2}),
                              attr_ints("pads", {1, 1, 1, 1})});
  for (int s = 0; s < 4; ++s)
    for (int64_t k = 0; k < cfg.blocks[size_t(s)]; ++k) {
      const std::string p = "layer" + std::to_string(s + 1) + "." + std::to_string(k) + ".";
      const int64_t stride = (s > 0 && k == 0) ? 2 : 1;
      const std::string in = x;
      std::string y = b.node("Relu", {b.conv_bn(in, p + "conv1", p + "bn1", 1, 1, 0, 1)});
      y = b.node("Relu", {b.conv_bn(y, p + "conv2", p + "bn2", 3, stride, 1, cfg.groups)});
      y = b.conv_bn(y, p + "conv3", p + "bn3", 1, 1, 0, 1);
      const std::string identity =
          b.has(p + "downsample.0.weight") ? b.conv_bn(in, p + "downsample.0", p + "downsample.1", 1, stride, 0, 1)
                                           : in;
      x = b.node("Relu", {b.node("Add", {y, identity})});
    }
  x = b.node("Flatten", {b.node("GlobalAveragePool", {x})}, {attr_int("axis", 1)});
  b.node("Gemm", {x, b.param("fc.weight"), b.param("fc.bias")}, {attr_int("transB", 1)}, "logits");
  std::vector<double> temps(meta.temperature.begin(), meta.temperature.end());
  add_probabilities(b, "logits", temps);

  const int64_t classes = b.state.at("fc.bias").size(0);
  b.m.inputs.push_back({"input", onnx::kFloat,
                        {free_dim("batch"), fixed_dim(cfg.in_channels), free_dim("height"), free_dim("width")},
                        "windowed slices, (v/255 - mean[c%3]) / std[c%3]; see metadata"});
  b.m.outputs.push_back({"logits", onnx::kFloat, {free_dim("batch"), fixed_dim(classes)}, "labels: " + labels_list()});
  b.m.outputs.push_back({"probabilities", onnx::kFloat, {free_dim("batch"), fixed_dim(classes)},
                         "sigmoid(logits / temperature)"});
  b.m.doc = "ich slice model: " + cfg.name + ", " + std::to_string(classes) + " sigmoid outputs";
  b.m.metadata = {{"ich.kind", "slice"},
                  {"ich.arch", meta.arch},
                  {"ich.labels", labels_list()},
                  {"ich.windows", meta.windows},
                  {"ich.size", std::to_string(meta.size)},
                  {"ich.context", std::to_string(meta.context)},
                  {"ich.input", "channels: for each slice (the neighbours -K..K, in that order, when context K > 0) "
                                "its windows in order; value (v/255 - mean[c%3]) / std[c%3] of the uint8 windowed "
                                "image v, resized to size x size (bilinear, as ich-window then ich's loader do)"},
                  {"ich.mean", "0.485,0.456,0.406"},
                  {"ich.std", "0.229,0.224,0.225"},
                  {"ich.temperature", floats_list(temps)},
                  {"ich.calibrated", meta.calibrated ? "1" : "0"},
                  {"ich.weights_fingerprint", weights_fingerprint(model)}};
  return b.m;
}

onnx::Model series_model_onnx(const SeqModel& model, const FeatureNorm& norm, const SeqCheckpointMeta& meta) {
  const SeqModelConfig& c = model.config();
  GraphBuilder b(model.state_dict());
  b.m.graph_name = "ich_series_model";
  const int64_t H = c.hidden, in0 = series_input_size(c.features);
  const bool lstm = c.cell == RnnCell::LSTM;
  const int64_t G = lstm ? 4 : 3;
  // ONNX's gate order, as indices of PyTorch's blocks: LSTM i,o,f,c from
  // i,f,g,o; GRU z,r,h from r,z,n.
  const std::vector<int64_t> order = lstm ? std::vector<int64_t>{0, 3, 1, 2} : std::vector<int64_t>{1, 0, 2};
  auto reorder = [&](const Tensor& t) {  // (G*H, ...) rows in ONNX's gate order, as a host vector
    const Tensor h = t.to(Device::cpu()).contiguous();
    const int64_t row = h.numel() / (G * H);
    std::vector<float> out;
    const float* p = h.data<float>();
    for (int64_t g : order) out.insert(out.end(), p + g * H * row, p + (g + 1) * H * row);
    return out;
  };
  const std::string lens = b.node("Cast", {"lengths"}, {attr_int("to", onnx::kInt32)});
  std::string x = b.node("Transpose", {"series"}, {attr_ints("perm", {1, 0, 2})});  // (T, B, F)
  const std::string flat = b.constant("shape_T_B_2H", Tensor::from_data(std::vector<int64_t>{0, 0, -1}.data(), {3}));
  for (int64_t l = 0; l < c.layers; ++l) {
    const int64_t in = l == 0 ? in0 : 2 * H;
    std::vector<float> W, R, B;
    for (const char* dir : {"", "_reverse"}) {
      const std::string s = "_l" + std::to_string(l) + dir;
      for (auto [dst, name] : {std::pair{&W, "rnn.weight_ih"}, std::pair{&R, "rnn.weight_hh"}}) {
        const std::vector<float> v = reorder(b.state.at(name + s));
        dst->insert(dst->end(), v.begin(), v.end());
      }
      for (const char* name : {"rnn.bias_ih", "rnn.bias_hh"}) {
        const std::vector<float> v = reorder(b.state.at(name + s));
        B.insert(B.end(), v.begin(), v.end());
      }
    }
    const std::string L = std::to_string(l);
    const std::string w = b.constant("W_l" + L, Tensor::from_data(W.data(), {2, G * H, in}));
    const std::string r = b.constant("R_l" + L, Tensor::from_data(R.data(), {2, G * H, H}));
    const std::string bias = b.constant("B_l" + L, Tensor::from_data(B.data(), {2, 2 * G * H}));
    std::vector<onnx::Attr> attrs = {attr_int("hidden_size", H), onnx::attr_string("direction", "bidirectional")};
    if (!lstm) attrs.push_back(attr_int("linear_before_reset", 1));
    const std::string y = b.node(lstm ? "LSTM" : "GRU", {x, w, r, bias, lens}, attrs);  // (T, 2, B, H)
    x = b.node("Reshape", {b.node("Transpose", {y}, {attr_ints("perm", {0, 2, 1, 3})}), flat});  // (T, B, 2H)
  }
  x = b.node("Transpose", {x}, {attr_ints("perm", {1, 0, 2})});  // (B, T, 2H)
  const Tensor fw = b.state.at("fc.weight").to(Device::cpu()).transpose(0, 1).contiguous();
  x = b.node("MatMul", {x, b.constant("fc.weight_t", fw)});
  b.node("Add", {x, b.param("fc.bias")}, {}, "logits");
  add_probabilities(b, "logits", std::vector<double>(6, 1.0));

  b.m.inputs.push_back({"series", onnx::kFloat, {free_dim("batch"), free_dim("slices"), fixed_dim(in0)},
                        "per slice [e, e - e_prev, e - e_next, gap_prev/10mm, gap_next/10mm], e standardised"});
  b.m.inputs.push_back({"lengths", onnx::kInt64, {free_dim("batch")}, "slices of each series, padding after"});
  b.m.outputs.push_back({"logits", onnx::kFloat, {free_dim("batch"), free_dim("slices"), fixed_dim(6)},
                         "labels: " + labels_list()});
  b.m.outputs.push_back(
      {"probabilities", onnx::kFloat, {free_dim("batch"), free_dim("slices"), fixed_dim(6)}, "sigmoid(logits)"});
  b.m.doc = std::string("ich series model: bidirectional ") + cell_name(c.cell) + " over a series' slice embeddings";
  std::vector<double> mean(norm.mean.begin(), norm.mean.end()), inv(norm.inv_std.begin(), norm.inv_std.end());
  b.m.metadata = {{"ich.kind", "series"},
                  {"ich.cell", cell_name(c.cell)},
                  {"ich.hidden", std::to_string(H)},
                  {"ich.layers", std::to_string(c.layers)},
                  {"ich.features", std::to_string(c.features)},
                  {"ich.labels", labels_list()},
                  {"ich.views", tta_name(meta.views)},
                  {"ich.cnn", meta.cnn},
                  {"ich.input", "per slice t of a series in order along its normal: [e_t, e_t - e_{t-1}, e_t - "
                                "e_{t+1}, gap_prev / 10 mm, gap_next / 10 mm], e = (embedding - mean) * inv_std, a "
                                "missing neighbour taken as e_t (seq/seq_data.h); embeddings from the slice model "
                                "named by ich.cnn, averaged over ich.views"},
                  {"ich.feature_mean", floats_list(mean)},
                  {"ich.feature_inv_std", floats_list(inv)}};
  return b.m;
}

std::string export_checkpoint(const std::string& checkpoint, const std::string& onnx_path,
                              const std::string& pth_path) {
  ICH_CHECK(!onnx_path.empty() || !pth_path.empty(), "export: give --onnx, --pth or both");
  const bool series = is_seq_checkpoint(checkpoint);
  std::string what;
  if (series) {
    const LoadedSeqCheckpoint c = load_seq_checkpoint(checkpoint);
    if (!onnx_path.empty()) onnx::write_model(onnx_path, series_model_onnx(*c.model, c.norm, c.meta));
    if (!pth_path.empty()) write_torch_state_dict(pth_path, c.model->state_dict());
    what = std::string("series model (") + cell_name(c.model->config().cell) + ")";
  } else {
    const LoadedCheckpoint c = load_checkpoint(checkpoint);
    if (!onnx_path.empty()) onnx::write_model(onnx_path, slice_model_onnx(*c.model, c.meta));
    if (!pth_path.empty()) write_torch_state_dict(pth_path, c.model->state_dict());
    what = "slice model (" + c.meta.arch + ")";
  }
  std::string line = checkpoint + ": " + what + " ->";
  if (!onnx_path.empty()) line += " " + onnx_path + " (ONNX, opset 17)";
  if (!pth_path.empty()) line += " " + pth_path + " (PyTorch state_dict)";
  return line;
}

}  // namespace ich
