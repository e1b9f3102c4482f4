// augment.h: turning a windowed slice (H x W x C uint8) into a network input
// (C x S x S float), with the seed's augmentations, seeded.
//
// One affine warp does resize, shift-scale-rotate and the horizontal flip in
// a single bilinear pass (sampling once, not four times):
//   resize to S x S (the seed: 200 x 200)
//   horizontal flip with probability 0.5
//   shift up to 6.25% of the size, scale 0.9..1.1, rotate -45..45 degrees,
//     with probability 0.5 (albumentations' ShiftScaleRotate defaults);
//     outside the image is 0 (air in every window)
//   brightness +-0.2 and contrast 0.8..1.2 with probability 0.5
//     (RandomBrightnessContrast): v' = v * contrast + brightness, on [0, 1]
// then normalisation: (v/255 - mean) / std per channel with ImageNet's
// mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225), which is what
// the pretrained WSL/ImageNet weights saw during their own training. (The
// seed used ToTensor only, v/255, which the pretrained BatchNorm statistics
// do not expect.)
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/random.h"
#include "engine/tensor.h"

namespace ich {

struct AugmentOptions {
  int size = 200;
  bool augment = true;    // false: resize and normalise only (validation, prediction)
  bool normalize = true;  // ImageNet mean/std
  // With augment: also transpose (rows for columns) half of the time, so
  // that all eight flips and quarter turns of a slice are seen (the views
  // of --tta flip+transpose); off by default: the seed's augmentation, and
  // no extra random draw, so earlier runs replay bit for bit.
  bool transpose = false;
};

// img: h x w x c bytes -> out: c x size x size floats (written at `out`).
// The random choices come from gen, so a seed reproduces them.
void augment_slice(const uint8_t* img, int h, int w, int c, const AugmentOptions& o, Generator& gen, float* out);

// Validation and prediction's half of the preprocessing contract: a slice as
// the model sees it outside training (resized to size x size, normalised, no
// random change). eval_augment() gives the options loaders take for it;
// slice_input() makes one slice's input (c x size x size floats at `out`).
// Every place that applies a model goes through these two (ich-predict,
// ich-serve, ich-inspect, ich-embed, ich-eval, the trainer's validation),
// so a model sees the bytes it was validated on.
AugmentOptions eval_augment(int size);
void slice_input(const uint8_t* img, int h, int w, int c, int size, float* out);

// The same warp and colour change (same random choices for the same gen),
// stopped before normalisation and rounded to bytes: round(255 v). For a GPU,
// whose batches travel as bytes (a quarter of float32's) and are normalised
// there (normalize_u8, engine/kernels.h).
void augment_slice_u8(const uint8_t* img, int h, int w, int c, const AugmentOptions& o, Generator& gen,
                      uint8_t* out);

// ImageNet's mean and standard deviation of channel k % 3.
float imagenet_mean(int k);
float imagenet_std(int k);

// Test-time augmentation: the views of a batch that a model sees and whose
// probabilities are averaged (infer/ensemble.h): none (the image), flip
// (and its mirror: columns reversed), flip+transpose (and the transpose:
// rows and columns swapped), the three views of the RSNA 2019 2nd place.
// x: (B, C, S, S) on the host, float32 or uint8 (byte batches).
enum class Tta { None, Flip, FlipTranspose };
Tta parse_tta(const std::string& s);  // none, flip, flip+transpose
const char* tta_name(Tta t);
std::vector<Tensor> tta_views(const Tensor& x, Tta t);

}  // namespace ich
