// resnext_bf16.h: a ResNeXt compiled for bfloat16 inference on the CPU
// (engine/cpu/conv_bf16.h's kernels: AMX or AVX512-BF16).
//
// Built once from a model in eval mode, as a deployment runtime does:
//   - each batch norm folded into the convolution before it (eval uses the
//     running statistics, so y = gamma (conv(x) - mean) / sqrt(var + eps) +
//     beta is a convolution with weights w gamma / sqrt(var + eps) and bias
//     beta - mean gamma / sqrt(var + eps); folded in float64, the weights
//     then rounded to bfloat16 once);
//   - the bias, the residual add and the ReLU done in the convolution's
//     epilogue, on the float32 sums, rounded to bfloat16 once;
//   - activations channels-last (NHWC) bfloat16 from the stem to layer4
//     (half the bytes of float32, and the tiles' natural layout); the stem's
//     7x7 convolution over 3 (or 3(2K+1)) channels as one product with its
//     147 taps as k (im2col, padded to a multiple of 32); max pooling on the
//     bfloat16 values (exact);
//   - the feature map after layer4 back to float32 NCHW for the model's own
//     head (global average pool and fc in float32), Grad-CAM and ich-embed.
// Weights are a snapshot: a model whose weights change afterwards needs a
// new ResNeXtBf16.
//
// Against the autocast emulation (engine/ops/amp.h, the GPU path's CPU
// oracle) the rounding points differ by design (that one rounds the
// convolution's output before batch norm; here batch norm is inside the
// sum): both are within bfloat16's rounding of float64
// (tests/test_bf16_inference.cpp, "Bf16ResNeXt").
#pragma once
#include <memory>
#include <vector>

#include "engine/cpu/conv_bf16.h"
#include "layers/resnext.h"

namespace ich {

class ResNeXtBf16 {
 public:
  // Throws ich::Error when a convolution's shape does not fit the kernels or
  // isa is not on this CPU.
  explicit ResNeXtBf16(const ResNeXt& model, cpu::bf16::Isa isa = cpu::bf16::best_isa());
  // x (N, in_channels, H, W) float32 on the CPU -> the feature map after
  // layer4, (N, feature_dim, H/32, W/32) float32 (bfloat16 values).
  Tensor features(const Tensor& x) const;
  cpu::bf16::Isa isa() const { return isa_; }

 private:
  struct Block {
    cpu::bf16::PackedConv conv1, conv2, conv3, down;
    bool has_down = false;
    int stage = 0;  // 0..3 for layer1..layer4 (the profiler's names)
  };
  cpu::bf16::Isa isa_;
  int64_t in_channels_ = 3, stem_k_ = 0, stem_out_ = 0;
  cpu::bf16::PackedConv stem_;
  std::vector<Block> blocks_;
};

// --precision for the tools that apply models (ich-eval, ich-predict,
// ich-embed, ich-serve): "fp32" leaves the model as it is; "bf16" compiles
// it (ResNeXt::use_bf16_inference) on a CPU with AMX or AVX512-BF16 and
// refuses, in one line naming the CPU's lack, elsewhere and on a GPU (where
// autocast is the bf16 path of training, not of these tools yet).
void apply_inference_precision(ResNeXt& model, const std::string& precision, Device device);

}  // namespace ich
