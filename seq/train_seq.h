// train_seq.h: the second stage's training loop (ich-train-seq) and its
// prediction, over series of slice embeddings (seq/seq_data.h).
//
// The loss is the competition's: binary cross-entropy of the six labels,
// "any" weighted 2 and each subtype 1, each slice's weighted mean, averaged
// over the slices of the batch's series (padding masked out with
// select_rows). Adam; series shuffled per epoch by (seed, epoch); each
// epoch ends with the validation series' weighted log loss, RUN/last.ckpt,
// RUN/best.ckpt when that loss is the best so far, and a row of
// RUN/log.csv. --resume continues from RUN/last.ckpt at the next epoch, the
// same numbers as an uninterrupted run. A NaN or infinite loss stops the run
// before it is applied, with one line naming the epoch and batch.
#pragma once
#include <array>
#include <functional>
#include <string>
#include <vector>

#include "engine/device.h"
#include "seq/seq_model.h"

namespace ich {

struct SeqTrainOptions {
  std::string train_csv, valid_csv, embeddings, out;
  std::string cell = "lstm", device = "auto";
  int64_t layers = 2, hidden = 64, epochs = 20, batch = 8;
  double lr = 1e-3;
  double input_dropout = 0.0;  // training only: each input value zeroed with this probability (the rest scaled)
  uint64_t seed = 0;
  bool resume = false;
};

// Returns 0 when done. Throws ich::Error on bad input or a NaN/Inf loss.
int train_sequence(const SeqTrainOptions& o, const std::function<void(const std::string&)>& log = nullptr);

// Probabilities of every slice of every series of data, in data's order
// (series after series, slices in order), batch series at a time.
std::vector<std::array<double, 6>> predict_series(SeqModel& model, const SeqData& data, const FeatureNorm& norm,
                                                  Device device, int64_t batch = 16);
// Their labels, in the same order.
std::vector<std::array<int, 6>> series_labels(const SeqData& data);

}  // namespace ich
