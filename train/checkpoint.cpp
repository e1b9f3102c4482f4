#include "train/checkpoint.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <vector>

#include "data/calibrate.h"
#include "engine/init.h"
#include "engine/ops.h"
#include "io/crc32.h"
#include "weights/weights_file.h"

namespace ich {

namespace {

// Every metadata field once, in the order written: its entry, whether a
// checkpoint must hold it (fields added later are optional: an older
// checkpoint keeps the default, as noted), or must hold it when another entry
// is there, and how it goes to an entry and back. save_checkpoint() and
// load_checkpoint() both read this table, so a new field is one line.
struct MetaField {
  const char* name;
  bool required;
  const char* required_with;  // required when this entry is present (nullptr: no such rule)
  std::function<Tensor(const CheckpointMeta&)> save;  // an undefined tensor: not written
  std::function<void(CheckpointMeta&, const Tensor&)> load;
};

MetaField text_field(const char* name, bool required, std::string CheckpointMeta::*p) {
  return {name, required, nullptr, [p](const CheckpointMeta& m) { return text_entry(m.*p); },
          [p](CheckpointMeta& m, const Tensor& t) { m.*p = entry_text(t); }};
}
MetaField int_field(const char* name, bool required, int64_t CheckpointMeta::*p, const char* with = nullptr) {
  return {name, required, with, [p](const CheckpointMeta& m) { return int_entry(m.*p); },
          [p](CheckpointMeta& m, const Tensor& t) { m.*p = int64_t(t.item()); }};
}
MetaField real_field(const char* name, bool required, double CheckpointMeta::*p, const char* with = nullptr) {
  return {name, required, with, [p](const CheckpointMeta& m) { return real_entry(m.*p); },
          [p](CheckpointMeta& m, const Tensor& t) { m.*p = t.item(); }};
}

const std::vector<MetaField>& meta_fields() {
  static const std::vector<MetaField> fields = {
      text_field("meta/arch", true, &CheckpointMeta::arch),
      text_field("meta/windows", true, &CheckpointMeta::windows),
      int_field("meta/size", true, &CheckpointMeta::size),
      int_field("meta/batch", true, &CheckpointMeta::batch),
      int_field("meta/epoch", true, &CheckpointMeta::epoch),
      int_field("meta/next_batch", true, &CheckpointMeta::next_batch),
      int_field("meta/step", true, &CheckpointMeta::step),
      {"meta/seed", true, nullptr, [](const CheckpointMeta& m) { return int_entry(int64_t(m.seed)); },
       [](CheckpointMeta& m, const Tensor& t) { m.seed = uint64_t(t.item()); }},
      real_field("meta/lr", true, &CheckpointMeta::lr),
      real_field("meta/best_valid_loss", true, &CheckpointMeta::best_valid_loss),
      text_field("meta/precision", false, &CheckpointMeta::precision),        // before mixed precision: fp32
      text_field("meta/lr_schedule", false, &CheckpointMeta::lr_schedule),    // before: constant
      int_field("meta/context", false, &CheckpointMeta::context),             // before: 0
      int_field("meta/world", false, &CheckpointMeta::world),                 // before: 1
      int_field("meta/accumulate", false, &CheckpointMeta::accumulate),       // before: 1
      int_field("meta/sync_bn", false, &CheckpointMeta::sync_bn),             // before: 0
      real_field("meta/loss_scale", false, &CheckpointMeta::loss_scale, "meta/precision"),
      int_field("meta/loss_scale_tracker", false, &CheckpointMeta::loss_scale_tracker, "meta/precision"),
      {"meta/pos_weight", false, nullptr,  // only when ich-train set it
       [](const CheckpointMeta& m) {
         return m.has_pos_weight ? Tensor::from_vector(std::vector<double>(m.pos_weight.begin(), m.pos_weight.end()), {6})
                                 : Tensor();
       },
       [](CheckpointMeta& m, const Tensor& t) {
         const std::vector<double> pw = t.to_vector();
         ICH_CHECK(pw.size() == 6, "pos_weight of ", pw.size(), " values");
         for (size_t k = 0; k < 6; ++k) m.pos_weight[k] = float(pw[k]);
         m.has_pos_weight = true;
       }},
      {"meta/temperature", false, nullptr,  // only after ich-calibrate
       [](const CheckpointMeta& m) {
         return m.calibrated ? Tensor::from_vector(std::vector<double>(m.temperature.begin(), m.temperature.end()), {6},
                                                   DType::Float64)
                             : Tensor();
       },
       [](CheckpointMeta& m, const Tensor& t) {
         const std::vector<double> v = t.to_vector();
         ICH_CHECK(v.size() == 6, "temperature of ", v.size(), " values");
         for (size_t k = 0; k < 6; ++k) {
           ICH_CHECK(std::isfinite(v[k]) && v[k] > 0, "temperature ", v[k], " is not a positive number");
           m.temperature[k] = v[k];
         }
         m.calibrated = true;
       }},
  };
  return fields;
}

}  // namespace

std::array<double, 6> probabilities_of(const double* z, const CheckpointMeta& m) {
  std::array<double, 6> p{};
  for (size_t k = 0; k < 6; ++k) p[k] = calibrated_probability(z[k], m.calibrated ? m.temperature[k] : 1.0);
  return p;
}

std::vector<std::array<double, 6>> probabilities(const Tensor& logits, const CheckpointMeta* m) {
  const bool calibrated = m && m->calibrated;
  const std::vector<double> v = (calibrated ? logits : sigmoid(logits)).to_vector();
  std::vector<std::array<double, 6>> out(v.size() / 6);
  for (size_t j = 0; j < out.size(); ++j)
    if (calibrated)
      out[j] = probabilities_of(&v[j * 6], *m);
    else
      std::copy(v.begin() + long(j * 6), v.begin() + long(j * 6 + 6), out[j].begin());
  return out;
}

void save_checkpoint(const std::string& path, const ResNeXt& model, Optimizer* opt, const CheckpointMeta& m) {
  NamedTensors t;
  for (auto& [n, v] : model.state_dict()) t.emplace_back("model/" + n, v);
  if (opt) {
    for (auto& [n, v] : opt->state()) t.emplace_back("optim/" + n, v);
    t.emplace_back("optim/steps", int_entry(opt->steps()));
  }
  for (const MetaField& field : meta_fields())
    if (Tensor v = field.save(m); v.defined()) t.emplace_back(field.name, v);
  write_weights(path, t);
}

LoadedCheckpoint load_checkpoint(const std::string& path) {
  const WeightsFile f = WeightsFile::open(path);
  LoadedCheckpoint c;
  for (const MetaField& field : meta_fields()) {
    const bool needed = field.required || (field.required_with && f.find(field.required_with));
    if (!f.find(field.name)) {
      ICH_CHECK(!needed, "checkpoint ", path, ": no entry '", field.name, "' (not an ich-train checkpoint?)");
      continue;
    }
    try {
      field.load(c.meta, f.read(field.name));
    } catch (const std::exception& e) {
      throw Error("checkpoint " + path + ": entry '" + field.name + "': " + e.what());
    }
  }
  const CheckpointMeta& m = c.meta;
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

std::string weights_fingerprint(const Module& model) {
  uint32_t crc = 0;
  uint64_t bytes = 0;
  for (const auto& [name, t] : model.state_dict()) {
    const Tensor h = t.to(Device::cpu()).contiguous();
    crc = crc32_update(crc, name.data(), name.size());
    const std::vector<int64_t>& shape = h.shape();
    crc = crc32_update(crc, shape.data(), shape.size() * sizeof(int64_t));
    const size_t n = size_t(h.numel()) * dtype_size(h.dtype());
    crc = crc32_update(crc, h.raw_data(), n);
    bytes += n;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "%08x/%llu", unsigned(crc), (unsigned long long)bytes);
  return buf;
}

}  // namespace ich
