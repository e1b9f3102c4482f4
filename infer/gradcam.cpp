#include "infer/gradcam.h"

#include <algorithm>
#include <cmath>

#include "data/augment.h"
#include "dicom/window.h"
#include "engine/autograd.h"
#include "engine/ops.h"

namespace ich {

CamResult grad_cam(ResNeXt& model, const Tensor& x, int klass) {
  ICH_CHECK(x.dim() == 4 && x.size(0) == 1, "grad_cam: one image (1,C,H,W), got ", x.str());
  ICH_CHECK(klass >= 0 && klass < model.config().num_classes, "grad_cam: class ", klass, " of ",
            model.config().num_classes);
  const bool was_training = model.is_training();
  model.eval();
  Tensor f;
  {
    NoGradGuard ng;
    f = model.features(x);
  }
  Tensor leaf = f.detach().contiguous().set_requires_grad(true);
  const Tensor logits = model.head(leaf);
  const int64_t K = logits.size(1);
  std::vector<double> pick(size_t(K), 0.0);
  pick[size_t(klass)] = 1.0;
  sum(mul(logits, Tensor::from_vector(pick, {1, K}, logits.dtype()).to(logits.device()))).backward();
  model.train(was_training);
  const std::vector<double> fv = leaf.to_vector(), gv = leaf.grad().to_vector();
  const int64_t C = f.size(1), H = f.size(2), W = f.size(3);
  std::vector<float> cam(size_t(H * W), 0.f);
  for (int64_t c = 0; c < C; ++c) {
    double w = 0;
    for (int64_t i = 0; i < H * W; ++i) w += gv[size_t(c * H * W + i)];
    w /= double(H * W);
    for (int64_t i = 0; i < H * W; ++i) cam[size_t(i)] += float(w * fv[size_t(c * H * W + i)]);
  }
  float mx = 0;
  for (float& v : cam) mx = std::max(mx, v = std::max(v, 0.f));
  if (mx > 0)
    for (float& v : cam) v /= mx;
  CamResult r;
  r.map_h = int(H);
  r.map_w = int(W);
  r.heat = resize_bilinear(cam, int(H), int(W), int(x.size(2)), int(x.size(3)));
  r.logit = logits.to_vector()[size_t(klass)];
  r.probability = 1 / (1 + std::exp(-r.logit));
  return r;
}

SliceCam slice_cam(ResNeXt& model, Device device, const uint8_t* img, int h, int w, int c, int size, int klass) {
  Tensor x = Tensor::empty({1, c, size, size});
  slice_input(img, h, w, c, size, x.data<float>());
  SliceCam r;
  r.cam = grad_cam(model, x.to(device), klass);
  r.rgb = cam_overlay(x, r.cam.heat);
  r.size = size;
  return r;
}

std::vector<uint8_t> cam_overlay(const Tensor& x, const std::vector<float>& heat, int64_t channel) {
  const int64_t S = x.size(2), W = x.size(3);
  ICH_CHECK(channel >= 0 && channel < x.size(1), "cam_overlay: channel ", channel, " of ", x.str());
  const std::vector<double> v = x.to_vector();
  const double mean = imagenet_mean(int(channel)), sd = imagenet_std(int(channel));
  const size_t at = size_t(channel * S * W);
  std::vector<uint8_t> out(size_t(S * W * 3));
  for (int64_t i = 0; i < S * W; ++i) {
    // undo the ImageNet normalisation of the channel (the brain window)
    const double gray = std::clamp((v[at + size_t(i)] * sd + mean) * 255, 0.0, 255.0);
    const double h = heat[size_t(i)], a = 0.5 * h;
    const double r = std::clamp(255 * (1.5 * h - 0.25), 0.0, 255.0), g = std::clamp(255 * (1 - std::fabs(2 * h - 1) * 1.5), 0.0, 255.0),
                 b = std::clamp(255 * (1.25 - 1.5 * h), 0.0, 255.0);
    out[size_t(i) * 3 + 0] = uint8_t(gray * (1 - a) + r * a);
    out[size_t(i) * 3 + 1] = uint8_t(gray * (1 - a) + g * a);
    out[size_t(i) * 3 + 2] = uint8_t(gray * (1 - a) + b * a);
  }
  return out;
}

}  // namespace ich
