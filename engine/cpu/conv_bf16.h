// conv_bf16.h: bfloat16 convolutions for inference on CPUs that multiply
// bfloat16 in hardware: Intel AMX tiles (TDPBF16PS, Sapphire Rapids and
// later) and AVX512-BF16 (VDPBF16PS, Cooper Lake, Zen 4), with a scalar
// reference that computes what the instructions compute.
//
// What one convolution computes (layers/resnext_compiled.h runs a ResNeXt
// through it):
//   y[p, o] = bf16( act( sum over (tap, c) of w[o, c, tap] * x[p + tap, c]
//                        + bias[o] (+ residual[p, o]) ) )
// x, y and the residual are channels-last (NHWC) bfloat16; w and bias come
// folded with the batch norm after the convolution (eval: the running
// statistics are constants), w rounded to bfloat16 once, bias float32. Each
// product of two bfloat16 is exact in float32, and the sum is float32,
// accumulated pair by pair in the instructions' documented order, with the
// instructions' flush of denormal inputs and outputs to zero; the epilogue
// (bias, residual, ReLU) in float32, rounded to bfloat16 once at the end.
//
// Layout (why): activations NHWC, so that 16 output pixels x 32 input
// channels are 16 rows of 64 contiguous bytes: one AMX A tile straight from
// memory (1x1 convolutions need no copy at all; a 3x3 one reads its 9 taps
// as 9 tiles at shifted addresses of a zero-bordered copy, a stride-2 one
// with a row stride of 2 pixels). Weights are packed once, at load, into
// the B tiles' pair-interleaved ("VNNI") layout:
//   [block][16-channel tile of outputs][tap][k chunk][k pair][16 outputs][2]
// (an output tile's B tiles consecutive: the kernels stream them)
// A grouped convolution (ResNeXt's 32 groups) is cut into blocks of groups
// whose input channels make up one k chunk of 32 where a group has fewer
// (the block's B tile is block-diagonal: zeros between groups), so the
// tiles stay full; groups of 32 or more channels are blocks of their own.
#pragma once
#include <cstddef>
#include <cstdint>
#include <new>
#include <string>
#include <vector>

namespace ich::cpu::bf16 {

// The kernels, best first. Reference runs anywhere (the oracle; slow).
enum class Isa { Reference, Avx512Bf16, Amx };
const char* isa_name(Isa isa);  // "reference", "avx512-bf16", "amx"
// What this CPU (and kernel) can run: AMX when CPUID says AMX-TILE and
// AMX-BF16 and Linux grants the tile state (arch_prctl
// ARCH_REQ_XCOMP_PERM), else AVX512-BF16 when CPUID says so, else
// Reference. The environment variable ICH_CPU_BF16=amx|avx512-bf16|reference
// picks a lower one (tests, benchmarks; asking for one the CPU lacks is an
// ich::Error naming it), =none makes this CPU one without either.
Isa best_isa();
bool has_isa(Isa isa);
// "" when a hardware bf16 path exists, else why not (for --precision bf16's
// refusal line).
std::string missing_hardware_reason();

// Storage aligned to 64 bytes (a cache line, a zmm register): the kernels'
// weight loads never straddle two lines.
template <class T>
struct CacheAligned {
  using value_type = T;
  CacheAligned() = default;
  template <class U>
  CacheAligned(const CacheAligned<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64))); }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t(64)); }
  friend bool operator==(const CacheAligned&, const CacheAligned&) { return true; }
};

// A convolution prepared for the kernels (see the file comment).
struct PackedConv {
  int64_t C = 0, O = 0, G = 1, kh = 1, kw = 1, stride = 1, pad = 0;
  int64_t Kb = 0, Nb = 0, blocks = 0;  // input and output channels of a block of groups; blocks = C / Kb
  int64_t Kc = 0, kchunks = 0;         // k per chunk (even, <= 32), chunks per tap
  int64_t ntiles = 0;                  // 16-output tiles per block (the last zero-padded)
  std::vector<uint16_t, CacheAligned<uint16_t>> w;  // packed B tiles
  bool f32 = false;                    // packed for the float32 kernels instead (pack_conv_f32)
  std::vector<float, CacheAligned<float>> wf;  // their weights, [block][output tile][tap][k][16 outputs], or
  // (quads) a grouped convolution's weights for the kernel that broadcasts
  // 4 channels of a pixel at a time: blocks are 16-output tiles (Nb 16, Kb
  // a group's channels), [tile][tap][k / 4][quad q][output 4q + l's 4
  // channels (lane 4l + j)]; see pack_conv_f32
  bool quads = false;
  std::vector<float> bias;             // O
  int64_t taps() const { return kh * kw; }
};
// w (O, C/G, kh, kw) float32 (the folded weights), bias (O) float32.
// Throws ich::Error when the shape does not fit the tiles (an odd number of
// channels in a block, or more than 32 not a multiple of 32).
PackedConv pack_conv(const float* w, const float* bias, int64_t O, int64_t C, int64_t G, int64_t kh, int64_t kw,
                     int64_t stride, int64_t pad);

