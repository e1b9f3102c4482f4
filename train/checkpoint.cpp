#include "train/checkpoint.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "engine/init.h"
#include "weights/weights_file.h"

namespace ich {


void save_checkpoint(const std::string& path, const ResNeXt& model, Optimizer* opt, const CheckpointMeta& m) {
  NamedTensors t;
  for (auto& [n, v] : model.state_dict()) t.emplace_back("model/" + n, v);
  if (opt) {
    for (auto& [n, v] : opt->state()) t.emplace_back("optim/" + n, v);
    t.emplace_back("optim/steps", int_entry(opt->steps()));
  }
  t.emplace_back("meta/arch", text_entry(m.arch));
  t.emplace_back("meta/windows", text_entry(m.windows));
  t.emplace_back("meta/size", int_entry(m.size));
  t.emplace_back("meta/batch", int_entry(m.batch));
  t.emplace_back("meta/epoch", int_entry(m.epoch));
  t.emplace_back("meta/next_batch", int_entry(m.next_batch));
  t.emplace_back("meta/step", int_entry(m.step));
  t.emplace_back("meta/seed", int_entry(int64_t(m.seed)));
  t.emplace_back("meta/lr", real_entry(m.lr));
  t.emplace_back("meta/best_valid_loss", real_entry(m.best_valid_loss));
  t.emplace_back("meta/precision", text_entry(m.precision));
  t.emplace_back("meta/lr_schedule", text_entry(m.lr_schedule));
  t.emplace_back("meta/context", int_entry(m.context));
  t.emplace_back("meta/world", int_entry(m.world));
  t.emplace_back("meta/accumulate", int_entry(m.accumulate));
  t.emplace_back("meta/sync_bn", int_entry(m.sync_bn));
  t.emplace_back("meta/loss_scale", real_entry(m.loss_scale));
  t.emplace_back("meta/loss_scale_tracker", int_entry(m.loss_scale_tracker));
  if (m.has_pos_weight) {
    std::vector<double> pw(m.pos_weight.begin(), m.pos_weight.end());
    t.emplace_back("meta/pos_weight", Tensor::from_vector(pw, {6}));
  }
  write_weights(path, t);
}

LoadedCheckpoint load_checkpoint(const std::string& path) {
  const WeightsFile f = WeightsFile::open(path);
  auto need = [&](const std::string& n) {
    ICH_CHECK(f.find(n) != nullptr, "checkpoint ", path, ": no entry '", n, "' (not an ich-train checkpoint?)");
    return f.read(n);
  };
  LoadedCheckpoint c;
  CheckpointMeta& m = c.meta;
  m.arch = entry_text(need("meta/arch"));
  m.windows = entry_text(need("meta/windows"));
  m.size = int64_t(need("meta/size").item());
  m.batch = int64_t(need("meta/batch").item());
  m.epoch = int64_t(need("meta/epoch").item());
  m.next_batch = int64_t(need("meta/next_batch").item());
  m.step = int64_t(need("meta/step").item());
  m.seed = uint64_t(need("meta/seed").item());
  m.lr = need("meta/lr").item();
  m.best_valid_loss = need("meta/best_valid_loss").item();
  if (f.find("meta/precision")) {  // checkpoints before mixed precision: fp32
    m.precision = entry_text(f.read("meta/precision"));
    m.loss_scale = need("meta/loss_scale").item();
    m.loss_scale_tracker = int64_t(need("meta/loss_scale_tracker").item());
  }
  if (f.find("meta/lr_schedule")) m.lr_schedule = entry_text(f.read("meta/lr_schedule"));  // before: constant
  if (f.find("meta/context")) m.context = int64_t(f.read("meta/context").item());           // before: 0
  if (f.find("meta/world")) m.world = int64_t(f.read("meta/world").item());                 // before: 1
  if (f.find("meta/accumulate")) m.accumulate = int64_t(f.read("meta/accumulate").item());  // before: 1
  if (f.find("meta/sync_bn")) m.sync_bn = int64_t(f.read("meta/sync_bn").item());           // before: 0
  if (f.find("meta/pos_weight")) {
    const std::vector<double> pw = f.read("meta/pos_weight").to_vector();
    ICH_CHECK(pw.size() == 6, "checkpoint ", path, ": pos_weight of ", pw.size(), " values");
    for (size_t k = 0; k < 6; ++k) m.pos_weight[k] = float(pw[k]);
    m.has_pos_weight = true;
  }
  NamedShapes shapes;
  for (const auto& e : f.entries())
    if (e.name.rfind("model/", 0) == 0) shapes.emplace_back(e.name.substr(6), e.shape);
  check_resnext_shapes(m.arch, shapes, "checkpoint " + path);
  Generator gen(0);
  const SkipInitGuard no_init;  // every parameter comes from the file (checked above)
  c.model = std::make_shared<ResNeXt>(resnext_config_for(m.arch, shapes), gen);
  NamedTensors targets;
  for (auto& [n, v] : c.model->state_dict()) targets.emplace_back("model/" + n, v);
  f.load_into(targets, /*strict=*/false);
  return c;
}

void load_optimizer_state(const std::string& path, Optimizer& opt) {
  const WeightsFile f = WeightsFile::open(path);
  NamedTensors targets;
  for (auto& [n, v] : opt.state()) targets.emplace_back("optim/" + n, v);
  for (auto& [n, v] : targets)
    ICH_CHECK(f.find(n) && f.find(n)->shape == v.shape(), "checkpoint ", path, ": optimizer state '", n,
              "' is missing or of another shape");
  f.load_into(targets, /*strict=*/false);
  ICH_CHECK(f.find("optim/steps") != nullptr, "checkpoint ", path, ": no optimizer step count");
  opt.set_steps(int64_t(f.read("optim/steps").item()));
}

std::string resume_point(const std::string& ckpt, const std::string& run_folder) {
  namespace fs = std::filesystem;
  if (fs::exists(ckpt)) return ckpt;
  std::string held, newest;
  long newest_epoch = -1;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(run_folder, ec)) {
    const std::string name = e.path().filename().string();
    if (e.path().extension() != ".ckpt") continue;
    held += (held.empty() ? "" : ", ") + name;
    char* end = nullptr;
    const long n = name.rfind("epoch", 0) == 0 ? std::strtol(name.c_str() + 5, &end, 10) : -1;
    if (n > newest_epoch && end && std::string(end) == ".ckpt") {
      newest_epoch = n;
      newest = e.path().string();
    }
  }
  if (!newest.empty()) {
    std::fprintf(stderr, "note: --resume %s: not written yet; continuing from %s, the newest checkpoint in %s\n",
                 ckpt.c_str(), newest.c_str(), run_folder.c_str());
    return newest;
  }
  ICH_CHECK(held.empty(), "--resume ", ckpt, ": no such checkpoint, and ", run_folder, " holds only ", held,
            ": name the one to continue, or train into another folder");
  std::fprintf(stderr, "note: --resume %s: no checkpoint yet in %s: nothing to resume, starting fresh\n", ckpt.c_str(),
               run_folder.c_str());
  return "";
}

}  // namespace ich
