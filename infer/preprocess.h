// preprocess.h: the preprocessing contract in one place: how a checkpoint's
// model sees a slice wherever a trained model is applied. torchvision gives
// each model its transforms (weights.transforms()); here they are three
// calls, and every tool goes through them:
//   1. windowing_for(meta): the windows the model was trained on, as
//      channels, for window_file() / window_frame() (dicom/window_slice.h:
//      ich-predict, ich-serve, ich-inspect; ich-window wrote the images
//      ich-train, ich-eval and ich-embed read the same way).
//   2. slice_input() (data/augment.h): one windowed slice to the model's
//      input, resized and normalised, nothing random; loaders outside
//      training take eval_augment() (validation, ich-eval, ich-embed).
//   3. embed_batch() (seq/embed.h): a batch's embedding, mirror-averaged
//      when the series model was trained so (ich-embed, ich-predict).
#pragma once
#include "data/augment.h"
#include "dicom/window.h"
#include "dicom/window_slice.h"
#include "seq/embed.h"
#include "train/checkpoint.h"

namespace ich {

inline SliceWindowing windowing_for(const CheckpointMeta& meta, bool any_modality = false) {
  SliceWindowing how;
  how.windows = parse_windows(meta.windows);
  how.any_modality = any_modality;
  return how;
}

}  // namespace ich