// x (N, H, W, C) bfloat16 -> y (N, Ho, Wo, O) bfloat16, Ho = (H + 2 pad -
// kh) / stride + 1; residual (N, Ho, Wo, O) or null. Parallel over output
// tiles (OpenMP); the result does not depend on the thread count. With
// y_f32 instead of y (tests): the float32 results before the rounding.
// x_pad = p.pad: x is given inside its zero border (H + 2 pad by W + 2 pad
// pixels, padded_size() elements with the zero slack after it) and read as
// it is, instead of copied into one. y_pad: y (and the residual) is written
// inside a border of y_pad pixels, which is not touched (a 3x3
// convolution's input made by the 1x1 before it).
void conv_forward(const PackedConv& p, const uint16_t* x, int64_t N, int64_t H, int64_t W, uint16_t* y,
                  const uint16_t* residual, bool relu, Isa isa, float* y_f32 = nullptr, int64_t x_pad = 0,
                  int64_t y_pad = 0);
// Elements of an activation (N, H, W, C) inside a zero border of `pad`
// pixels, with the slack the kernels read past its end.
int64_t padded_size(int64_t N, int64_t H, int64_t W, int64_t C, int64_t pad);
// The reference kernel adding each pair's products in the order of
// `emulated`'s instruction (Reference: AMX's order, as conv_forward's
// reference does): the oracle each hardware kernel must equal bit for bit.
void conv_forward_emulating(const PackedConv& p, const uint16_t* x, int64_t N, int64_t H, int64_t W, uint16_t* y,
                            const uint16_t* residual, bool relu, Isa emulated, float* y_f32 = nullptr);
int64_t conv_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad);

// The float32 twin (layers/resnext_compiled.h's fp32 path): the same work
// split, layouts and epilogue on float32 activations, each sum a chain of
// fused multiply-adds (taps, then channels, in order), 16 outputs a zmm
// register. The AVX-512 kernel (AVX-512F) equals the scalar reference bit
// for bit. Groups of 32 outputs or fewer (ResNeXt's layer1 to layer3: 8,
// 16 and 32) are packed by quads instead (PackedConv::quads): one 128-bit
// broadcast of 4 channels feeds 2-4 FMAs instead of one, and each output
// is 4 chains (channel j of every 4), added (j0 + j2) + (j1 + j3) at the
// end; other grouped convolutions put narrower groups in blocks of 16.
// The AVX2 kernel (AVX2 + FMA: the x86-64 CPUs without AVX-512, Haswell to
// Alder Lake's cores and Zen 1-3) computes 6 pixels x 16 outputs in 12 ymm
// sums, the same chains, equal to the reference bit for bit; it takes the
// blocks of 16 outputs (no quads).
enum class F32Kernel { Reference, Avx512, Avx2 };
bool has_avx512f();  // AVX-512F with BW and VL (every AVX-512 CPU since Skylake-SP)
bool has_avx2_fma();  // AVX2 and FMA, the OS saving ymm
bool has_f32_kernel(F32Kernel k);
const char* f32_kernel_name(F32Kernel k);  // "f32-avx512", "f32-avx2", "f32-reference"
F32Kernel best_f32_kernel();  // Avx512, else Avx2, else Reference
// Packed for `kernel` (the reference runs either packing).
PackedConv pack_conv_f32(const float* w, const float* bias, int64_t O, int64_t C, int64_t G, int64_t kh, int64_t kw,
                         int64_t stride, int64_t pad, F32Kernel kernel);
void conv_forward_f32(const PackedConv& p, const float* x, int64_t N, int64_t H, int64_t W, float* y,
                      const float* residual, bool relu, F32Kernel kernel, int64_t x_pad = 0, int64_t y_pad = 0);

}  // namespace ich::cpu::bf16
