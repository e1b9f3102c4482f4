#include "train/trainer.h"

#include <atomic>
#include <chrono>
#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>

#include "data/labels.h"
#include "data/metrics.h"
#include "engine/ops/amp.h"
#include "engine/autograd.h"
#include "engine/device_select.h"
#include "engine/ops.h"
#include "io/atomic_file.h"
#include "io/csv.h"
#include "report/tensorboard.h"
#include "train/checkpoint.h"
#include "train/data_parallel.h"
#include "train/step.h"

namespace ich {

namespace fs = std::filesystem;

namespace {

std::atomic<bool> g_interrupted{false};
void on_sigint(int) { g_interrupted = true; }

std::string fmt(double v) { return fmt_double(v, 6); }

double unix_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

double epoch_lr(double lr, const std::string& schedule, int64_t epoch, int64_t epochs) {
  ICH_CHECK(schedule == "constant" || schedule == "cosine", "--lr-schedule '", schedule, "': constant or cosine");
  if (schedule == "constant") return lr;
  return lr * 0.5 * (1 + std::cos(3.14159265358979323846 * double(epoch) / double(std::max<int64_t>(1, epochs))));
}

std::string windows_of_images(const std::string& dir) {
  const fs::path meta = fs::path(dir) / "meta.csv";
  if (!fs::exists(meta)) return "brain,subdural,soft";
  const CsvTable t = read_csv(meta.string());
  const size_t cw = t.column("windows"), cs = t.column("status");
  for (const auto& r : t.rows)
    if (r[cs] == "ok") {
      std::string w = r[cw];
      for (char& c : w)
        if (c == ';') c = ',';
      return w;
    }
  return "brain,subdural,soft";
}

namespace {

// The model's outputs for every image of ds: logits, or sigmoid(logits)
// (calibrated when `calibration` says so).
enum class Output { Logits, Probabilities };
std::vector<std::array<double, 6>> model_outputs(ResNeXt& model, const SliceDataset& ds, int64_t size, int64_t batch,
                                                 Device device, const std::function<void(int64_t, int64_t)>& progress,
                                                 Shard shard, Output what, const CheckpointMeta* calibration) {
  const bool was_training = model.is_training();
  model.eval();
  std::vector<std::array<double, 6>> out(ds.size());
  for_each_eval_batch(
      ds, size, batch, device, shard,
      [&](const Batch& b) {
        const Tensor logits = model(to_device_input(b.x, device));
        if (what == Output::Probabilities) {
          const std::vector<std::array<double, 6>> p = probabilities(logits, calibration);
          for (size_t j = 0; j < b.samples.size(); ++j) out[b.samples[j]] = p[j];
          return;
        }
        const std::vector<double> v = logits.to_vector();
        for (size_t j = 0; j < b.samples.size(); ++j)
          std::copy(v.begin() + long(j * 6), v.begin() + long(j * 6 + 6), out[b.samples[j]].begin());
      },
      progress);
  model.train(was_training);
  return out;
}

}  // namespace

void for_each_eval_batch(const SliceDataset& ds, int64_t size, int64_t batch, Device device, Shard shard,
                         const std::function<void(const Batch&)>& fn,
                         const std::function<void(int64_t, int64_t)>& progress) {
  NoGradGuard ng;
  // On a GPU, batches travel as bytes and are normalised there.
  LoaderOptions lo;
  lo.batch = batch;
  lo.bytes = device.is_cuda();
  lo.shard = shard;
  BatchLoader loader(ds, eval_augment(int(size)), lo);
  Batch b;
  int64_t done = 0;
  while (loader.next(b)) {
    fn(b);
    done += int64_t(b.samples.size());
    if (progress) progress(done, int64_t(ds.size()));
  }
}

std::vector<std::array<double, 6>> predict_probs(ResNeXt& model, const SliceDataset& ds, int64_t size, int64_t batch,
                                                 Device device, const std::function<void(int64_t, int64_t)>& progress,
                                                 Shard shard, const CheckpointMeta* calibration) {
  return model_outputs(model, ds, size, batch, device, progress, shard, Output::Probabilities, calibration);
}

std::vector<std::array<double, 6>> predict_logits(ResNeXt& model, const SliceDataset& ds, int64_t size, int64_t batch,
                                                  Device device, const std::function<void(int64_t, int64_t)>& progress) {
  return model_outputs(model, ds, size, batch, device, progress, {}, Output::Logits, nullptr);
}

namespace {

// The run folder, made and checked by the process that writes it (rank 0).
void prepare_run_folder(const std::string& out) {
  fs::create_directories(out);
  {  // fail before training when the run folder cannot take a file
    const std::string probe = (fs::path(out) / ".write_test").string();
    FILE* f = std::fopen(probe.c_str(), "w");
    ICH_CHECK(f != nullptr, "run folder ", out, " is not writable");
    std::fclose(f);
    fs::remove(probe);
  }
  // A run killed while writing a checkpoint or log.csv leaves
  // "<name>.tmp.<pid>" behind (io/atomic_file.h; the real name is
  // untouched): clear them, and only them.
  remove_atomic_leftovers(out, {".ckpt", "log.csv"});
}

}  // namespace

namespace {

// --- set-up --------------------------------------------------------------

// The model and its metadata: from --resume (every setting that decides the
// run's numbers checked against this run's), or new (ImageNet/WSL backbone
// when --weights, a new 6-output head, conv1 widened for --context).
std::shared_ptr<ResNeXt> start_or_resume(const TrainOptions& o, const DataParallel& dp, const SliceDataset& train_ds,
                                         CheckpointMeta& meta, const std::function<void(const std::string&)>& say) {
  if (!o.resume.empty()) {
    LoadedCheckpoint c = load_checkpoint(o.resume);
    meta = c.meta;
    ICH_CHECK(!meta.calibrated, "--resume ", o.resume, " is a calibrated checkpoint (ich-calibrate), for inference: "
              "it has no optimizer state; resume from the ich-train checkpoint it was made from");
    ICH_CHECK(meta.size == o.size && meta.batch == o.batch && meta.seed == o.seed &&
                  parse_precision(meta.precision) == parse_precision(o.precision) && meta.lr_schedule == o.lr_schedule &&
                  meta.context == o.context,
              "--resume ", o.resume, ": the checkpoint was trained with size ", meta.size, ", batch ", meta.batch,
              ", seed ", meta.seed, ", precision ", meta.precision, ", lr schedule ", meta.lr_schedule, ", context ",
              meta.context, "; pass the same values to continue it exactly");
    ICH_CHECK(meta.world == dp.world() && meta.accumulate == dp.accumulate(), "--resume ", o.resume,
              ": the checkpoint was trained on ", meta.world, " rank(s) x ", meta.accumulate,
              " micro-batch(es) a step, this run has ", dp.world(), " x ", dp.accumulate(),
              "; each step's images depend on both: continue it with the same (ich-launch --nproc, --accumulate)");
    ICH_CHECK(meta.sync_bn == int64_t(o.sync_bn), "--resume ", o.resume, ": the checkpoint was trained ",
              meta.sync_bn ? "with" : "without", " --sync-bn; pass the same to continue it exactly");
    say("resuming " + o.resume + " at epoch " + std::to_string(meta.epoch + 1) + ", batch " +
        std::to_string(meta.next_batch));

    return c.model;
  }
  Generator gen(o.seed);
  auto model = std::make_shared<ResNeXt>(resnext_preset(o.arch, 1000), gen);
  if (!o.weights.empty()) load_backbone(*model, o.weights);
  model->replace_head(6, gen);  // a new Linear(features, 6), PyTorch's init
  if (o.context > 0) {  // the centre slice's channels keep the (pretrained) weights: the model starts as it was
    const int64_t c = model->config().in_channels;
    model->widen_input(c * (2 * o.context + 1), c * o.context);
  }
  meta.context = o.context;
  meta.world = dp.world();
  meta.accumulate = dp.accumulate();
  meta.sync_bn = o.sync_bn;
  meta.arch = o.arch;
  meta.size = o.size;
  meta.batch = o.batch;
  meta.seed = o.seed;
  meta.lr = o.lr;
  meta.precision = precision_name(parse_precision(o.precision));
  meta.lr_schedule = o.lr_schedule;
  meta.windows = windows_of_images(o.images);
  const auto f = train_ds.positive_fraction();
  if (o.pos_weight == "auto") {
    // Rare labels weigh more: negatives/positives per label (the seed's own suggestion), at most 100.
    for (size_t k = 0; k < 6; ++k) meta.pos_weight[k] = float(f[k] > 0 ? std::min(100.0, (1 - f[k]) / f[k]) : 1.0);
    meta.has_pos_weight = true;
  }
  ICH_CHECK(o.head_bias == "prior" || o.head_bias == "zero", "--head-bias ", o.head_bias, ": expected prior or zero");
  if (o.head_bias == "prior") {
    const std::array<float, 6> b = head_bias_for_prior(f, meta.has_pos_weight ? meta.pos_weight.data() : nullptr);
    Tensor& bias = model->fc().bias;
    for (size_t k = 0; k < 6; ++k) bias.data<float>()[k] = b[k];
  }
  return model;
}

}  // namespace

std::array<float, 6> head_bias_for_prior(const std::array<double, 6>& f, const float* pos_weight) {
  std::array<float, 6> b{};
  for (size_t k = 0; k < 6; ++k) {
    // The constant q minimising w*f*(-log q) + (1-f)*(-log(1-q)) is w*f / (w*f + 1 - f).
    const double w = pos_weight ? double(pos_weight[k]) : 1.0;
    const double q = std::clamp(w * f[k] / (w * f[k] + 1 - f[k]), 1e-4, 1 - 1e-4);  // a label never (or always) seen
    b[k] = float(std::log(q / (1 - q)));
  }
  return b;
}

namespace {

// log.csv and TensorBoard, one row per epoch: rows of earlier epochs survive
// a resume, and a new event file starts over by repeating them (report/tensorboard.h).
class RunLog {
 public:
  RunLog(const TrainOptions& o, const CheckpointMeta& meta, bool writer)
      : path_((fs::path(o.out) / "log.csv").string()), writer_(writer) {
    header_ = {"epoch", "step", "train_loss", "valid_loss", "valid_auc_any", "valid_auc_mean",
               "valid_weighted_log_loss", "seconds", "images_per_second", "lr"};
    for (size_t k = 0; k < 5; ++k) header_.push_back(std::string("valid_auc_") + kSubtypes[k]);
    header_.push_back("wall_time");  // seconds since 1970 at the end of the epoch
    if (!o.resume.empty() && fs::exists(path_)) {
      const CsvTable old = read_csv(path_);
      for (const auto& r : old.rows) {
        if (std::stoll(r[0]) > meta.epoch) continue;
        std::vector<std::string> row;  // by column name: a log.csv from before a column has it empty
        for (const std::string& c : header_) row.push_back(old.has_column(c) ? r[old.column(c)] : "");
        rows_.push_back(row);
      }
    }
    if (!writer_) return;
    tensorboard_ = std::make_unique<EventFileWriter>((fs::path(o.out) / "tensorboard").string());
    tensorboard_->session_start(0, unix_seconds());
    for (const auto& r : rows_) write_log_row(*tensorboard_, header_, r);
    tensorboard_->flush();
  }
  void add(std::vector<std::string> row) {
    rows_.push_back(std::move(row));
    if (!writer_) return;
    CsvWriter w(path_, header_);
    for (const auto& r : rows_) w.row(r);
    w.commit();
    write_log_row(*tensorboard_, header_, rows_.back());
    tensorboard_->flush();
  }

