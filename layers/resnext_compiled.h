// resnext_compiled.h: a ResNeXt compiled for inference on the CPU, in
// bfloat16 (engine/cpu/conv_bf16.h's kernels: AMX or AVX512-BF16) or in
// float32 (their float32 twin: AVX-512F, or AVX2 + FMA).
//
// Built once from a model in eval mode, as a deployment runtime does:
//   - each batch norm folded into the convolution before it (eval uses the
//     running statistics, so y = gamma (conv(x) - mean) / sqrt(var + eps) +
//     beta is a convolution with weights w gamma / sqrt(var + eps) and bias
//     beta - mean gamma / sqrt(var + eps); folded in float64, the weights
//     then rounded to bfloat16 (or float32) once);
//   - the bias, the residual add and the ReLU done in the convolution's
//     epilogue, on the float32 sums (bfloat16: rounded to bfloat16 once);
//   - activations channels-last (NHWC) from the stem to layer4 (the
//     kernels' natural layout; bfloat16 has half the bytes of float32); the
//     stem's 7x7 convolution over 3 (or 3(2K+1)) channels as one product
//     with its 147 taps as k (im2col; bfloat16 pads k to a multiple of 32);
//     max pooling on the stored values (exact);
//   - the front (stem, layer1, layer2's first block: the largest
//     activations) run a few images at a time, so that they stay in cache
//     between its convolutions, the rest on the whole batch (front_images);
//   - the feature map after layer4 back to float32 NCHW for the model's own
//     head (global average pool and fc in float32), Grad-CAM and ich-embed.
// Weights are a snapshot: a model whose weights change afterwards needs a
// new ResNeXtCompiled.
//
// bfloat16: against the autocast emulation (engine/ops/amp.h, the GPU path's
// CPU oracle) the rounding points differ by design (that one rounds the
// convolution's output before batch norm; here batch norm is inside the
// sum): both are within bfloat16's rounding of float64
// (tests/test_bf16_inference.cpp, "Bf16ResNeXt"). float32: against the
// layer-by-layer engine (the oracle, engine/cpu) the rounding points differ
// too (batch norm folded, sums in another order): both within float32's
// accumulation bound of float64 ("F32ResNeXt").
#pragma once
#include <memory>
#include <vector>

#include "engine/cpu/conv_bf16.h"
#include "layers/resnext.h"

namespace ich {

class ResNeXtCompiled {
 public:
  // bfloat16 with kernel isa. Throws ich::Error when a convolution's shape
  // does not fit the kernels or isa is not on this CPU.
  explicit ResNeXtCompiled(const ResNeXt& model, cpu::bf16::Isa isa = cpu::bf16::best_isa());
  // float32 with `kernel` (Avx512 needs AVX-512F, Avx2 AVX2 + FMA; Reference runs anywhere,
  // slowly: the oracle of tests).
  ResNeXtCompiled(const ResNeXt& model, cpu::bf16::F32Kernel kernel);
  // x (N, in_channels, H, W) float32 on the CPU -> the feature map after
  // layer4, (N, feature_dim, H/32, W/32) float32 (bfloat16 values for bf16).
  Tensor features(const Tensor& x) const;
  bool is_f32() const { return f32_; }
  cpu::bf16::Isa isa() const { return isa_; }  // (bfloat16)
  std::string kernel_name() const;             // amx, avx512-bf16, reference; f32-avx512, f32-avx2, f32-reference
  // The front (the stem, layer1 and layer2's first block: the largest
  // activations) runs as many images at a time as keep its largest
  // activation of them near `bytes` (at least one image; 12 MB unless set),
  // so that they stay in cache between its convolutions; the rest runs on
  // the whole batch. The features do not depend on it, bit for bit (each
  // output is summed the same way whatever the images beside it).
  void set_front_bytes(int64_t bytes) { front_bytes_ = bytes; }
  // how many images of a batch of N (H x W) the front runs at a time
  int64_t front_images(int64_t N, int64_t H, int64_t W) const;

 private:
  void compile(const ResNeXt& model);
  // the front's blocks [0, blocks), the shape after them, the largest
  // activation of an image in it (values), the last block with a
  // downsample, what an image needs of the buffer `mid` (values)
  struct Front {
    size_t blocks = 0, last_down = 0;
    int64_t h = 0, w = 0, c = 0, largest = 0, mid = 0;
  };
  Front front(int64_t H, int64_t W) const;
  int64_t front_images(const Front& f, int64_t N) const;
  template <typename T>
  Tensor run(const Tensor& x) const;
  bool f32_ = false;
  cpu::bf16::F32Kernel f32_kernel_ = cpu::bf16::F32Kernel::Reference;
  struct Block {
    cpu::bf16::PackedConv conv1, conv2, conv3, down;
    bool has_down = false;
    int stage = 0;  // 0..3 for layer1..layer4 (the profiler's names)
  };
  cpu::bf16::Isa isa_ = cpu::bf16::Isa::Reference;
  int64_t in_channels_ = 3, stem_k_ = 0, stem_out_ = 0;
  int64_t front_bytes_ = int64_t(12) << 20;
  cpu::bf16::PackedConv stem_;
  std::vector<Block> blocks_;
};

// --precision for the tools that apply models (ich-eval, ich-predict,
// ich-embed, ich-serve), on the CPU (ResNeXt::use_compiled_inference):
// "fp32" compiles the model in float32 where the CPU has AVX-512F (or else
// AVX2 + FMA: every x86-64 CPU since 2013-2015) and leaves it to the
// layer-by-layer engine elsewhere (ICH_CPU_F32=engine leaves it there on
// any CPU; =avx512, =avx2, =reference pick a kernel, the last the scalar
// one); "bf16" compiles it in bfloat16 on a CPU with AMX or AVX512-BF16
// and refuses, in one line naming the CPU's lack, elsewhere and on a GPU
// (where autocast is the bf16 path of training, not of these tools yet).
// On a GPU, fp32 leaves the model as it is.
void apply_inference_precision(ResNeXt& model, const std::string& precision, Device device);

}  // namespace ich
