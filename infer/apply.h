// apply.h: both stages on a set of slices: the per-slice CNN's
// probabilities, and the sequence model's over each series (ich-eval
// --sequence; ich-predict --sequence uses the same pieces on DICOM files),
// and the study-level summary ich-predict writes (studies.csv).
#pragma once
#include <array>
#include <functional>
#include <string>
#include <vector>

#include "seq/embed.h"
#include "seq/seq_model.h"
#include "train/checkpoint.h"

namespace ich {

// Series data in memory: features (N, F) with row i for slice i of `order`'s
// sources, the ordered slices, and their labels (by source index; empty:
// unlabelled).
SeqData seq_data_from(const Tensor& features, const std::vector<OrderedSlice>& order,
                      const std::vector<std::array<int, 6>>& labels);

// The sequence model's probabilities for every source slice (index = source)
// of `order`, given features row-aligned with the sources.
std::vector<std::array<double, 6>> predict_with_context(const LoadedSeqCheckpoint& seq, const Tensor& features,
                                                        const std::vector<OrderedSlice>& order, Device device);

// Both stages as pipelines: each slice model of an ensemble (its members,
// infer/ensemble.h) with the series models trained on its embeddings (as
// the 2nd place of RSNA 2019 averaged one CNN and its sequence models per
// fold). A series model is matched to its slice model by the fingerprint
// ich-embed recorded (meta/cnn, train/checkpoint.h weights_fingerprint), to
// every member with those weights; an older one without it goes with a lone
// slice model only. Every member
// needs one, and a member's series models must share their views.
struct SeqPipelines {
  std::vector<std::vector<size_t>> of_member;  // indices into the series models, per member
  std::vector<Tta> views;                      // per member: the views its embeddings are averaged over
  std::vector<int64_t> features;               // per member: its embedding's width
};
SeqPipelines match_pipelines(const std::vector<LoadedCheckpoint>& members, const std::vector<std::string>& member_paths,
                             const std::vector<LoadedSeqCheckpoint>& seqs, const std::vector<std::string>& seq_paths);

// Rows of (N, F_k) tensors joined (N, sum F_k) on the host, in order: the
// members' embeddings side by side.
Tensor side_by_side(const std::vector<Tensor>& parts);

// The pipelines' probabilities for every source slice of `order`: a
// member's series models averaged, then the members averaged (in
// probability, as infer/ensemble.h says why). `features` holds the members'
// embeddings side by side (N, sum of the widths), row i for source i.
std::vector<std::array<double, 6>> pipeline_probs(const SeqPipelines& p, const std::vector<LoadedSeqCheckpoint>& seqs,
                                                  const Tensor& features, const std::vector<OrderedSlice>& order,
                                                  Device device);

struct StudySummary {
  std::string patient_id, study_uid, series_uid;
  int64_t slices = 0;
  std::array<double, 6> p{};            // per label: the highest over the series' slices
  std::vector<std::string> key_slices;  // the slices that carry p_any: the highest, and the others over 0.5 (at most 5), in order
};
// One row per series, in `order`'s series order.
std::vector<StudySummary> summarise_studies(const std::vector<OrderedSlice>& order,
                                            const std::vector<std::array<double, 6>>& probs_by_source);
void write_studies_csv(const std::string& path, const std::vector<StudySummary>& studies);

}  // namespace ich