 private:
  std::string path_;
  bool writer_;
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
  std::unique_ptr<EventFileWriter> tensorboard_;
};

// What the loop's parts share once set up.
struct Run {
  const TrainOptions& o;
  const std::function<void(const std::string&)>& say;
  const std::function<void(const std::string&)>& log_line;
  Device dev;
  DataParallel& dp;
  ResNeXt& model;
  Adam& opt;
  CheckpointMeta& meta;
  Tensor pos_weight;
  DType precision;
  LossScaler* scaler;      // float16 only
  Stepper& stepper;        // eager, data-parallel or graphed (train/step.h)
  std::string last;        // last.ckpt
  int64_t skipped = 0;     // float16 steps skipped so far
};

// --- one epoch of training -----------------------------------------------

struct EpochTraining {
  double loss_sum = 0;
  int64_t loss_n = 0, images = 0;
  double seconds = 0;
  bool interrupted = false;  // Ctrl-C: last.ckpt written at the current batch
};

EpochTraining train_one_epoch(Run& r, const SliceDataset& train_ds, int64_t epoch,
                              std::chrono::steady_clock::time_point t0) {
  const TrainOptions& o = r.o;
  CheckpointMeta& meta = r.meta;
  AugmentOptions ao;
  ao.size = int(meta.size);
  ao.augment = o.augment;
  ao.transpose = o.transpose;
  // One loader per micro-batch of a step: shard rank x accumulate + k of the epoch's order.
  std::vector<std::unique_ptr<BatchLoader>> loaders;
  for (int k = 0; k < r.dp.accumulate(); ++k) {
    LoaderOptions lo;
    lo.batch = meta.batch;
    lo.shuffle = lo.drop_last = true;
    lo.seed = meta.seed;
    lo.epoch = epoch;
    lo.first_batch = meta.next_batch;
    lo.workers = std::max(1, o.workers / r.dp.accumulate());
    lo.bytes = r.dev.is_cuda();
    lo.shard = r.dp.train_shard(k);
    loaders.push_back(std::make_unique<BatchLoader>(train_ds, ao, lo));
  }
  const int64_t batches = loaders[0]->batches();
  const int64_t n = o.max_steps_per_epoch > 0 ? std::min(batches, o.max_steps_per_epoch) : batches;
  EpochTraining e;
  Batch b;
  std::vector<MicroBatch> micro;
  while (meta.next_batch < n) {
    micro.clear();
    int64_t samples = 0;
    for (auto& l : loaders) {
      ICH_CHECK(l->next(b), "the data loader ended before batch ", meta.next_batch, " of ", n);
      samples += int64_t(b.samples.size());
      micro.push_back({b.x, b.y});
    }
    const StepResult s = r.stepper.take(micro, meta.step + 1, g_interrupted);
    const double l = s.loss;
    if (!s.finite)
      throw Error("loss is " + std::string(std::isnan(l) ? "NaN" : "infinite") + " at epoch " +
                  std::to_string(epoch + 1) + ", batch " + std::to_string(meta.next_batch) + " (step " +
                  std::to_string(meta.step + 1) + "): stopped without applying it; " + r.last +
                  " holds the last good state. Try a lower --lr.");
    if (r.scaler) {  // the scaler's state goes into the checkpoints
      meta.loss_scale = r.scaler->scale();
      meta.loss_scale_tracker = r.scaler->growth_tracker();
      r.skipped += !s.applied;
    }
    ++meta.step;
    if (o.on_step) o.on_step(meta.step, l, s.applied);
    ++meta.next_batch;
    e.loss_sum += l;
    ++e.loss_n;
    e.images += samples * r.dp.world();
    const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (r.log_line && (meta.next_batch % 10 == 0 || meta.next_batch == n)) {
      char buf[200];
      std::snprintf(buf, sizeof buf, "epoch %lld/%lld  batch %lld/%lld  loss %.4f  %.1f images/s  ETA %.0f s",
                    (long long)epoch + 1, (long long)o.epochs, (long long)meta.next_batch, (long long)n,
                    e.loss_sum / double(e.loss_n), double(e.images) / el,
                    double(n - meta.next_batch) * el / double(std::max<int64_t>(1, e.loss_n)));
      r.say(buf);
    }
    if (s.interrupted) {  // several ranks: all stop after the same step
      meta.epoch = epoch;
      r.dp.broadcast_buffers(r.model, "rank 0's batch-norm statistics before the checkpoint");
      if (r.dp.writer()) save_checkpoint(r.last, r.model, &r.opt, meta);
      r.say("interrupted: wrote " + r.last + " (resume with --resume " + r.last + ")");
      e.interrupted = true;
      return e;
    }
  }
  e.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (r.scaler) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "fp16: %lld steps skipped so far (gradients overflowed), loss scale now %g",
                  (long long)r.skipped, r.scaler->scale());
    r.say(buf);
  }
  return e;
}

// --- validation ----------------------------------------------------------

// Unweighted mean BCE (the seed's validation loss), AUC per label and their
// mean, the competition metric; each rank predicts its shard, rank 0's
// batch-norm statistics on all.
struct Validation {
  EvalReport rep;
  double auc_mean = NAN;
};

Validation validate(Run& r, const SliceDataset& valid_ds) {
  r.dp.broadcast_buffers(r.model, "rank 0's batch-norm statistics before validation");
  std::vector<bool> mine(valid_ds.size(), false);  // this rank's part of the validation set
  for (const size_t i : shard_order(epoch_order(valid_ds.size(), 0, 0, false), r.dp.valid_shard())) mine[i] = true;
  const std::vector<std::array<double, 6>> p = r.dp.gather_rows(
      predict_probs(r.model, valid_ds, r.meta.size, r.meta.batch, r.dev, nullptr, r.dp.valid_shard()), mine);
  std::vector<std::array<int, 6>> y(valid_ds.size());
  for (size_t i = 0; i < valid_ds.size(); ++i) y[i] = valid_ds.row(i).y;
  Validation v;
  v.rep = evaluate(p, y);
  double sum = 0;
  int n = 0;
  for (size_t k = 1; k < 7; ++k)
    if (!std::isnan(v.rep.per_label[k].auc)) sum += v.rep.per_label[k].auc, ++n;
  if (n) v.auc_mean = sum / n;
  return v;
}

// --- checkpoints ---------------------------------------------------------

// epochN.ckpt and last.ckpt, and best.ckpt when the validation loss is the
// lowest so far; only the writing rank writes. Returns whether it was best.
bool save_epoch(Run& r, int64_t epoch, double valid_loss) {
  r.meta.epoch = epoch + 1;
  r.meta.next_batch = 0;
  const bool best = valid_loss < r.meta.best_valid_loss;
  if (best) r.meta.best_valid_loss = valid_loss;
  if (r.dp.writer()) {
    // One write; last.ckpt and best.ckpt are second names of the same bytes
    // (a ResNeXt-101 checkpoint with Adam's moments is 1 GB), copies only
    // where the file system has no hard links.
    const std::string epoch_file = (fs::path(r.o.out) / ("epoch" + std::to_string(epoch + 1) + ".ckpt")).string();
    save_checkpoint(epoch_file, r.model, &r.opt, r.meta);
    const auto name_also = [&](const std::string& path) {
      if (!link_atomic(epoch_file, path)) save_checkpoint(path, r.model, &r.opt, r.meta);
    };
    name_also(r.last);
    if (best) name_also((fs::path(r.o.out) / "best.ckpt").string());
  }
  return best;
}

}  // namespace

