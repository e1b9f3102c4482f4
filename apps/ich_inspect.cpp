// ich-inspect: the layer table of a model (output shape, parameters,
// multiply-adds per layer or per stage) and its totals.
#include <cstdio>

#include <cmath>
#include <map>

#include "apps/app_main.h"
#include "data/augment.h"
#include "data/labels.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "infer/gradcam.h"
#include "io/npy.h"
#include "io/png.h"
#include "layers/resnext.h"
#include "layers/summary.h"
#include "train/checkpoint.h"
#ifdef ICH_INSPECT_DICOM
#include "infer/preprocess.h"
#endif

namespace {

// Per-layer activation statistics of one forward pass (leaf modules).
void activation_stats(ich::ResNeXt& model, const ich::Tensor& x) {
  std::map<const ich::Module*, std::string> names;
  for (auto& [n, m] : model.named_modules()) names[m] = n;
  model.eval();
  ich::NoGradGuard ng;
  std::printf("%-34s %-12s %-20s %10s %10s %10s %10s %8s\n", "layer", "type", "output", "mean", "std", "min", "max",
              "zeros");
  ich::ForwardObserverScope watch([&](ich::Module& m, const ich::Tensor&, const ich::Tensor& y) {
    if (!m.named_children().empty()) return;
    const std::vector<double> v = y.to_vector();
    double s = 0, s2 = 0, mn = INFINITY, mx = -INFINITY;
    int64_t zeros = 0;
    for (double e : v) s += e, s2 += e * e, mn = std::min(mn, e), mx = std::max(mx, e), zeros += e == 0;
    const double n = double(v.size()), mean = s / n;
    std::printf("%-34s %-12s %-20s %10.4f %10.4f %10.4f %10.4f %8.3f\n", names[&m].c_str(), m.type_name().c_str(),
                ich::shape_str(y.shape()).c_str(), mean, std::sqrt(std::max(0.0, s2 / n - mean * mean)), mn, mx,
                double(zeros) / n);
  });
  model(x);
}

// Gradient norm of every parameter after one backward pass of sum(logits).
void gradient_norms(ich::ResNeXt& model, const ich::Tensor& x) {
  model.train();
  ich::sum(model(x)).backward();
  std::printf("%-40s %-20s %14s %14s\n", "parameter", "shape", "|grad|", "|weight|");
  for (auto& [n, p] : model.named_parameters()) {
    double g = 0, w = 0;
    for (double e : p.grad().to_vector()) g += e * e;
    for (double e : p.to_vector()) w += e * e;
    std::printf("%-40s %-20s %14.6g %14.6g\n", n.c_str(), ich::shape_str(p.shape()).c_str(), std::sqrt(g), std::sqrt(w));
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Print every layer of a model with its output shape, parameters and multiply-adds"};
  std::string arch = "resnext101_32x8d", size = "224x224", weights;
  int64_t classes = 1000;
  bool stages = false, grad = false;
  std::string input, checkpoint, image, klass = "any", cam;
  app.add_option("--arch", arch, "resnext101_32x8d, resnext50_32x4d, resnet50, resnext_mini")->capture_default_str();
  app.add_option("--size", size, "input height x width")->capture_default_str();
  app.add_option("--classes", classes, "outputs of the head (ignored with --weights)")->capture_default_str();
  app.add_option("--weights", weights, "ich weights file to load (its head size is used)");
  app.add_flag("--stages", stages, "one row per stage (conv1, layer1, ...) instead of per layer");
  app.add_option("--input", input, "float32 .npy (N,3,H,W): print per-layer activation statistics instead");
  app.add_flag("--grad", grad, "with --input: gradient norm of every parameter after one backward of sum(logits)");
  app.add_option("--checkpoint", checkpoint, "an ich-train checkpoint (for --cam; its architecture and size are used)");
  app.add_option("--image", image, "with --cam: a windowed slice (.npy from ich-window) or a DICOM file");
  app.add_option("--class", klass, "with --cam: epidural, intraparenchymal, intraventricular, subarachnoid, subdural, any")
      ->capture_default_str();
  app.add_option("--cam", cam, "write the Grad-CAM heatmap of --class on --image over the brain window, as PNG");
  return ich::run_app("ich-inspect", app, argc, argv, [&] {
    int64_t h = 0, w = 0;
    ICH_CHECK(std::sscanf(size.c_str(), "%ldx%ld", &h, &w) == 2 && h > 0 && w > 0, "--size '", size,
              "': expected HxW, e.g. 224x224");
    if (!cam.empty()) {
      ICH_CHECK(!checkpoint.empty() && !image.empty(), "--cam needs --checkpoint and --image");
      int k = -1;
      for (int i = 0; i < 6; ++i)
        if (klass == ich::kSubtypes[size_t(i)]) k = i;
      ICH_CHECK(k >= 0, "--class '", klass, "': expected one of the five subtypes or any");
      ich::LoadedCheckpoint c = ich::load_checkpoint(checkpoint);
      ich::Tensor img;
      if (image.size() > 4 && image.compare(image.size() - 4, 4, ".npy") == 0) {
        img = ich::read_npy(image);
      } else {
#ifdef ICH_INSPECT_DICOM
        // the first frame, windowed as ich-predict and ich-serve window it (any modality: this is a look)
        const ich::WindowedImage wi = ich::window_frame(image, ich::windowing_for(c.meta, true));
        img = ich::Tensor::from_data(wi.pixels.data(), {wi.h, wi.w, wi.channels});
#else
        throw ich::Error("--image " + image + ": this build reads DICOM only with DCMTK; give a .npy from ich-window");
#endif
      }
      ICH_CHECK(img.dtype() == ich::DType::UInt8 && img.dim() == 3, "--image ", image, " must be uint8 (H,W,C)");
      const ich::SliceCam sc = ich::slice_cam(*c.model, ich::Device::cpu(), img.data<uint8_t>(), int(img.size(0)),
                                              int(img.size(1)), int(img.size(2)), int(c.meta.size), k);
      const ich::CamResult& r = sc.cam;
      ich::write_png(cam, sc.rgb, sc.size, sc.size, 3);
      std::printf("%s: p(%s) = %.4f; Grad-CAM of the %dx%d feature map -> %s\n", image.c_str(), klass.c_str(),
                  r.probability, r.map_h, r.map_w, cam.c_str());
      return 0;
    }
    std::shared_ptr<ich::ResNeXt> model;
    if (!weights.empty()) {
      model = ich::load_resnext(arch, weights);
    } else {
      ich::Generator gen(0);
      model = std::make_shared<ich::ResNeXt>(ich::resnext_preset(arch, classes), gen);
    }
    if (!input.empty()) {
      const ich::Tensor x = ich::read_npy(input);
      ICH_CHECK(x.dtype() == ich::DType::Float32 && x.dim() == 4 && x.size(1) == 3, "--input ", input,
                " must be float32 (N,3,H,W)");
      if (grad)
        gradient_norms(*model, x);
      else
        activation_stats(*model, x);
      return 0;
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
