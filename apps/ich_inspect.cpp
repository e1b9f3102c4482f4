// ich-inspect: the layer table of a model (output shape, parameters,
// multiply-adds per layer or per stage) and its totals.
#include <cstdio>

#include "apps/app_main.h"
#include "layers/resnext.h"
#include "layers/summary.h"

int main(int argc, char** argv) {
  CLI::App app{"Print every layer of a model with its output shape, parameters and multiply-adds"};
  std::string arch = "resnext101_32x8d", size = "224x224", weights;
  int64_t classes = 1000;
  bool stages = false;
  app.add_option("--arch", arch, "resnext101_32x8d, resnext50_32x4d, resnet50, resnext_mini")->capture_default_str();
  app.add_option("--size", size, "input height x width")->capture_default_str();
  app.add_option("--classes", classes, "outputs of the head (ignored with --weights)")->capture_default_str();
  app.add_option("--weights", weights, "ich weights file to load (its head size is used)");
  app.add_flag("--stages", stages, "one row per stage (conv1, layer1, ...) instead of per layer");
  return ich::run_app("ich-inspect", app, argc, argv, [&] {
    int64_t h = 0, w = 0;
    ICH_CHECK(std::sscanf(size.c_str(), "%ldx%ld", &h, &w) == 2 && h > 0 && w > 0, "--size '", size,
              "': expected HxW, e.g. 224x224");
    std::shared_ptr<ich::ResNeXt> model;
    if (!weights.empty()) {
      model = ich::load_resnext(arch, weights);
    } else {
      ich::Generator gen(0);
      model = std::make_shared<ich::ResNeXt>(ich::resnext_preset(arch, classes), gen);
    }
    auto rows = ich::summarize(*model, {1, 3, h, w});
    if (stages) rows = ich::group_by_stage(rows);
    std::printf("%-34s %-18s %-20s %14s %16s\n", "layer", "type", "output", "parameters", "multiply-adds");
    int64_t params = 0, macs = 0;
    for (const auto& r : rows) {
      std::printf("%-34s %-18s %-20s %14lld %16lld\n", r.name.c_str(), r.type.c_str(), ich::shape_str(r.output).c_str(),
                  (long long)r.params, (long long)r.macs);
      params += r.params;
      macs += r.macs;
    }
    std::printf("total: %lld parameters, %lld multiply-adds (%.2f G) for a %lldx%lld input\n", (long long)params,
                (long long)macs, double(macs) / 1e9, (long long)h, (long long)w);
    return 0;
  });
}
