// ich-forward: runs a model on an .npy batch and writes its logits as .npy.
// The inspection entry point that tests and users share.
#include <cstdio>

#include "apps/app_main.h"
#include "engine/autograd.h"
#include "engine/device_select.h"
#include "io/npy.h"
#include "layers/resnext.h"

int main(int argc, char** argv) {
  CLI::App app{
      "Run a ResNet/ResNeXt on a float32 .npy batch (N,3,H,W) and write the logits (N,K) as .npy.\n"
      "K is taken from the weights file. Exit codes: 0 written, 1 failed (nothing written), 2 bad flags."};
  std::string arch, weights, input, output, mode = "eval", device = "auto";
  app.add_option("--arch", arch, "architecture: resnext101_32x8d, resnext50_32x4d, resnet50, resnext_mini")
      ->required();
  app.add_option("--weights", weights, "ich weights file (see ich-convert)")->required();
  app.add_option("--input", input, "input batch, float32 .npy of shape (N,3,H,W)")->required();
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
    ICH_CHECK(x.dtype() == ich::DType::Float32 && x.dim() == 4 && x.size(1) == 3, "input ", input,
              " must be float32 (N,3,H,W), got ", x.str());
    auto model = ich::load_resnext(arch, weights);
    model->train(mode == "train");
    model->to(dev);
    ich::NoGradGuard no_grad;
    const ich::Tensor y = (*model)(x.to(dev));
    ich::write_npy(output, y);
    std::printf("%s -> %s: logits %s\n", input.c_str(), output.c_str(), ich::shape_str(y.shape()).c_str());
    return 0;
  });
}
