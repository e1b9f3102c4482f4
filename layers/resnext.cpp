#include "layers/resnext.h"

#include <cstring>
#include <set>

#include "engine/autograd.h"
#include "engine/init.h"
#include "engine/ops.h"
#include "layers/resnext_compiled.h"

namespace ich {

ResNeXtConfig resnext_preset(const std::string& name, int64_t num_classes) {
  if (name == "resnext101_32x8d") return {name, {3, 4, 23, 3}, 32, 8, 64, num_classes};
  if (name == "resnext50_32x4d") return {name, {3, 4, 6, 3}, 32, 4, 64, num_classes};
  if (name == "resnet50") return {name, {3, 4, 6, 3}, 1, 64, 64, num_classes};
  if (name == "resnext_mini") return {name, {1, 1, 1, 1}, 8, 4, 16, num_classes};
  std::string known;
  for (const auto& n : resnext_preset_names()) known += (known.empty() ? "" : ", ") + n;
  throw Error("unknown architecture '" + name + "' (known: " + known + ")");
}

std::vector<std::string> resnext_preset_names() {
  return {"resnext101_32x8d", "resnext50_32x4d", "resnet50", "resnext_mini"};
}

Bottleneck::Bottleneck(int64_t inplanes, int64_t planes, int64_t stride, int64_t groups, int64_t width_per_group,
                       Generator& gen)
    : conv1_(register_module("conv1", std::make_shared<Conv2d>(inplanes, planes * width_per_group / 64 * groups, 1, 1,
                                                               0, 1, false, gen))),
      bn1_(register_module("bn1", std::make_shared<BatchNorm2d>(planes * width_per_group / 64 * groups))),
      conv2_(register_module("conv2", std::make_shared<Conv2d>(planes * width_per_group / 64 * groups,
                                                               planes * width_per_group / 64 * groups, 3, stride, 1,
                                                               groups, false, gen))),
      bn2_(register_module("bn2", std::make_shared<BatchNorm2d>(planes * width_per_group / 64 * groups))),
      conv3_(register_module("conv3", std::make_shared<Conv2d>(planes * width_per_group / 64 * groups,
                                                               planes * kExpansion, 1, 1, 0, 1, false, gen))),
      bn3_(register_module("bn3", std::make_shared<BatchNorm2d>(planes * kExpansion))),
      relu_(register_module("relu", std::make_shared<ReLU>())) {
  // torchvision: width = int(planes * (base_width / 64.0)) * groups; the
  // presets keep planes * width_per_group divisible by 64.
  ICH_CHECK(planes * width_per_group % 64 == 0, "Bottleneck: planes ", planes, " x width_per_group ",
            width_per_group, " must be a multiple of 64");
  if (stride != 1 || inplanes != planes * kExpansion) {
    auto ds = std::make_shared<Sequential>();
    ds->add(std::make_shared<Conv2d>(inplanes, planes * kExpansion, 1, stride, 0, 1, false, gen));
    ds->add(std::make_shared<BatchNorm2d>(planes * kExpansion));
    downsample_ = &register_module("downsample", ds);
  }
}

Tensor Bottleneck::forward(const Tensor& x) {
  if (!forward_observed()) {  // batch norm, the residual add and ReLU fused (same numbers)
    Tensor out = bn1_.forward_relu(conv1_(x));
    out = bn2_.forward_relu(conv2_(out));
    const Tensor identity = downsample_ ? (*downsample_)(x) : x;
    return bn3_.forward_relu(conv3_(out), identity);
  }
  Tensor out = relu_(bn1_(conv1_(x)));
  out = relu_(bn2_(conv2_(out)));
  out = bn3_(conv3_(out));
  const Tensor identity = downsample_ ? (*downsample_)(x) : x;
  return relu_(add(out, identity));
}

ResNeXt::ResNeXt(const ResNeXtConfig& cfg, Generator& gen) : cfg_(cfg) {
  const int64_t stem = cfg.base_planes;
  ICH_CHECK(cfg.in_channels >= 1, cfg.name, ": in_channels ", cfg.in_channels);
  conv1_ = &register_module("conv1", std::make_shared<Conv2d>(cfg.in_channels, stem, 7, 2, 3, 1, false, gen));
  bn1_ = &register_module("bn1", std::make_shared<BatchNorm2d>(stem));
  relu_ = &register_module("relu", std::make_shared<ReLU>());
  maxpool_ = &register_module("maxpool", std::make_shared<MaxPool2d>(3, 2, 1));
  int64_t inplanes = stem;
  for (int s = 0; s < 4; ++s) {
    const int64_t planes = cfg.base_planes << s, stride = s == 0 ? 1 : 2;
    auto stage = std::make_shared<Sequential>();
    for (int64_t b = 0; b < cfg.blocks[size_t(s)]; ++b) {
      stage->add(std::make_shared<Bottleneck>(inplanes, planes, b == 0 ? stride : 1, cfg.groups, cfg.width_per_group,
                                              gen));
      inplanes = planes * Bottleneck::kExpansion;
    }
    stages_[size_t(s)] = &register_module("layer" + std::to_string(s + 1), stage);
  }
  avgpool_ = &register_module("avgpool", std::make_shared<AdaptiveAvgPool2d>(1, 1));
  feature_dim_ = inplanes;
  fc_ = std::make_shared<Linear>(feature_dim_, cfg.num_classes, gen);
  register_module("fc", fc_);
}

void ResNeXt::replace_head(int64_t num_classes, Generator& gen) {
  fc_ = std::make_shared<Linear>(feature_dim_, num_classes, gen);
  if (!is_training()) fc_->eval();
  replace_module("fc", fc_);
  cfg_.num_classes = num_classes;
}

void ResNeXt::widen_input(int64_t in_channels, int64_t first) {
  const int64_t old = cfg_.in_channels;
  ICH_CHECK(first >= 0 && first + old <= in_channels, cfg_.name, ": cannot place ", old, " input channels at ", first,
            " of ", in_channels);
  const Tensor w = conv1_->weight.to(Device::cpu()).contiguous();  // (stem, old, 7, 7)
  const int64_t stem = w.size(0), k = w.size(2) * w.size(3);
  Tensor wide = Tensor::zeros({stem, in_channels, w.size(2), w.size(3)}, w.dtype());
  const size_t e = dtype_size(w.dtype());
  for (int64_t o = 0; o < stem; ++o)
    std::memcpy(static_cast<char*>(wide.raw_data()) + size_t((o * in_channels + first) * k) * e,
                static_cast<const char*>(w.raw_data()) + size_t(o * old * k) * e, size_t(old * k) * e);
  Generator unused(0);
  auto conv = [&] {
    const SkipInitGuard no_draw;  // every weight is set just below
    return std::make_shared<Conv2d>(in_channels, stem, 7, 2, 3, 1, false, unused, w.dtype());
  }();
  conv->weight.copy_(wide);
  conv->to(conv1_->weight.device());
  conv->train(is_training());
  replace_module("conv1", conv);
  conv1_ = conv.get();
  cfg_.in_channels = in_channels;
}

Tensor ResNeXt::features(const Tensor& x) {
  ICH_CHECK(x.dim() == 4 && x.size(1) == cfg_.in_channels, cfg_.name, ": input must be (N,", cfg_.in_channels,
            ",H,W), got ", x.str());
  if (compiled_ && !is_training() && !grad_enabled() && x.device().is_cpu()) return compiled_->features(x);
  Tensor h = forward_observed() ? (*relu_)((*bn1_)((*conv1_)(x))) : bn1_->forward_relu((*conv1_)(x));
  h = (*maxpool_)(h);
  for (Sequential* stage : stages_) h = (*stage)(h);
  return h;
}

Tensor ResNeXt::head(const Tensor& f) { return (*fc_)(flatten((*avgpool_)(f))); }

Tensor ResNeXt::forward(const Tensor& x) { return head(features(x)); }

namespace {
const Shape* find_shape(const NamedShapes& entries, const std::string& name) {
  for (const auto& [n, s] : entries)
    if (n == name) return &s;
  return nullptr;
}
bool is_batch_counter(const std::string& name) {
  return name.size() >= 19 && name.compare(name.size() - 19, 19, "num_batches_tracked") == 0;
}
}  // namespace

ResNeXtConfig resnext_config_for(const std::string& arch, const NamedShapes& entries) {
  const Shape* fc = find_shape(entries, "fc.weight");
  ResNeXtConfig cfg = resnext_preset(arch, fc && fc->size() == 2 ? (*fc)[0] : 1000);
  if (const Shape* c1 = find_shape(entries, "conv1.weight"); c1 && c1->size() == 4 && (*c1)[1] % 3 == 0)
    cfg.in_channels = (*c1)[1];  // a model of adjacent slices (ich-train --context): 3 x (2K+1) input channels
  return cfg;
}

void check_resnext_shapes(const std::string& arch, const NamedShapes& entries, const std::string& source) {
  const Shape* fc = find_shape(entries, "fc.weight");
  ICH_CHECK(fc != nullptr && fc->size() == 2, source, ": no 2-d 'fc.weight' entry, so not a ResNet/ResNeXt classifier");
  Generator gen(0);
  // Builds the model once for its names and shapes (350 MB allocated, not
  // drawn nor touched, for a moment for the largest preset).
  const SkipInitGuard no_init;
  const ResNeXt model(resnext_config_for(arch, entries), gen);
  std::set<std::string> names;
  for (const auto& [name, t] : model.state_dict()) {
    names.insert(name);
    const Shape* s = find_shape(entries, name);
    if (!s && is_batch_counter(name)) continue;  // optional, as in the WSL checkpoint
    ICH_CHECK(s != nullptr, source, ": missing entry '", name, "' that ", arch,
              " needs: is it a checkpoint of another architecture?");
    ICH_CHECK(*s == t.shape(), source, ": entry '", name, "' has shape ", shape_str(*s), ", ", arch, " expects ",
              shape_str(t.shape()));
  }
  for (const auto& [n, s] : entries)
    ICH_CHECK(names.count(n), source, ": unexpected entry '", n, "' ", shape_str(s), " for ", arch);
}

void load_backbone(ResNeXt& model, const std::string& path) {
  const WeightsFile f = WeightsFile::open(path);
  NamedTensors targets;
  for (auto& [n, t] : model.state_dict()) {
    if (n.rfind("fc.", 0) == 0) continue;  // the head is new
    const WeightsEntry* e = f.find(n);
    if (!e && is_batch_counter(n)) continue;
    ICH_CHECK(e != nullptr, "weights ", path, ": missing entry '", n, "' that ", model.config().name,
              " needs: are these weights for another architecture?");
    ICH_CHECK(e->shape == t.shape(), "weights ", path, ": entry '", n, "' has shape ", shape_str(e->shape), ", ",
              model.config().name, " expects ", shape_str(t.shape()));
    targets.emplace_back(n, t);
  }
  f.load_into(targets, /*strict=*/false);
}

std::shared_ptr<ResNeXt> load_resnext(const std::string& arch, const std::string& weights_path) {
  const WeightsFile f = WeightsFile::open(weights_path);
  NamedShapes entries;
  for (const auto& e : f.entries()) entries.emplace_back(e.name, e.shape);
  check_resnext_shapes(arch, entries, "weights file " + weights_path);
  Generator gen(0);
  const SkipInitGuard no_init;  // every parameter comes from the file (checked above)
  auto model = std::make_shared<ResNeXt>(resnext_config_for(arch, entries), gen);
  NamedTensors targets;
  for (auto& [name, t] : model->state_dict())
    if (f.find(name)) targets.emplace_back(name, t);
  f.load_into(targets, /*strict=*/false);  // names and shapes were checked above
  return model;
}

}  // namespace ich
