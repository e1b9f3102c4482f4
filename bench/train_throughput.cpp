// train_throughput: training speed of our engine on ResNeXt, the number to
// race against PyTorch (shared/bench/torch_resnext_baseline.py measures the
// same configuration: resnext101_32x8d, fc -> 6 outputs, BCE with logits,
// Adam lr 2e-5, square inputs, random data resident on the device).
//
// One table row per configuration (precision:batch, as the PyTorch script
// takes them; "amp" is bf16; "+cl" channels-last activations, "+graph" the
// step captured once and replayed as a CUDA graph): images per second (median of the timed steps),
// peak device memory (our caching allocator's peak), the step's achieved
// TFLOP/s (3 x 2 x the model's multiply-adds per image: forward, and
// backward at twice the forward) and that as a share of this device's
// ceiling for the row's precision measured in the same run (a 1x1
// convolution as an 8192^3 GEMM through cuDNN in fp32, tf32 or bf16; on the
// CPU the float32 FMA peak, below). With --profile, a second table:
// where a step's time goes by kernel family (conv, batchnorm, elementwise,
// pooling, linear, loss, optimizer, cast), from profiled steps that
// synchronise around every kernel, and the largest kernels of each
// configuration. "+eval" rows time inference instead
// (eval mode, no gradients: one forward pass, 2 x macs per image).
// "+compiled" rows (the CPU's compiled inference) are set against the peak
// of their kernel's multiply-add unit instead, measured here on as many
// threads as the run uses (float32 FMA on AVX-512F or AVX2, VDPBF16PS), and
// with --profile each of their convolutions (per kind and stage) gets its
// rate and its share of that peak.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <sstream>

#include "apps/app_main.h"
#include "engine/allocator.h"
#include "engine/ops/amp.h"
#include "engine/autograd.h"
#include "engine/device_select.h"
#include "engine/kernels.h"
#include "engine/profile.h"
#include "engine/cpu/conv_bf16.h"
#include "layers/resnext.h"
#include "layers/resnext_compiled.h"
#include "layers/summary.h"
#include "train/graph_step.h"
#include "train/step.h"
#ifdef ICH_WITH_CUDA
#include "engine/cuda/runtime.h"
#endif
#if defined(__x86_64__)
// (GCC 12's false "may be used uninitialized" in its own AVX-512 intrinsics,
// as engine/cpu/conv_bf16.cpp says)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#endif
#include <omp.h>

namespace {

void sync(ich::Device d) {
#ifdef ICH_WITH_CUDA
  if (d.is_cuda()) ich::cuda::synchronize(d.index);
#endif
  (void)d;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// float32 GEMM rate of this device (n x n x n through our linear kernel).
double gemm_tflops(ich::Device d) {
  const int64_t n = d.is_cuda() ? 8192 : 1024;
  ich::Generator gen(0);
  const ich::Tensor a = ich::Tensor::randn({n, n}, gen).to(d), b = ich::Tensor::randn({n, n}, gen).to(d);
  ich::Tensor c = ich::Tensor::empty({n, n}, ich::DType::Float32, d);
  ICH_DISPATCH(d, linear_forward, a, b, ich::Tensor(), c);
  sync(d);
  const int reps = d.is_cuda() ? 10 : 2;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i) ICH_DISPATCH(d, linear_forward, a, b, ich::Tensor(), c);
  sync(d);
  return reps * 2.0 * double(n) * double(n) * double(n) / seconds_since(t0) / 1e12;
}

// The rate a 1x1 convolution reaches here with n channels on n pixels (an
// n x n x n GEMM through cuDNN, as the step's convolutions are run) in a
// dtype and math mode: the ceiling for the step's convolutions in that
// precision. A GPU only.
double conv_tflops(ich::Device d, const ich::Tensor& x32, const ich::Tensor& w32, ich::DType dt, bool tf32) {
  const int64_t n = x32.size(0);
  ich::allow_tf32(d, tf32);
  const ich::Tensor x = x32.to(dt), w = w32.to(dt);
  ich::Tensor y = ich::Tensor::empty({n, n, 1, 1}, dt, d);
  auto once = [&] { ICH_DISPATCH(d, conv2d_forward, x, w, ich::Tensor(), y, ich::Conv2dParams{}); };
  once();  // cuDNN chooses its algorithm
  sync(d);
  const int reps = 10;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i) once();
  sync(d);
  return reps * 2.0 * double(n) * double(n) * double(n) / seconds_since(t0) / 1e12;
}

