// ich-forward: runs a model on an .npy batch and writes its logits as .npy.
// The inspection entry point that tests and users share.
#include <cstdio>

#include "apps/app_main.h"
#include "engine/autograd.h"
#include "engine/device_select.h"
#include "io/npy.h"
#include "layers/resnext.h"
#include "seq/seq_model.h"
#include "train/checkpoint.h"

int main(int argc, char** argv) {
  CLI::App app{
      "Run a ResNet/ResNeXt on a float32 .npy batch (N,3,H,W) and write the logits (N,K) as .npy.\n"
      "K is taken from the weights file. With --checkpoint of a series model (ich-train-seq): input (B,T,F) of\n"
      "seq/seq_data.h's features, --lengths, logits (B,T,6).\n"
      "Exit codes: 0 written, 1 failed (nothing written), 2 bad flags."};
  std::string arch, weights, checkpoint, input, output, lengths_path, mode = "eval", device = "auto";
  auto* a = app.add_option("--arch", arch, "architecture: resnext101_32x8d, resnext50_32x4d, resnet50, resnext_mini");
  auto* w = app.add_option("--weights", weights, "ich weights file (see ich-convert)");
  auto* c = app.add_option("--checkpoint", checkpoint,
                           "instead of --arch and --weights: a checkpoint from ich-train (its model, any input "
                           "channels; the raw logits, no temperature) or ich-train-seq");
  app.add_option("--lengths", lengths_path,
                 "series model: int64 .npy (B,), each series' slices (default: all T); logits past it are the "
                 "model's on zero states (0 features)");
  a->needs(w);
  w->needs(a);
  c->excludes(a)->excludes(w);
  app.add_option("--input", input, "input batch, float32 .npy of shape (N,C,H,W), C the model's input channels")
      ->required();
  app.add_option("--output", output, "logits, float32 .npy of shape (N,K)")->required();
  app.add_option("--mode", mode, "eval: BatchNorm uses running statistics; train: batch statistics")
      ->check(CLI::IsMember({"eval", "train"}))
      ->capture_default_str();
  app.add_option("--device", device, "cpu, cuda, or auto (cuda when a GPU and the CUDA backend are present)")
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}))
      ->capture_default_str();
  return ich::run_app("ich-forward", app, argc, argv, [&] {
    const ich::Device dev = ich::pick_device(device);
    ich::Tensor x = ich::read_npy(input);
    ICH_CHECK(!checkpoint.empty() || !weights.empty(), "give --checkpoint, or --arch and --weights");
    if (!checkpoint.empty() && ich::is_seq_checkpoint(checkpoint)) {
      const ich::LoadedSeqCheckpoint c = ich::load_seq_checkpoint(checkpoint);
      ICH_CHECK(x.dtype() == ich::DType::Float32 && x.dim() == 3, "input ", input, " must be float32 (B,T,F), got ",
                x.str());
      std::vector<int64_t> lengths(size_t(x.size(0)), x.size(1));
      if (!lengths_path.empty()) {
        const ich::Tensor l = ich::read_npy(lengths_path);
        ICH_CHECK(l.dim() == 1 && l.size(0) == x.size(0), "lengths ", lengths_path, " must be (", x.size(0),
                  ",), got ", l.str());
        const std::vector<double> v = l.to_vector();
        for (size_t b = 0; b < lengths.size(); ++b) lengths[b] = int64_t(v[b]);
      }
      c.model->train(false);
      c.model->to(dev);
      ich::NoGradGuard no_grad;
      const ich::Tensor y = c.model->forward(x.to(dev), lengths);
      ich::write_npy(output, ich::reshape(y, {x.size(0), x.size(1), y.size(1)}).to(ich::Device::cpu()).contiguous());
      std::printf("%s -> %s: series logits (%lld, %lld, %lld)\n", input.c_str(), output.c_str(),
                  (long long)x.size(0), (long long)x.size(1), (long long)y.size(1));
      return 0;
    }
    auto model = checkpoint.empty() ? ich::load_resnext(arch, weights) : ich::load_checkpoint(checkpoint).model;
    const int64_t channels = model->config().in_channels;
    ICH_CHECK(x.dtype() == ich::DType::Float32 && x.dim() == 4 && x.size(1) == channels, "input ", input,
              " must be float32 (N,", channels, ",H,W), got ", x.str());
    model->train(mode == "train");
    model->to(dev);
    ich::NoGradGuard no_grad;
    const ich::Tensor y = (*model)(x.to(dev));
    ich::write_npy(output, y);
    std::printf("%s -> %s: logits %s\n", input.c_str(), output.c_str(), ich::shape_str(y.shape()).c_str());
    return 0;
  });
}
