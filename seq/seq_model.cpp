#include "seq/seq_model.h"

#include <cstring>

#include "engine/init.h"
#include "engine/ops.h"
#include "weights/weights_file.h"

namespace ich {

RnnCell parse_cell(const std::string& s) {
  ICH_CHECK(s == "lstm" || s == "gru", "cell '", s, "': expected lstm or gru");
  return s == "lstm" ? RnnCell::LSTM : RnnCell::GRU;
}
const char* cell_name(RnnCell c) { return c == RnnCell::LSTM ? "lstm" : "gru"; }

SeqModel::SeqModel(const SeqModelConfig& c, Generator& gen) : c_(c) {
  ICH_CHECK(c.features >= 1 && c.hidden >= 1 && c.layers >= 1, "sequence model: features ", c.features, ", hidden ",
            c.hidden, ", layers ", c.layers, " must be positive");
  rnn_ = &register_module(
      "rnn", std::make_shared<RNN>(RnnOptions{c.cell, series_input_size(c.features), c.hidden, c.layers, true, true}, gen));
  fc_ = &register_module("fc", std::make_shared<Linear>(2 * c.hidden, 6, gen));
}

Tensor SeqModel::forward(const Tensor& x, const std::vector<int64_t>& lengths) {
  const Tensor h = rnn_->forward(x, lengths);  // (B, T, 2H)
  return (*fc_)(reshape(h, {h.size(0) * h.size(1), h.size(2)}));
}

Tensor SeqModel::forward(const Tensor& x) {
  ICH_CHECK(x.dim() == 3, "SeqModel: input must be (series, slices, features), got ", x.str());
  return forward(x, std::vector<int64_t>(size_t(x.size(0)), x.size(1)));
}

namespace {
Tensor floats(const std::vector<float>& v) { return Tensor::from_data(v.data(), {int64_t(v.size())}); }
}  // namespace

void save_seq_checkpoint(const std::string& path, const SeqModel& model, Optimizer* opt, const FeatureNorm& norm,
                         const SeqCheckpointMeta& m) {
  NamedTensors t;
  for (auto& [n, v] : model.state_dict()) t.emplace_back("model/" + n, v);
  if (opt) {
    for (auto& [n, v] : opt->state()) t.emplace_back("optim/" + n, v);
    t.emplace_back("optim/steps", int_entry(opt->steps()));
  }
  t.emplace_back("norm/mean", floats(norm.mean));
  t.emplace_back("norm/inv_std", floats(norm.inv_std));
  const SeqModelConfig& c = model.config();
  t.emplace_back("meta/kind", text_entry("sequence"));
  t.emplace_back("meta/cell", text_entry(cell_name(c.cell)));
  t.emplace_back("meta/hidden", int_entry(c.hidden));
  t.emplace_back("meta/layers", int_entry(c.layers));
  t.emplace_back("meta/features", int_entry(c.features));
  t.emplace_back("meta/epoch", int_entry(m.epoch));
  t.emplace_back("meta/step", int_entry(m.step));
  t.emplace_back("meta/batch", int_entry(m.batch));
  t.emplace_back("meta/seed", int_entry(int64_t(m.seed)));
  t.emplace_back("meta/lr", real_entry(m.lr));
  t.emplace_back("meta/best_valid_loss", real_entry(m.best_valid_loss));
  t.emplace_back("meta/views", text_entry(tta_name(m.views)));
  if (!m.cnn.empty()) t.emplace_back("meta/cnn", text_entry(m.cnn));
  write_weights(path, t);
}

bool is_seq_checkpoint(const std::string& path) {
  const WeightsFile f = WeightsFile::open(path);
  return f.find("meta/kind") && entry_text(f.read("meta/kind")) == "sequence";
}

LoadedSeqCheckpoint load_seq_checkpoint(const std::string& path) {
  const WeightsFile f = WeightsFile::open(path);
  ICH_CHECK(f.find("meta/kind") && entry_text(f.read("meta/kind")) == "sequence", "checkpoint ", path,
            ": not a sequence checkpoint (from ich-train-seq); ", f.find("meta/arch") ? "it is an ich-train one" : "");
  auto need = [&](const std::string& n) {
    ICH_CHECK(f.find(n) != nullptr, "sequence checkpoint ", path, ": no entry '", n, "'");
    return f.read(n);
  };
  LoadedSeqCheckpoint c;
  SeqModelConfig cfg;
  cfg.cell = parse_cell(entry_text(need("meta/cell")));
  cfg.hidden = int64_t(need("meta/hidden").item());
  cfg.layers = int64_t(need("meta/layers").item());
  cfg.features = int64_t(need("meta/features").item());
  SeqCheckpointMeta& m = c.meta;
  m.epoch = int64_t(need("meta/epoch").item());
  m.step = int64_t(need("meta/step").item());
  m.batch = int64_t(need("meta/batch").item());
  m.seed = uint64_t(need("meta/seed").item());
  m.lr = need("meta/lr").item();
  m.best_valid_loss = need("meta/best_valid_loss").item();
  if (f.find("meta/views")) {
    m.views = parse_tta(entry_text(f.read("meta/views")));
  } else {  // before the transpose view: mirror-averaged or not
    m.views = need("meta/flip").item() != 0 ? Tta::Flip : Tta::None;
  }
  if (f.find("meta/cnn")) m.cnn = entry_text(f.read("meta/cnn"));
  for (auto [name, dst] : {std::pair{"norm/mean", &c.norm.mean}, std::pair{"norm/inv_std", &c.norm.inv_std}}) {
    const std::vector<double> v = need(name).to_vector();
    ICH_CHECK(int64_t(v.size()) == cfg.features, "sequence checkpoint ", path, ": ", name, " has ", v.size(),
              " values for ", cfg.features, " features");
    dst->assign(v.begin(), v.end());
  }
  Generator gen(0);
  const SkipInitGuard no_init;
  c.model = std::make_shared<SeqModel>(cfg, gen);
  NamedTensors targets;
  for (auto& [n, v] : c.model->state_dict()) {
    const WeightsEntry* e = f.find("model/" + n);
    ICH_CHECK(e && e->shape == v.shape(), "sequence checkpoint ", path, ": '", n, "' is missing or of another shape");
    targets.emplace_back("model/" + n, v);
  }
  f.load_into(targets, /*strict=*/false);
  return c;
}

void load_seq_optimizer_state(const std::string& path, Optimizer& opt) {
  const WeightsFile f = WeightsFile::open(path);
  NamedTensors targets;
  for (auto& [n, v] : opt.state()) {
    ICH_CHECK(f.find("optim/" + n) && f.find("optim/" + n)->shape == v.shape(), "sequence checkpoint ", path,
              ": optimizer state '", n, "' is missing or of another shape");
    targets.emplace_back("optim/" + n, v);
  }
  f.load_into(targets, /*strict=*/false);
  ICH_CHECK(f.find("optim/steps") != nullptr, "sequence checkpoint ", path, ": no optimizer step count");
  opt.set_steps(int64_t(f.read("optim/steps").item()));
}

}  // namespace ich