// The multiply-add peak of a CPU kernel's unit (GMAC/s) on this run's
// threads: each thread runs 12 independent chains (more than the FMA
// latency times the ports, so the chains never wait) of the unit's
// instruction on registers, no memory; the best of three. 0 where the CPU
// lacks the unit or no peak is measured for it (AMX's tiles: the compiled
// rows on AMX are set against nothing).
#if defined(__x86_64__)
template <class Step>
double chains_rate(int64_t macs_per_step, Step step) {
  constexpr int64_t kIters = int64_t(1) << 24;
  double best = 0;
  for (int round = 0; round < 3; ++round) {
    double sink = 0;
    const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel reduction(+ : sink)
    sink += step(kIters);
    const double s = seconds_since(t0);
    volatile double keep = sink;  // the chains' results are used: not optimised away
    (void)keep;
    best = std::max(best, double(omp_get_max_threads()) * double(kIters) * 12 * double(macs_per_step) / s / 1e9);
  }
  return best;
}
// (one function per unit: each is compiled for its own instructions, and
// only called where CPUID has them)
__attribute__((target("avx512f"))) double chains_avx512(int64_t iters) {
  __m512 a[12];
  for (int j = 0; j < 12; ++j) a[j] = _mm512_set1_ps(float(j + 1));
  const __m512 b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-6f);
  for (int64_t i = 0; i < iters; ++i)
#pragma GCC unroll 12
    for (int j = 0; j < 12; ++j) a[j] = _mm512_fmadd_ps(a[j], b, c);
  double r = 0;
  for (int j = 0; j < 12; ++j) r += _mm512_reduce_add_ps(a[j]);
  return r;
}
__attribute__((target("avx2,fma"))) double chains_avx2(int64_t iters) {
  __m256 a[12];
  for (int j = 0; j < 12; ++j) a[j] = _mm256_set1_ps(float(j + 1));
  const __m256 b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-6f);
  for (int64_t i = 0; i < iters; ++i)
#pragma GCC unroll 12
    for (int j = 0; j < 12; ++j) a[j] = _mm256_fmadd_ps(a[j], b, c);
  alignas(32) float v[8];
  double r = 0;
  for (int j = 0; j < 12; ++j) {
    _mm256_store_ps(v, a[j]);
    for (float x : v) r += x;
  }
  return r;
}
// VDPBF16PS: 16 lanes, each adding two products
__attribute__((target("avx512f,avx512bf16"))) double chains_bf16(int64_t iters) {
  const __m512bh x = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(1e-3f));
  __m512 a[12];
  for (int j = 0; j < 12; ++j) a[j] = _mm512_set1_ps(float(j + 1));
  for (int64_t i = 0; i < iters; ++i)
#pragma GCC unroll 12
    for (int j = 0; j < 12; ++j) a[j] = _mm512_dpbf16_ps(a[j], x, x);
  double r = 0;
  for (int j = 0; j < 12; ++j) r += _mm512_reduce_add_ps(a[j]);
  return r;
}
#endif

