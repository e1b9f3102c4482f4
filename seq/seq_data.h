// seq_data.h: series of slice embeddings (an ich-embed folder), with their
// labels, as the sequence model reads them.
//
// The sequence model's input at slice t of a series (the 2nd place of RSNA
// 2019 fed [emb, emb - prev, emb - next]; the 1st place used the gaps):
//   [ e_t, e_t - e_{t-1}, e_t - e_{t+1}, gap_prev / 10 mm, gap_next / 10 mm ]
// with e the embedding standardised per feature (the training series' mean
// and standard deviation, kept in the sequence checkpoint), and a missing
// neighbour (the ends of a series) taken as e_t itself.
#pragma once
#include <array>
#include <string>
#include <vector>

#include "data/split.h"
#include "engine/tensor.h"

namespace ich {

struct SeqSeries {
  std::string patient_id, study_uid, series_uid;
  std::vector<std::string> ids;                 // in order along the normal
  std::vector<int64_t> rows;                    // rows of the embeddings
  std::vector<std::array<double, 2>> gaps;      // mm, to the previous and next slice
  std::vector<std::array<int, 6>> y;            // labels (all zero when unlabelled)
};

struct SeqData {
  Tensor embeddings;  // (N, F) float32, CPU
  std::vector<SeqSeries> series;
  int64_t features() const { return embeddings.size(1); }
  int64_t slices() const;
};

// Reads an ich-embed folder. With labels, keeps the slices the split lists
// (every one of them must have an embedding: the error names the first that
// has none) and takes their labels; without, every slice, unlabelled.
SeqData read_seq_data(const std::string& dir, const std::vector<SplitRow>* labels);

// Per-feature mean and standard deviation over every slice of data (the
// standard deviation at least 1e-6).
struct FeatureNorm {
  std::vector<float> mean, inv_std;
};
FeatureNorm feature_norm(const SeqData& data);

// The model input of a batch of series: (B, T, 3F + 2) float32 with T the
// longest series, zero past each series' length; lengths receives them.
Tensor series_input(const SeqData& data, const FeatureNorm& norm, const std::vector<const SeqSeries*>& batch,
                    std::vector<int64_t>* lengths);
int64_t series_input_size(int64_t features);

}  // namespace ich
