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