// kernel: ResNeXtCompiled::kernel_name(). Measured once a kernel (the
// ceilings and the compiled rows ask for the same).
double unit_peak_gmacs(const std::string& kernel) {
  static std::map<std::string, double> measured;
  if (const auto it = measured.find(kernel); it != measured.end()) return it->second;
  double peak = 0;
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (kernel == "f32-avx512" && __builtin_cpu_supports("avx512f")) peak = chains_rate(16, chains_avx512);
  if (kernel == "f32-avx2" && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    peak = chains_rate(8, chains_avx2);
  if (kernel == "avx512-bf16" && __builtin_cpu_supports("avx512bf16")) peak = chains_rate(32, chains_bf16);
#endif
  return measured[kernel] = peak;
}

// Multiply-adds per image of each convolution the compiled path names in
// the profile (layers/resnext_compiled.cpp's names: the stem, and per stage
// each block's first 1x1, grouped 3x3, downsample and last 1x1), from the
// layer table. unit: "f32" or "bf16".
std::map<std::string, int64_t> compiled_conv_macs(const std::vector<ich::LayerRow>& rows, const std::string& unit) {
  std::map<std::string, int64_t> out;
  const std::string p = "conv2d_" + unit + "_";
  for (const auto& r : rows) {
    if (r.name == "conv1") {
      out[p + "stem"] += r.macs;
      continue;
    }
    if (r.name.rfind("layer", 0) != 0) continue;
    const std::string stage = r.name.substr(0, r.name.find('.'));
    auto ends = [&](const std::string& e) {
      return r.name.size() > e.size() && r.name.compare(r.name.size() - e.size(), e.size(), e) == 0;
    };
    if (ends(".conv1")) out[p + "1x1 " + stage] += r.macs;
    else if (ends(".conv2")) out[p + "3x3_grouped " + stage] += r.macs;
    else if (ends(".conv3")) out[p + "1x1_add_relu " + stage] += r.macs;
    else if (ends(".downsample.0")) out[p + "1x1_downsample " + stage] += r.macs;
  }
  return out;
}

struct Ceilings {
  double fp32 = 0, tf32 = 0, half = 0;  // TFLOP/s; half: bf16 (fp16 runs at the same tensor-core rate)
  double for_run(ich::DType precision, bool tf32_on) const {
    return precision != ich::DType::Float32 ? half : tf32_on ? tf32 : fp32;
  }
};

Ceilings measure_ceilings(ich::Device d) {
  Ceilings c;
  if (!d.is_cuda()) {  // the CPU: its float32 FMA peak for every row (its 16-bit modes are emulated in float32),
    // or where it has neither AVX-512F nor AVX2 + FMA, our float32 GEMM's rate
    const double peak = unit_peak_gmacs(ich::cpu::bf16::f32_kernel_name(ich::cpu::bf16::best_f32_kernel()));
    c.fp32 = c.tf32 = c.half = peak > 0 ? 2 * peak / 1e3 : gemm_tflops(d);
    return c;
  }
  const int64_t n = 8192;
  ich::Generator gen(1);
  const ich::Tensor x = ich::Tensor::randn({n, n, 1, 1}, gen).to(d), w = ich::Tensor::randn({n, n, 1, 1}, gen).to(d);
  c.fp32 = conv_tflops(d, x, w, ich::DType::Float32, false);
  c.tf32 = conv_tflops(d, x, w, ich::DType::Float32, true);
  c.half = conv_tflops(d, x, w, ich::DType::BFloat16, false);
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Training throughput of ich on a ResNeXt (images/s, peak memory, TFLOP/s), one row per configuration"};
  std::string arch = "resnext101_32x8d", configs, batches = "8,32", device = "auto";
  int64_t size = 200, steps = 20, warmup = 5;
  bool tf32 = false, profile = false;
  app.add_option("--arch", arch, "architecture")->capture_default_str();
  app.add_option("--size", size, "square input size")->capture_default_str();
  app.add_option("--configs", configs,
                 "precision:batch list, e.g. fp32:8,fp32+tf32+graph:8,bf16+cl:64,bf16+cl+graph:64 (amp = bf16, as "
                 "the PyTorch script; +cl: channels-last activations; +graph: the step captured as a CUDA graph "
                 "after the warm-up and replayed; +tf32: TF32 float32 convolutions, PyTorch's default); overrides "
                 "--batches");
  app.add_option("--batches", batches, "comma-separated batch sizes, in float32")->capture_default_str();
  app.add_option("--steps", steps, "timed steps per configuration")->capture_default_str();
  app.add_option("--warmup", warmup, "untimed steps first (algorithm search, allocator warm-up)")->capture_default_str();
  app.add_option("--device", device, "cpu, cuda or auto")->capture_default_str();
  app.add_flag("--tf32", tf32, "allow TF32 tensor cores for float32 convolutions and GEMMs in every configuration");
  app.add_flag("--profile", profile, "also print where a step's time goes, by kernel family");
  return ich::run_app("ich-bench-train", app, argc, argv, [&] {
    const ich::Device d = ich::pick_device(device);
    struct Run {
      ich::DType precision;
      bool channels_last, graph, tf32, eval;
      int64_t batch;
      bool compiled = false;
    };
    std::vector<Run> runs;
    std::stringstream ss(configs.empty() ? batches : configs);
    for (std::string item; std::getline(ss, item, ',');) {
      const size_t colon = item.find(':');
      std::stringstream parts(colon == std::string::npos ? "fp32" : item.substr(0, colon));
      std::string prec, mod;
      std::getline(parts, prec, '+');
      Run r{ich::parse_precision(prec == "amp" ? "bf16" : prec), false, false, tf32, false,
            std::stoll(colon == std::string::npos ? item : item.substr(colon + 1))};
      while (std::getline(parts, mod, '+')) {
        ICH_CHECK(mod == "cl" || mod == "graph" || mod == "tf32" || mod == "eval" || mod == "compiled",
                  "ich-bench-train: --configs ", item, ": unknown modifier +", mod,
                  " (cl, graph, tf32, eval or compiled)");
        (mod == "cl" ? r.channels_last : mod == "graph" ? r.graph : mod == "tf32" ? r.tf32 : mod == "eval" ? r.eval : r.compiled) = true;
      }
      ICH_CHECK(!r.graph || warmup >= 2, "ich-bench-train: +graph needs --warmup >= 2 (eager steps, then the capture)");
      ICH_CHECK(!(r.graph && r.eval), "ich-bench-train: --configs ", item, ": +graph captures a training step, not +eval");
      ICH_CHECK(!r.compiled || (r.eval && (r.precision == ich::DType::BFloat16 || r.precision == ich::DType::Float32)),
                "ich-bench-train: --configs ", item,
                ": +compiled is bf16+eval's or fp32+eval's compiled CPU path (layers/resnext_compiled.h)");
      runs.push_back(r);
    }
    ICH_CHECK(!runs.empty() && steps >= 1, "ich-bench-train: nothing to run");

    // Multiply-adds of one image, from the layer table (torchvision's count).
    int64_t macs = 0;
    std::vector<ich::LayerRow> layer_rows;
    {
      ich::Generator gen(0);
      ich::ResNeXt m(ich::resnext_preset(arch, 6), gen);
      layer_rows = ich::summarize(m, {1, 3, size, size});
      for (const auto& r : layer_rows) macs += r.macs;
    }
    std::map<std::string, double> unit_peaks;  // the compiled rows' kernels -> their unit's peak, GMAC/s
    const Ceilings ceilings = measure_ceilings(d);
    std::printf("# ich-bench-train: %s, %lldx%lld, Adam, BCE, on %s; %.2f GMAC per image\n"
                "ceilings here (%s): fp32 %.2f, tf32 %.2f, bf16 %.2f TFLOP/s; each row is set against its own\n\n",
                arch.c_str(), (long long)size, (long long)size, d.str().c_str(), double(macs) / 1e9,
                d.is_cuda() ? "a 1x1 convolution as an 8192^3 GEMM through cuDNN"
                            : "the float32 FMA peak; +compiled rows: their kernel's unit",
                ceilings.fp32, ceilings.tf32, ceilings.half);
    // step GiB: the peak less what was held before the timed steps (weights,
    // gradients, Adam's moments, the batch): what one step itself needs,
    // activations most of it.
    std::printf("| engine | precision | batch | images/s | peak GiB | TFLOP/s | of ceiling | step GiB |\n"
                "|---|---|---|---|---|---|---|---|\n");
    std::map<std::string, std::map<std::string, double>> families;  // config -> family -> ms per step
  struct KernelTime {
    std::string kernel;
    int64_t calls;
    double ms;
    double gmacs = 0, peak = 0;  // compiled convolutions: rate, and their unit's peak (0: none)
  };
  std::map<std::string, std::vector<KernelTime>> kernels;  // config -> kernels, largest time first
    std::vector<std::string> config_names;
    for (const auto& [precision, channels_last, graph, run_tf32, eval, batch, compiled] : runs) {
      ich::allow_tf32(d, run_tf32);
      ich::Generator gen(0);
      ich::ResNeXt m(ich::resnext_preset(arch, 1000), gen);
      m.replace_head(6, gen);
      m.to(d);
      m.train(!eval);
      // +compiled: batch norm folded, NHWC bfloat16 on AMX or AVX512-BF16
      // (ICH_CPU_BF16 picks a lower kernel) or NHWC float32 on AVX-512F or
      // AVX2 + FMA (what --precision fp32 runs there; ICH_CPU_F32 picks
      // another);
      // no autocast around it. Without it (a fresh model is not compiled):
      // the layer-by-layer engine.
      if (compiled) ich::apply_inference_precision(m, precision == ich::DType::Float32 ? "fp32" : "bf16", d);
      // Adam's two moments are twice the weights: made only for training rows,
      // so that an inference row's peak is inference's.
      std::unique_ptr<ich::Adam> adam =
          eval ? nullptr : std::make_unique<ich::Adam>(m.parameters(), ich::Adam::Options{2e-5});
      ich::LossScaler scaler;
      ich::LossScaler* sc = precision == ich::DType::Float16 ? &scaler : nullptr;
      // channels-last: converted once at the input, kept through the network
      const ich::Tensor x = ich::Tensor::randn({batch, 3, size, size}, gen)
                                .to(d)
                                .contiguous(channels_last ? ich::MemoryFormat::ChannelsLast : ich::MemoryFormat::Contiguous);
      const ich::Tensor y = ich::Tensor::uniform({batch, 6}, 0, 1, gen).to(d);
      // +graph: eager steps, the capture in the last untimed one, then replays
      // (the batch copied into the graph's input buffer each step, on the device).
      std::unique_ptr<ich::GraphedStep> graphed;
      if (graph)
        graphed = std::make_unique<ich::GraphedStep>(m, *adam, ich::Tensor(), precision, ich::memory_format_of(x),
                                                     int(warmup - 1));
      auto step = [&] {
        const auto t0 = std::chrono::steady_clock::now();
        if (graphed) {
          graphed->run(x, y);
        } else if (eval) {  // inference: running statistics, no graph kept
          ich::NoGradGuard no_grad;
          ich::AutocastGuard autocast(compiled ? ich::DType::Float32 : precision);
          const ich::Tensor logits = m(x);
          (void)logits;
        } else {
          ich::train_step(m, *adam, x, y, ich::Tensor(), precision, sc);
        }
        sync(d);
        return seconds_since(t0);
      };
      for (int64_t i = 0; i < warmup; ++i) step();
      ich::allocator_for(d).reset_peak();  // the steady state's peak (the warm-up's eager steps are done)
      const int64_t held = ich::allocator_for(d).stats().bytes_in_use;
      std::vector<double> t;
      for (int64_t i = 0; i < steps; ++i) t.push_back(step());
      std::sort(t.begin(), t.end());
      const double median = t[t.size() / 2], ips = double(batch) / median;
      // A graph's memory is its private pool's, on top of the allocator's.
      const double peak = double(ich::allocator_for(d).stats().peak_bytes +
                                 (graphed ? graphed->graph()->pool()->stats().peak_bytes : 0)) /
                          double(1 << 30);
      const double tflops = ips * (eval ? 2.0 : 6.0) * double(macs) / 1e12;
      const std::string name =
          std::string(ich::precision_name(precision)) + (channels_last ? "+cl" : "") + (graph ? "+graph" : "") +
          (run_tf32 ? "+tf32" : "") + (eval ? "+eval" : "") +
          (compiled ? std::string("+compiled(") +
                           (m.compiled_inference() ? m.compiled_inference()->kernel_name() : std::string("engine")) + ")"
                     : "");
      const double step_gib = peak - double(held) / double(1 << 30);
      // a compiled row: its kernel's unit peak, the ceiling of its rates
      const std::string kernel = compiled && m.compiled_inference() ? m.compiled_inference()->kernel_name() : "";
      double unit_peak = 0;
      if (!kernel.empty()) {
        unit_peak = unit_peaks[kernel] = unit_peak_gmacs(kernel);
      }
      // (AMX: no unit peak measured, nothing to set the row against)
      const double ceiling = !kernel.empty() ? 2 * unit_peak / 1e3 : ceilings.for_run(precision, run_tf32);
      const std::string share = ceiling > 0 ? std::to_string(int64_t(100 * tflops / ceiling + 0.5)) + "%" : "n/a";
      std::printf("| ich (%s) | %s | %lld | %.1f | %.2f | %.2f | %s | %.2f |\n", d.str().c_str(), name.c_str(),
                  (long long)batch, ips, peak, tflops, share.c_str(), step_gib);
      std::fflush(stdout);
      if (profile && !graph) {  // a replay runs as one launch: no kernel-by-kernel profile
        const std::string cfg = name + ":" + std::to_string(batch);
        config_names.push_back(cfg);
        const int prof_steps = 3;
        ich::profile::take();
        ich::profile::enable(true);
        for (int i = 0; i < prof_steps; ++i) step();
        ich::profile::enable(false);
        const std::map<std::string, int64_t> conv_macs =
            kernel.empty() ? std::map<std::string, int64_t>{}
                           : compiled_conv_macs(layer_rows, precision == ich::DType::Float32 ? "f32" : "bf16");
        for (const auto& e : ich::profile::take()) {
          families[cfg][ich::profile::category(e.kernel)] += 1e3 * e.seconds / prof_steps;
          KernelTime k{e.kernel, e.calls / prof_steps, 1e3 * e.seconds / prof_steps};
          if (conv_macs.count(e.kernel) && k.ms > 0) {
            k.gmacs = double(conv_macs.at(e.kernel)) * double(batch) / (k.ms / 1e3) / 1e9;
            k.peak = unit_peak;
          }
          kernels[cfg].push_back(k);
        }
      }
    }
    if (profile) {
      std::printf("\n## Where a step's time goes (ms per step, profiled: synchronised around every kernel)\n\n");
      std::printf("| kernel family |");
      for (const auto& c : config_names) std::printf(" %s |", c.c_str());
      std::printf("\n|---|");
      for (size_t i = 0; i < config_names.size(); ++i) std::printf("---|");
      std::printf("\n");
      for (const char* f : {"conv", "batchnorm", "elementwise", "pooling", "linear", "loss", "optimizer", "cast"}) {
        std::printf("| %s |", f);
        for (const auto& c : config_names) {
          double total = 0;
          for (const auto& [k, v] : families[c]) total += v;
          const double v = families[c].count(f) ? families[c][f] : 0.0;
          std::printf(" %.1f (%.0f%%) |", v, total > 0 ? 100 * v / total : 0.0);
        }
        std::printf("\n");
      }
      for (const auto& [k, v] : unit_peaks)
        std::printf("\n%s's unit peak here (%d thread%s, 12 chains a thread, registers only): %s\n", k.c_str(),
                    omp_get_max_threads(), omp_get_max_threads() == 1 ? "" : "s", v > 0 ? (std::to_string(int64_t(v + 0.5)) + " GMAC/s").c_str()
                                         : "not measured (AMX tiles, or a scalar kernel)");
      for (const auto& c : config_names) {  // the kernels that make up the families
        std::printf("\n### %s: the 20 largest kernels\n\n| kernel | calls per step | ms per step | GMAC/s | of the "
                    "unit's peak |\n|---|---|---|---|---|\n",
                    c.c_str());
        for (size_t i = 0; i < std::min<size_t>(20, kernels[c].size()); ++i) {
          const KernelTime& k = kernels[c][i];
          std::printf("| %s | %lld | %.1f |", k.kernel.c_str(), (long long)k.calls, k.ms);
          if (k.gmacs > 0) std::printf(" %.0f |", k.gmacs);
          else std::printf(" |");
          if (k.gmacs > 0 && k.peak > 0) std::printf(" %.0f%% |\n", 100 * k.gmacs / k.peak);
          else std::printf(" |\n");
        }
      }
    }
    return 0;
  });
}
