// resnext.h: ResNet/ResNeXt exactly as torchvision defines them
// (torchvision/models/resnet.py), with its parameter names, so that
// checkpoints map one to one ("layer3.17.conv2.weight").
//
//   conv1 7x7/2 (3 -> 64) - bn1 - relu - maxpool 3x3/2
//   layer1..layer4: Bottleneck blocks, planes 64, 128, 256, 512 (times
//     base_planes/64 for the small presets), stride 1, 2, 2, 2
//   avgpool (global) - flatten - fc (planes*4*8 -> num_classes)
//
// Bottleneck(inplanes, planes, stride, groups, width_per_group):
//   width = planes * (width_per_group / 64) * groups
//   conv1 1x1 (inplanes -> width) - bn1 - relu
//   conv2 3x3 grouped, stride here (width -> width) - bn2 - relu
//   conv3 1x1 (width -> planes*4) - bn3
//   + identity, or downsample = [0] 1x1 conv with the stride, [1] BN, on the
//     first block of a stage whose shape changes
//   - relu
// Convs have no bias; BN eps 1e-5, momentum 0.1; convs kaiming normal
// (fan_out), BN weight 1 and bias 0, fc PyTorch's Linear default.
#pragma once
#include <array>
#include <memory>
#include <string>
#include <vector>

#include "layers/layers.h"

namespace ich {

class ResNeXtCompiled;  // layers/resnext_compiled.h

struct ResNeXtConfig {
  std::string name;
  std::array<int64_t, 4> blocks;  // Bottlenecks per stage
  int64_t groups = 1;
  int64_t width_per_group = 64;
  int64_t base_planes = 64;  // planes of layer1; torchvision: 64
  int64_t num_classes = 1000;
  int64_t in_channels = 3;  // conv1's input: 3 windows, or 3 x (2K+1) with K neighbouring slices a side
};

// "resnext101_32x8d" ([3,4,23,3], 32 groups, width 8), "resnext50_32x4d"
// ([3,4,6,3], 32x4), "resnet50" ([3,4,6,3], 1x64), and "resnext_mini"
// ([1,1,1,1], 8 groups x 4, base 16: 0.4 M parameters, trains on a CPU in
// minutes). Throws naming the known presets for an unknown name.
ResNeXtConfig resnext_preset(const std::string& name, int64_t num_classes = 1000);
std::vector<std::string> resnext_preset_names();

class Bottleneck : public Module {
 public:
  static constexpr int64_t kExpansion = 4;
  Bottleneck(int64_t inplanes, int64_t planes, int64_t stride, int64_t groups, int64_t width_per_group,
             Generator& gen);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Bottleneck"; }

 private:
  Conv2d &conv1_;
  BatchNorm2d& bn1_;
  Conv2d& conv2_;
  BatchNorm2d& bn2_;
  Conv2d& conv3_;
  BatchNorm2d& bn3_;
  ReLU& relu_;
  Sequential* downsample_ = nullptr;
};

class ResNeXt : public Module {
 public:
  ResNeXt(const ResNeXtConfig& cfg, Generator& gen);
  Tensor forward(const Tensor& x) override;  // head(features(x))
  // The last feature map, after layer4: (N, feature_dim, H/32, W/32).
  Tensor features(const Tensor& x);
  // Global average pool, flatten, fc: the logits of a feature map.
  Tensor head(const Tensor& features);
  std::string type_name() const override { return "ResNeXt"; }
  const ResNeXtConfig& config() const { return cfg_; }
  int64_t feature_dim() const { return feature_dim_; }
  // The backbone is kept; fc becomes a new Linear(feature_dim, num_classes)
  // initialised as PyTorch initialises a Linear.
  void replace_head(int64_t num_classes, Generator& gen);
  // conv1 takes in_channels (a multiple of 3) instead: the current weights
  // move to the channels from `first` on, every other channel's weights are
  // zero, so the widened model's output on an input whose channels first..
  // first+2 are x is the current model's on x (ich-train --context: a
  // pretrained single-slice model starts as it was, the neighbours' weights
  // learn from zero).
  void widen_input(int64_t in_channels, int64_t first);
  Linear& fc() { return *fc_; }
  // Inference through a compiled copy, bfloat16 or float32
  // (layers/resnext_compiled.h): features() runs it whenever the model is in
  // eval mode, no gradient is recorded and x is on the CPU (Grad-CAM, which
  // needs gradients, runs the layer-by-layer engine); nullptr turns it off.
  void use_compiled_inference(std::shared_ptr<const ResNeXtCompiled> compiled) { compiled_ = std::move(compiled); }
  const ResNeXtCompiled* compiled_inference() const { return compiled_.get(); }

 private:
  std::shared_ptr<const ResNeXtCompiled> compiled_;
  ResNeXtConfig cfg_;
  int64_t feature_dim_ = 0;
  Conv2d* conv1_;
  BatchNorm2d* bn1_;
  ReLU* relu_;
  MaxPool2d* maxpool_;
  std::array<Sequential*, 4> stages_{};
  AdaptiveAvgPool2d* avgpool_;
  std::shared_ptr<Linear> fc_;
};

// Builds the preset `arch` with as many outputs as the weights file's
// fc.weight has rows, and loads the file strictly (every name and shape must
// match; num_batches_tracked may be absent, as in the WSL checkpoint).
std::shared_ptr<ResNeXt> load_resnext(const std::string& arch, const std::string& weights_path);
// Checks named shapes (a converted checkpoint) against `arch`, with the head
// size taken from fc.weight; throws naming `source` and the first entry that
// is missing, unexpected or of another shape.
using NamedShapes = std::vector<std::pair<std::string, Shape>>;
void check_resnext_shapes(const std::string& arch, const NamedShapes& entries, const std::string& source);
// The preset `arch` with the classes of entries' fc.weight and the input
// channels of its conv1.weight (3, or 3 x (2K+1) for a model of adjacent
// slices).
ResNeXtConfig resnext_config_for(const std::string& arch, const NamedShapes& entries);
// Loads a pretrained backbone into `model`: every entry of the weights file
// except the head (fc.*), which may have any number of classes; names and
// shapes checked as above.
void load_backbone(ResNeXt& model, const std::string& weights_path);

}  // namespace ich
