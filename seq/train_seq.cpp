#include "seq/train_seq.h"

#include <chrono>
#include <cmath>
#include <filesystem>

#include "data/dataset.h"
#include "data/metrics.h"
#include "engine/autograd.h"
#include "engine/device_select.h"
#include "engine/ops.h"
#include "engine/ops/rnn.h"
#include "io/atomic_file.h"
#include "io/csv.h"
#include "train/checkpoint.h"

namespace ich {

namespace fs = std::filesystem;

namespace {

// The competition's weights, normalised so that a slice's loss is their
// weighted mean: (1, 1, 1, 1, 1, 2) * 6/7.
Tensor competition_weights(Device d) {
  std::vector<double> w{1, 1, 1, 1, 1, 2};
  for (double& v : w) v *= 6.0 / 7.0;
  return Tensor::from_vector(w, {6}).to(d);
}

std::vector<const SeqSeries*> batch_of(const SeqData& d, const std::vector<size_t>& order, size_t start, size_t n) {
  std::vector<const SeqSeries*> b;
  for (size_t i = start; i < std::min(order.size(), start + n); ++i) b.push_back(&d.series[order[i]]);
  return b;
}

// Everything a run carries from epoch to epoch.
struct SeqRun {
  SeqData train, valid;
  FeatureNorm norm;
  std::shared_ptr<SeqModel> model;
  std::unique_ptr<Adam> opt;
  SeqCheckpointMeta meta;
  Device dev = Device::cpu();
  double input_dropout = 0;
  std::vector<std::vector<std::string>> log_rows;
  std::string last, best, log_path;
};

const std::vector<std::string>& log_header() {
  static const std::vector<std::string> h{"epoch", "step", "train_loss", "valid_weighted_log_loss", "valid_auc_any",
                                          "valid_mean_bce", "seconds"};
  return h;
}

SeqRun set_up(const SeqTrainOptions& o, const std::function<void(const std::string&)>& say) {
  ICH_CHECK(o.epochs >= 1 && o.batch >= 1 && o.lr > 0 && o.hidden >= 1 && o.layers >= 1,
            "ich-train-seq: epochs, batch, lr, hidden and layers must be positive");
  SeqRun r;
  r.dev = pick_device(o.device);
  ICH_CHECK(o.input_dropout >= 0 && o.input_dropout < 1, "--input-dropout ", o.input_dropout, ": in [0, 1)");
  r.input_dropout = o.input_dropout;
  const std::vector<SplitRow> train_rows = read_split(o.train_csv), valid_rows = read_split(o.valid_csv);
  r.train = read_seq_data(o.embeddings, &train_rows);
  r.valid = read_seq_data(o.embeddings, &valid_rows);
  ICH_CHECK(!r.train.series.empty() && !r.valid.series.empty(), "ich-train-seq: no training or no validation series");
  fs::create_directories(o.out);
  remove_atomic_leftovers(o.out, {".ckpt", "log.csv"});  // a killed run's half-written files
  r.last = (fs::path(o.out) / "last.ckpt").string();
  r.best = (fs::path(o.out) / "best.ckpt").string();
  r.log_path = (fs::path(o.out) / "log.csv").string();
  const bool resume = o.resume && !resume_point(r.last, o.out).empty();  // its checkpoints: last and best only
  if (resume) {
    LoadedSeqCheckpoint c = load_seq_checkpoint(r.last);
    const SeqModelConfig& k = c.model->config();
    ICH_CHECK(cell_name(k.cell) == o.cell && k.hidden == o.hidden && k.layers == o.layers && c.meta.batch == o.batch &&
                  c.meta.seed == o.seed && k.features == r.train.features(),
              "--resume ", r.last, ": it was trained with --cell ", cell_name(k.cell), " --hidden ", k.hidden,
              " --layers ", k.layers, " --batch ", c.meta.batch, " --seed ", c.meta.seed, " on ", k.features,
              " features; pass the same to continue it");
    r.model = c.model;
    r.norm = c.norm;
    r.meta = c.meta;
    say("resuming " + r.last + " after epoch " + std::to_string(r.meta.epoch));
    if (fs::exists(r.log_path))
      for (const auto& row : read_csv(r.log_path).rows)
        if (std::stoll(row[0]) <= r.meta.epoch) r.log_rows.push_back(row);
  } else {
    Generator gen(o.seed);
    r.model = std::make_shared<SeqModel>(SeqModelConfig{parse_cell(o.cell), r.train.features(), o.hidden, o.layers}, gen);
    r.norm = feature_norm(r.train);
    r.meta.batch = o.batch, r.meta.seed = o.seed, r.meta.lr = o.lr;
    const fs::path info = fs::path(o.embeddings) / "info.csv";  // how the embeddings were made, for ich-eval/predict
    if (fs::exists(info)) {
      for (const auto& row : read_csv(info.string()).rows) {
        if (row[0] == "views") {
          r.meta.views = parse_tta(row[1]);
        } else if (row[0] == "flip") {  // an older ich-embed's
          r.meta.views = row[1] == "1" ? Tta::Flip : Tta::None;
        } else if (row[0] == "cnn") {
          r.meta.cnn = row[1];
        }
      }
    }
  }
  r.model->to(r.dev);
  r.model->train();
  r.opt = std::make_unique<Adam>(r.model->parameters(), Adam::Options{r.meta.lr});
  if (resume) load_seq_optimizer_state(r.last, *r.opt);
  say(std::to_string(r.train.series.size()) + " training series (" + std::to_string(r.train.slices()) + " slices), " +
      std::to_string(r.valid.series.size()) + " validation series (" + std::to_string(r.valid.slices()) +
      " slices), " + std::to_string(r.train.features()) + " features per slice");
  return r;
}

// One epoch over the training series; returns the mean loss.
double run_epoch(SeqRun& r, int64_t epoch) {
  const std::vector<size_t> order = epoch_order(r.train.series.size(), r.meta.seed, epoch, /*shuffle=*/true);
  const Tensor w = competition_weights(r.dev);
  double sum = 0;
  int64_t n = 0, batch_no = 0;
  for (size_t start = 0; start < order.size(); start += size_t(r.meta.batch), ++batch_no) {
    const std::vector<const SeqSeries*> b = batch_of(r.train, order, start, size_t(r.meta.batch));
    std::vector<int64_t> lengths;
    Tensor xh = series_input(r.train, r.norm, b, &lengths);
    if (r.input_dropout > 0) {  // the same mask for a (seed, epoch, batch) on every machine
      Generator g(r.meta.seed * 1000003 + uint64_t(epoch) * 7919 + uint64_t(batch_no));
      const float keep = float(1 - r.input_dropout);
      float* p = xh.data<float>();
      for (int64_t i = 0; i < xh.numel(); ++i) p[i] = g.uniform() < r.input_dropout ? 0.f : p[i] / keep;
    }
    const Tensor x = xh.to(r.dev);
    const int64_t T = x.size(1);
    std::vector<int64_t> rows;
    std::vector<double> y;
    for (size_t i = 0; i < b.size(); ++i)
      for (int64_t t = 0; t < lengths[i]; ++t) {
        rows.push_back(int64_t(i) * T + t);
        for (int v : b[i]->y[size_t(t)]) y.push_back(v);
      }
    r.opt->zero_grad();
    const Tensor logits = r.model->forward(x, lengths);
    Tensor loss = bce_with_logits(select_rows(logits, rows), Tensor::from_vector(y, {int64_t(rows.size()), 6}).to(r.dev),
                                  Tensor(), w);
    const double l = loss.item();
    if (!std::isfinite(l))
      throw Error("loss is " + std::string(std::isnan(l) ? "NaN" : "infinite") + " at epoch " + std::to_string(epoch + 1) +
                  ", batch " + std::to_string(batch_no + 1) + ": stopped without applying it; " + r.last +
                  " holds the last good state. Try a lower --lr.");
    loss.backward();
    r.opt->step();
    ++r.meta.step;
    sum += l, ++n;
  }
  return sum / double(std::max<int64_t>(1, n));
}

}  // namespace

std::vector<std::array<double, 6>> predict_series(SeqModel& model, const SeqData& data, const FeatureNorm& norm,
                                                  Device device, int64_t batch) {
  const bool was_training = model.is_training();
  model.eval();
  NoGradGuard ng;
  std::vector<std::array<double, 6>> out;
  std::vector<size_t> order(data.series.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  for (size_t start = 0; start < order.size(); start += size_t(batch)) {
    const std::vector<const SeqSeries*> b = batch_of(data, order, start, size_t(batch));
    std::vector<int64_t> lengths;
    const Tensor x = series_input(data, norm, b, &lengths).to(device);
    const int64_t T = x.size(1);
    const std::vector<double> p = sigmoid(model.forward(x, lengths)).to_vector();
    for (size_t i = 0; i < b.size(); ++i)
      for (int64_t t = 0; t < lengths[i]; ++t) {
        std::array<double, 6> q;
        for (size_t k = 0; k < 6; ++k) q[k] = p[size_t((int64_t(i) * T + t) * 6) + k];
        out.push_back(q);
      }
  }
  model.train(was_training);
  return out;
}

std::vector<std::array<int, 6>> series_labels(const SeqData& data) {
  std::vector<std::array<int, 6>> y;
  for (const SeqSeries& s : data.series) y.insert(y.end(), s.y.begin(), s.y.end());
  return y;
}

int train_sequence(const SeqTrainOptions& o, const std::function<void(const std::string&)>& log) {
  auto say = [&](const std::string& s) {
    if (log) log(s);
  };
  SeqRun r = set_up(o, say);
  for (int64_t epoch = r.meta.epoch; epoch < o.epochs; ++epoch) {
    const auto t0 = std::chrono::steady_clock::now();
    const double train_loss = run_epoch(r, epoch);
    const EvalReport rep = evaluate(predict_series(*r.model, r.valid, r.norm, r.dev), series_labels(r.valid));
    r.meta.epoch = epoch + 1;
    const bool best = rep.weighted_log_loss < r.meta.best_valid_loss;
    if (best) r.meta.best_valid_loss = rep.weighted_log_loss;
    save_seq_checkpoint(r.last, *r.model, r.opt.get(), r.norm, r.meta);
    if (best) save_seq_checkpoint(r.best, *r.model, r.opt.get(), r.norm, r.meta);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.log_rows.push_back({std::to_string(epoch + 1), std::to_string(r.meta.step), fmt_double(train_loss, 6),
                          fmt_double(rep.weighted_log_loss, 6), fmt_double(rep.per_label[6].auc, 6),
                          fmt_double(rep.mean_bce, 6), fmt_double(secs, 4)});
    CsvWriter w(r.log_path, log_header());
    for (const auto& row : r.log_rows) w.row(row);
    w.commit();
    char buf[200];
    std::snprintf(buf, sizeof buf, "epoch %lld: train loss %.4f, valid weighted log loss %.4f, AUC any %.4f%s",
                  (long long)epoch + 1, train_loss, rep.weighted_log_loss, rep.per_label[6].auc, best ? " (best)" : "");
    say(buf);
  }
  return 0;
}

}  // namespace ich
