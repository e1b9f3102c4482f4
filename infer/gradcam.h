// gradcam.h: where the model looks. Grad-CAM (Selvaraju et al., 2017) on the
// last feature map of a ResNeXt: the gradient of one class's logit with
// respect to each channel of the layer4 output, averaged over the map, weighs
// that channel; the weighted sum, through a ReLU, is the heatmap. It is
// computed exactly by running the head on the feature map as a leaf tensor.
#pragma once
#include <cstdint>
#include <vector>

#include "layers/resnext.h"

namespace ich {

struct CamResult {
  std::vector<float> heat;  // size x size, bilinearly upsampled, 0..1
  int map_h = 0, map_w = 0; // the feature map's size (size / 32)
  double logit = 0, probability = 0;
};

// x: (1, C, size, size), already normalised as for training; klass 0..5.
CamResult grad_cam(ResNeXt& model, const Tensor& x, int klass);

// The brain-window channel of a normalised input as gray, with the heatmap
// blended on top (blue -> red), as RGB bytes (size x size x 3).
// `channel`: the input channel drawn in gray (the brain window); with a
// --context model's input, the centre slice's, K x the windows per slice.
std::vector<uint8_t> cam_overlay(const Tensor& x, const std::vector<float>& heat, int64_t channel = 0);

// One windowed slice's Grad-CAM as ich-inspect --cam draws it and ich-serve's
// key images show it: img (h x w x c bytes: window_frame()'s, or an
// ich-window .npy) made into the model's input as prediction makes it
// (slice_input(), size x size), the heatmap of class klass (0..5) computed
// on `device` (where the model is), blended over the brain window.
struct SliceCam {
  CamResult cam;
  std::vector<uint8_t> rgb;  // size x size x 3
  int size = 0;
};
SliceCam slice_cam(ResNeXt& model, Device device, const uint8_t* img, int h, int w, int c, int size, int klass);

}  // namespace ich
