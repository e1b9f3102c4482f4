// export.h: trained models leave ich, as ONNX (for ONNX Runtime, OpenVINO,
// TensorRT, Triton) and as PyTorch state_dicts (to go on in PyTorch).
//
// The slice model (an ich-train checkpoint) as ONNX, opset 17:
//   input   "input"          float32 (batch, 3(2K+1), height, width): the
//                            windowed slice as the model-input contract
//                            makes it (infer/preprocess.h): each window's
//                            uint8 image v as (v/255 - mean_c) / std_c with
//                            ImageNet's mean (0.485, 0.456, 0.406) and std
//                            (0.229, 0.224, 0.225) of channel c % 3, resized
//                            to the checkpoint's size; K neighbours a side
//                            for a --context model
//   outputs "logits"         float32 (batch, 6)
//           "probabilities"  sigmoid(logits / T), T the checkpoint's
//                            temperatures (1 when not calibrated): what
//                            ich-predict reports
// Conv, BatchNormalization (running statistics, eps 1e-5), Relu, MaxPool,
// Add, GlobalAveragePool, Flatten, Gemm: torchvision's graph, not fused (the
// runtimes fold batch norm themselves). Batch, height and width are free.
//
// The series model (an ich-train-seq checkpoint) as ONNX:
//   inputs  "series"   float32 (batch, slices, 3F+2), seq/seq_data.h's
//                      features of each slice (standardised with the mean
//                      and std in the metadata)
//           "lengths"  int32 (batch): slices of each series (padding after)
//   outputs "logits"   float32 (batch, slices, 6); "probabilities" sigmoid
// one LSTM or GRU node per layer (bidirectional; gates reordered from
// PyTorch's i,f,g,o / r,z,n to ONNX's i,o,f,c / z,r,h; GRU with
// linear_before_reset=1, which is PyTorch's GRU), MatMul + Add for the head.
//
// Metadata (ModelProto.metadata_props) say the rest: architecture, windows,
// size, context, the normalisation, label order, temperatures, the weights
// fingerprint, for the series model its views, hidden size, layers and
// feature standardisation.
//
// The .pth: the model's state_dict as torch.save writes it
// (weights/torch_writer.h): torchvision's resnext101_32x8d(num_classes=6)
// loads a resnext101_32x8d checkpoint with load_state_dict unchanged (a
// --context model has conv1 of 3(2K+1) input channels); the series model's
// as a module with `rnn = nn.LSTM(3F+2, H, L, bidirectional=True,
// batch_first=True)` (or GRU) and `fc = nn.Linear(2H, 6)` has them.
#pragma once
#include <string>

#include "seq/seq_model.h"
#include "train/checkpoint.h"
#include "weights/onnx.h"

namespace ich {

onnx::Model slice_model_onnx(const ResNeXt& model, const CheckpointMeta& meta);
onnx::Model series_model_onnx(const SeqModel& model, const FeatureNorm& norm, const SeqCheckpointMeta& meta);

// What ich-export does with one checkpoint (an ich-train or an ich-train-seq
// one, told apart by meta/kind): each output path that is not empty is
// written atomically. Returns a line saying what was written.
std::string export_checkpoint(const std::string& checkpoint, const std::string& onnx_path,
                              const std::string& pth_path);

}  // namespace ich