int train(const TrainOptions& given, const std::function<void(const std::string&)>& log_line) {
  TrainOptions o = given;
  if (!o.resume.empty()) o.resume = resume_point(o.resume, o.out);  // "" when there is nothing to resume yet
  bool quiet = false;  // ranks other than 0 say nothing (their errors still reach the launcher)
  const std::function<void(const std::string&)> say = [&](const std::string& s) {
    if (log_line && !quiet) log_line(s);
  };
  ICH_CHECK(o.epochs >= 1 && o.batch >= 1 && o.size >= 32 && o.lr > 0, "ich-train: epochs, batch, size >= 32 and lr must be positive");
  ICH_CHECK(o.pos_weight == "none" || o.pos_weight == "auto", "--pos-weight '", o.pos_weight, "': none or auto");
  epoch_lr(o.lr, o.lr_schedule, 0, o.epochs);  // checks the schedule's name before any work
  ICH_CHECK(!o.cuda_graph || (o.accumulate == 1 && !o.dist.distributed()),
            "--cuda-graph captures one whole step: not with --accumulate or several ranks");
  Device dev = pick_device(o.device);
  if (dev.is_cuda()) dev = Device::cuda(o.dist.local_rank);  // one GPU per rank of this machine
  DataParallel dp(o.dist, o.accumulate, dev);
  quiet = !dp.writer();
  if (dp.writer()) prepare_run_folder(o.out);
  if (dp.distributed())
    say("data-parallel: " + std::to_string(dp.world()) + " ranks, " + std::to_string(o.accumulate) +
        " micro-batch(es) of " + std::to_string(o.batch) + " a step each: " +
        std::to_string(int64_t(dp.world()) * o.accumulate * o.batch) + " images a step");
  SliceDataset train_ds(read_split(o.train_csv), o.images), valid_ds(read_split(o.valid_csv), o.images);
  for (SliceDataset* ds : {&train_ds, &valid_ds}) ds->set_context(o.context);

  CheckpointMeta meta;
  const std::shared_ptr<ResNeXt> model = start_or_resume(o, dp, train_ds, meta, say);
  const DType precision = parse_precision(meta.precision);
  if (precision != DType::Float32 && dev.is_cpu())
    say(std::string("--precision ") + meta.precision +
        " on the CPU: emulated (float32 holding rounded values), for checking its numerics; it is not faster");
  // float16 needs loss scaling (engine/ops/amp.h); bfloat16 has float32's range.
  const bool scaled = precision == DType::Float16;
  LossScaler scaler;
  if (scaled) scaler.restore(meta.loss_scale, meta.loss_scale_tracker);
  // Channels-last: converted once at the input; the ops keep it (engine/ops/op_util.h).
  const MemoryFormat input_format = o.channels_last ? MemoryFormat::ChannelsLast : MemoryFormat::Contiguous;
  if (o.channels_last && dev.is_cpu())
    say("--channels-last on the CPU: the CPU kernels work in N,C,H,W, so this only adds conversions");
  if (o.tf32 && dev.is_cpu()) say("--tf32 on the CPU: no effect (a GPU tensor-core setting)");
  allow_tf32(dev, o.tf32);
  model->to(dev);
  model->train();
  dp.broadcast_state(*model, "rank 0's model to every rank");
  if (o.sync_bn) {
    if (dp.distributed())
      set_sync_batch_norm(*model, [&dp](std::vector<double>& v) { v = dp.sum(v, "batch-norm statistics"); });
    else
      say("--sync-bn with one rank: nothing to share (each micro-batch is normalised by its own statistics)");
  }
  Adam opt(model->parameters(), Adam::Options{meta.lr});
  if (!o.resume.empty()) load_optimizer_state(o.resume, opt);
  const Tensor pos_weight =
      meta.has_pos_weight ? Tensor::from_vector({meta.pos_weight.begin(), meta.pos_weight.end()}, {6}).to(dev)
                          : Tensor();
  if (o.cuda_graph && dev.is_cpu())
    say("--cuda-graph on the CPU: emulated (the step's host code runs each time under the capture's rules), "
        "for checking that the step is capturable; it is not faster");
  const std::unique_ptr<Stepper> stepper = make_stepper(
      StepSetup{*model, opt, pos_weight, precision, scaled ? &scaler : nullptr, dev, input_format}, dp, o.cuda_graph);
  RunLog log(o, meta, dp.writer());

  g_interrupted = false;
  auto previous = std::signal(SIGINT, on_sigint);
  struct Restore {
    void (*h)(int);
    ~Restore() { std::signal(SIGINT, h); }
  } restore{previous};

  Run r{o, say, log_line, dev, dp, *model, opt, meta, pos_weight, precision, scaled ? &scaler : nullptr,
        *stepper, (fs::path(o.out) / "last.ckpt").string()};
  for (int64_t epoch = meta.epoch; epoch < o.epochs; ++epoch) {
    const auto t0 = std::chrono::steady_clock::now();
    opt.options().lr = epoch_lr(meta.lr, o.lr_schedule, epoch, o.epochs);
    const EpochTraining e = train_one_epoch(r, train_ds, epoch, t0);
    if (e.interrupted) return 130;
    const Validation v = validate(r, valid_ds);
    const bool best = save_epoch(r, epoch, v.rep.mean_bce);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double train_loss = e.loss_sum / double(std::max<int64_t>(1, e.loss_n));
    std::vector<std::string> row{std::to_string(epoch + 1), std::to_string(meta.step), fmt(train_loss),
                                 fmt(v.rep.mean_bce), fmt(v.rep.per_label[6].auc), fmt(v.auc_mean),
                                 fmt(v.rep.weighted_log_loss), fmt(secs), fmt(double(e.images) / e.seconds),
                                 fmt(opt.options().lr)};
    for (size_t k = 1; k <= 5; ++k) row.push_back(fmt(v.rep.per_label[k].auc));
    row.push_back(fmt_double(unix_seconds(), 15));
    log.add(std::move(row));
    char buf[240];
    std::snprintf(buf, sizeof buf,
                  "epoch %lld: train loss %.4f, valid loss %.4f, AUC any %.4f, mean AUC %.4f, weighted log loss %.4f%s",
                  (long long)epoch + 1, train_loss, v.rep.mean_bce, v.rep.per_label[6].auc, v.auc_mean,
                  v.rep.weighted_log_loss, best ? " (best)" : "");
    say(buf);
  }
  return 0;
}

}  // namespace ich
