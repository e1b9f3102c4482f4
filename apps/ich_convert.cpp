// ich-convert: a PyTorch checkpoint (.pth, zip or legacy serialisation) to
// the flat weights format (weights/FORMAT.md), in C++, without Python.
#include <cstdio>

#include "apps/app_main.h"
#include "layers/resnext.h"
#include "weights/torch_checkpoint.h"

int main(int argc, char** argv) {
  CLI::App app{
      "Convert a PyTorch state_dict checkpoint (.pth; zip or legacy format) into an ich weights file.\n"
      "Exit codes: 0 converted, 1 the input could not be read or checked (nothing written), 2 bad flags."};
  std::string input, output, arch;
  app.add_option("--input", input, "PyTorch checkpoint to read")->required();
  app.add_option("--output", output, "ich weights file to write (written atomically)")->required();
  app.add_option("--arch", arch,
                 "also check every name and shape against this architecture "
                 "(resnext101_32x8d, resnext50_32x4d, resnet50, resnext_mini); default: no check");
  return ich::run_app("ich-convert", app, argc, argv, [&] {
    const ich::TorchCheckpoint ck = ich::read_torch_checkpoint(input);
    int64_t values = 0;
    ich::NamedShapes shapes;
    for (const auto& [n, t] : ck.tensors) {
      values += t.numel();
      shapes.emplace_back(n, t.shape());
    }
    if (!arch.empty()) ich::check_resnext_shapes(arch, shapes, "checkpoint " + input);
    ich::write_weights(output, ck.tensors);
    std::printf("%s: %s checkpoint, %zu tensors, %lld values -> %s\n", input.c_str(), ck.format.c_str(),
                ck.tensors.size(), (long long)values, output.c_str());
    return 0;
  });
}
