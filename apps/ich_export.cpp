// ich-export: a trained model out of ich, as ONNX and/or a PyTorch
// state_dict (infer/export.h says what each holds).
#include <cstdio>

#include "apps/app_main.h"
#include "infer/export.h"

int main(int argc, char** argv) {
  CLI::App app{
      "Write an ich-train checkpoint (the slice model) or an ich-train-seq checkpoint (the series model) as ONNX\n"
      "(opset 17, batch and image size free; the input's windowing and normalisation in the model's metadata and\n"
      "docs/export.md) for ONNX Runtime, OpenVINO, TensorRT or Triton, and/or as a PyTorch state_dict (.pth) that\n"
      "torchvision's resnext101_32x8d(num_classes=6) loads unchanged. Outputs are written atomically.\n"
      "Exit codes: 0 written, 1 failed (nothing half-written), 2 bad flags."};
  std::string checkpoint, onnx_path, pth_path;
  app.add_option("--checkpoint", checkpoint, "checkpoint from ich-train, ich-calibrate or ich-train-seq")
      ->required();
  app.add_option("--onnx", onnx_path, "ONNX model to write");
  app.add_option("--pth", pth_path, "PyTorch state_dict to write (torch.load reads it)");
  return ich::run_app("ich-export", app, argc, argv, [&] {
    std::printf("%s\n", ich::export_checkpoint(checkpoint, onnx_path, pth_path).c_str());
    return 0;
  });
}
