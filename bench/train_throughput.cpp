// train_throughput: training speed of our engine on ResNeXt, the number to
// race against PyTorch (shared/bench/torch_resnext_baseline.py measures the
// same configuration: resnext101_32x8d, fc -> 6 outputs, BCE with logits,
// Adam lr 2e-5, square inputs, random data resident on the device).
// Prints one table row per batch size: images per second (median of the
// timed steps) and peak device memory (our caching allocator's peak).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <sstream>

#include "apps/app_main.h"
#include "engine/allocator.h"
#include "engine/device_select.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "layers/resnext.h"
#ifdef ICH_WITH_CUDA
#include "engine/cuda/runtime.h"
#endif

namespace {

double step_seconds(ich::ResNeXt& m, ich::Adam& opt, const ich::Tensor& x, const ich::Tensor& y, ich::Device d) {
  const auto t0 = std::chrono::steady_clock::now();
  opt.zero_grad();
  ich::Tensor loss = ich::bce_with_logits(m(x), y);
  loss.backward();
  opt.step();
#ifdef ICH_WITH_CUDA
  if (d.is_cuda()) ich::cuda::synchronize(d.index);
#endif
  (void)d;
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Training throughput of ich on a ResNeXt (images/s, peak memory), one row per batch size"};
  std::string arch = "resnext101_32x8d", batches = "8,32", device = "auto";
  int64_t size = 200, steps = 20, warmup = 5;
  bool tf32 = false;
  app.add_option("--arch", arch, "architecture")->capture_default_str();
  app.add_option("--size", size, "square input size")->capture_default_str();
  app.add_option("--batches", batches, "comma-separated batch sizes")->capture_default_str();
  app.add_option("--steps", steps, "timed steps per batch size")->capture_default_str();
  app.add_option("--warmup", warmup, "untimed steps first (algorithm search, allocator warm-up)")->capture_default_str();
  app.add_option("--device", device, "cpu, cuda or auto")->capture_default_str();
  app.add_flag("--tf32", tf32, "allow TF32 tensor cores for float32 convolutions and GEMMs");
  return ich::run_app("ich-bench-train", app, argc, argv, [&] {
    const ich::Device d = ich::pick_device(device);
#ifdef ICH_WITH_CUDA
    if (d.is_cuda()) ich::cuda::set_allow_tf32(tf32);
#endif
    std::printf("| engine | precision | batch | images/s | peak GiB |\n|---|---|---|---|---|\n");
    std::stringstream ss(batches);
    std::string b;
    while (std::getline(ss, b, ',')) {
      const int64_t batch = std::stoll(b);
      ich::Generator gen(0);
      ich::ResNeXt m(ich::resnext_preset(arch, 1000), gen);
      m.replace_head(6, gen);
      m.to(d);
      m.train();
      ich::Adam opt(m.parameters(), ich::Adam::Options{2e-5});
      const ich::Tensor x = ich::Tensor::randn({batch, 3, size, size}, gen).to(d);
      const ich::Tensor y = ich::Tensor::uniform({batch, 6}, 0, 1, gen).to(d);
      ich::allocator_for(d).reset_peak();
      for (int64_t i = 0; i < warmup; ++i) step_seconds(m, opt, x, y, d);
      std::vector<double> t;
      for (int64_t i = 0; i < steps; ++i) t.push_back(step_seconds(m, opt, x, y, d));
      std::sort(t.begin(), t.end());
      const double median = t[t.size() / 2];
      const double peak = double(ich::allocator_for(d).stats().peak_bytes) / double(1 << 30);
      std::printf("| ich (%s) | fp32%s | %lld | %.1f | %.2f |\n", d.str().c_str(), tf32 ? " (tf32)" : "",
                  (long long)batch, double(batch) / median, peak);
      std::fflush(stdout);
    }
    return 0;
  });
}
