// seq_model.h: the second stage's model and its checkpoint.
//
// SeqModel: a bidirectional LSTM or GRU over the slices of a series
// (layers/rnn.h), then one Linear (2H -> 6) at every slice: six logits per
// slice, read with the series on both sides. Parameter names as a PyTorch
// module with `self.rnn = nn.LSTM(3F + 2, H, L, bidirectional=True,
// batch_first=True)` and `self.fc = nn.Linear(2 * H, 6)` would have them
// (rnn.weight_ih_l0, ..., fc.weight), so such a state_dict converts.
//
// A sequence checkpoint (RUN/last.ckpt, best.ckpt; weights/FORMAT.md):
//   model/<name>, optim/<name>, optim/steps   as ich-train's
//   norm/mean, norm/inv_std                   the embeddings' standardisation
//   meta/cell, meta/hidden, meta/layers, meta/features, meta/epoch,
//   meta/step, meta/seed, meta/lr, meta/batch, meta/best_valid_loss,
//   meta/views (the embeddings' test-time views: none, flip, flip+transpose;
//   older checkpoints have meta/flip 0/1), meta/cnn (the slice model's
//   weights_fingerprint, train/checkpoint.h; absent in older ones),
//   meta/kind = "sequence"
#pragma once
#include <memory>
#include <string>

#include "data/augment.h"
#include "engine/ops/optim.h"
#include "layers/layers.h"
#include "layers/rnn.h"
#include "seq/seq_data.h"

namespace ich {

struct SeqModelConfig {
  RnnCell cell = RnnCell::LSTM;
  int64_t features = 0, hidden = 64, layers = 2;  // features: F, the embedding size
};
RnnCell parse_cell(const std::string& s);  // "lstm" or "gru"
const char* cell_name(RnnCell c);

class SeqModel : public Module {
 public:
  SeqModel(const SeqModelConfig& c, Generator& gen);
  // x (B, T, 3F + 2), lengths -> logits (B * T, 6), row b * T + t for slice t of series b.
  Tensor forward(const Tensor& x, const std::vector<int64_t>& lengths);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "SeqModel"; }
  const SeqModelConfig& config() const { return c_; }

 private:
  SeqModelConfig c_;
  RNN* rnn_;
  Linear* fc_;
};

struct SeqCheckpointMeta {
  int64_t epoch = 0, step = 0, batch = 8;
  uint64_t seed = 0;
  double lr = 1e-3, best_valid_loss = 1e300;
  Tta views = Tta::Flip;  // the embeddings' views, averaged (ich-embed --tta; its default: with the mirror)
  std::string cnn;        // the slice model's weights_fingerprint ("": not recorded, an older checkpoint)
};

void save_seq_checkpoint(const std::string& path, const SeqModel& model, Optimizer* opt, const FeatureNorm& norm,
                         const SeqCheckpointMeta& meta);

struct LoadedSeqCheckpoint {
  std::shared_ptr<SeqModel> model;
  FeatureNorm norm;
  SeqCheckpointMeta meta;
};
// The model a sequence checkpoint describes, loaded; an ich-train checkpoint
// (or any other file) is one clear error saying what it is.
LoadedSeqCheckpoint load_seq_checkpoint(const std::string& path);
// Whether the weights file at path is a sequence checkpoint (meta/kind).
bool is_seq_checkpoint(const std::string& path);
void load_seq_optimizer_state(const std::string& path, Optimizer& opt);

}  // namespace ich
