// predict.h: what ich-predict does: DICOM files in, the six probabilities of
// every slice out, in the Kaggle submission format (ID_<image>_<subtype>,
// Label), windowed as the checkpoint's training images were.
//
// Files go in fixed chunks of the sorted list: a chunk is windowed in
// parallel, run through the model in batches, and recorded in a journal
// beside the output (io/journal.h) before the next one starts, so that a
// run killed at any moment goes on with `resume` from its last chunk; the
// CSV is written atomically at the end, the same bytes as an uninterrupted
// run's.
//
// A --context checkpoint (ich-train --context K) sees each slice with the K
// slices a side of its series: the headers of every file are read first
// (no pixels), the slices ordered into series, the files chunked in series
// order, and the few neighbours outside a chunk windowed with it; the
// output keeps the sorted order. Shards of such a run take whole series.
//
// With sequence checkpoints (ich-train-seq), each slice's pooled features
// (averaged over the views the series models were trained on; each
// member's side by side) and its geometry
// are kept too: the geometry in the journal, the features in one .npy per
// chunk beside it (OUT.features/, written before the chunk's record). At the
// end the slices are grouped into series, ordered along each series' normal
// (data/series.h), and the sequence models (their mean) give the
// probabilities written; `studies` gets one row per series: the highest
// probability of each label over its slices and the key slices
// (infer/apply.h).
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "infer/apply.h"
#include "infer/ensemble.h"
#include "seq/seq_model.h"
#include "train/checkpoint.h"

namespace ich {

struct PredictOptions {
  std::string checkpoint, input, out, device = "auto";
  int64_t batch = 16;
  bool any_modality = false;  // slices of any modality, not only CT
  bool resume = false;
  int64_t chunk = 2048;       // files between two journal records
  // Sequence checkpoints: none (per slice), one, or several; each goes with
  // the slice model whose embeddings it was trained on (infer/apply.h
  // pipelines), a member's averaged, then the members'.
  std::vector<std::string> sequence;
  std::string studies;                // studies.csv (with sequence; default: beside out)
  // More slice models averaged with `checkpoint`, test-time views
  // (infer/ensemble.h); with `sequence`, the views are the series models'.
  std::vector<std::string> ensemble;
  std::string tta = "none";
  std::string precision = "fp32";  // or bf16: the CPU's bf16 inference (layers/resnext_compiled.h)
  // Across machines: shard k of n takes the files whose index in the sorted
  // list is k mod n (its own out, journal and features); then one merge run
  // (merge = every shard's out, the same other options) joins their journals
  // into the output an unsharded run writes: the shards' rows exactly, in
  // its order, and in sequence mode the series models over every series
  // whole. (An unsharded run's numbers agree to float32 rounding only: a
  // batch of other slices rounds the network's sums otherwise.)
  int shard = 0, shards = 1;
  std::vector<std::string> merge;
};

// One slice's result: what the CSV says of it, and the instance it came
// from (ich-serve refers to it in the SR and windows it again for a key
// image without reading the study a second time).
struct SlicePrediction {
  std::string image_id;  // the CSV's ID_<image> (without the subtype)
  std::string path;      // its file
  std::string sop_class_uid, sop_uid, series_uid;
  int frame = 0;                 // 1-based frame of a multi-frame file; 0 when single-frame
  std::array<std::string, 6> p;  // the six probabilities, as written (kSubtypes' order)
};

struct PredictReport {
  int64_t files = 0, slices = 0, failed = 0, resumed = 0, series = 0;
  std::vector<std::pair<std::string, std::string>> skipped;  // path, reason
  std::vector<SlicePrediction> predictions;                  // every slice written, in its row order
};

// A checkpoint's identity: its size and CRC-32 (journals; ich-serve's SR).
std::string checkpoint_identity(const std::string& path);

// The models of a run, loaded once (ich-serve keeps them between studies):
// the slice model on its device in eval mode, the sequence models, and the
// checkpoints' identities for the journal.
struct PredictModels {
  Device dev = Device::cpu();
  LoadedCheckpoint slice;  // the first member of `ensemble` (the same model)
  Ensemble ensemble;
  std::vector<LoadedSeqCheckpoint> seqs;
  SeqPipelines pipes;  // each member with its series models (infer/apply.h)
  std::string slice_identity;
  std::vector<std::string> seq_identity;
};
PredictModels load_predict_models(const PredictOptions& o);  // o.checkpoint, o.ensemble, o.tta, o.sequence, o.device

PredictReport predict_dicoms(const PredictOptions& o, const std::function<void(int64_t, int64_t)>& progress = nullptr);

// One slice's model input as predict_dicoms makes it for a --context
// checkpoint: its series' 2K+1 slices around it (read from `files`,
// ordered by geometry; the edge repeated) as channels, (1, C(2K+1), S, S)
// on the host. ich-serve's key images take their Grad-CAM of it.
Tensor context_input(const std::vector<std::string>& files, const std::string& image_id, const CheckpointMeta& meta,
                     bool any_modality = false);
// The same with models already loaded from o.checkpoint and o.sequence.
PredictReport predict_dicoms(const PredictOptions& o, PredictModels& models,
                             const std::function<void(int64_t, int64_t)>& progress = nullptr);

}  // namespace ich
