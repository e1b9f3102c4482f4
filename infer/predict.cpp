#include "infer/predict.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <unordered_map>
#include <unordered_set>

#include "data/augment.h"
#include "data/labels.h"
#include "data/series.h"
#include "dicom/dicom.h"
#include "dicom/window_job.h"
#include "engine/autograd.h"
#include "engine/device_select.h"
#include "engine/error.h"
#include "engine/ops.h"
#include "infer/apply.h"
#include "infer/preprocess.h"
#include "io/atomic_file.h"
#include "io/crc32.h"
#include "io/csv.h"
#include "io/journal.h"
#include "io/npy.h"
#include "io/parallel.h"
#include "seq/embed.h"
#include "train/checkpoint.h"

namespace ich {

namespace fs = std::filesystem;

namespace {

// One slice's input and id, or the file's error.
struct FileInputs {
  std::string error;
  std::vector<std::string> ids;
  std::vector<std::vector<std::string>> refs;  // the instance: SOP class, SOP instance, series UIDs, frame
  std::vector<std::vector<float>> inputs;  // C x S x S each
  std::vector<std::vector<std::string>> geometry;  // sequence mode: patient, study, series, position, orientation
};

std::string joined(const double* v, int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += (i ? ";" : "") + fmt_double(v[i], 10);
  return s;
}

// A slice's geometry as the journal keeps it (five fields), and back.
std::vector<std::string> geometry_fields(const DicomSlice& s) {
  return {s.patient_id, s.study_uid, s.series_uid, s.has_z ? joined(s.position, 3) : "",
          s.has_orientation ? joined(s.orientation, 6) : ""};
}
SliceGeometry geometry_of(const std::string& id, const std::string* f) {
  SliceGeometry g;
  g.image_id = id, g.patient_id = f[0], g.study_uid = f[1], g.series_uid = f[2];
  auto numbers = [](const std::string& s, double* out, size_t n) {
    size_t k = 0, start = 0;
    while (k < n && start <= s.size()) {
      const size_t end = std::min(s.find(';', start), s.size());
      out[k++] = std::stod(s.substr(start, end - start));
      start = end + 1;
    }
  };
  if ((g.has_position = !f[3].empty())) numbers(f[3], g.position.data(), 3);
  if ((g.has_orientation = !f[4].empty())) numbers(f[4], g.orientation.data(), 6);
  return g;
}

// The features of every recorded slice of `files`, in file order: each
// chunk's (FEATURES/<first file's index>.npy) joined.
Tensor gather_features(const std::vector<std::string>& files, const std::unordered_map<std::string, JournalRecord>& done,
                       size_t per_slice, const std::string& feature_dir, int64_t chunk) {
  const int64_t n_files = int64_t(files.size());
  std::vector<Tensor> parts;
  int64_t rows = 0;
  for (int64_t base = 0; base < n_files; base += chunk) {
    int64_t in_chunk = 0;
    for (int64_t i = base; i < std::min(n_files, base + chunk); ++i) {
      const JournalRecord& r = done.at(files[size_t(i)]);
      if (r[0] == "ok") in_chunk += int64_t((r.size() - 2) / per_slice);
    }
    if (in_chunk == 0) continue;
    const std::string f = feature_dir + "/" + std::to_string(base) + ".npy";
    ICH_CHECK(fs::exists(f), f, ": the features of a recorded chunk are missing; run again without --resume");
    parts.push_back(read_npy(f));
    ICH_CHECK(parts.back().dim() == 2 && parts.back().size(0) == in_chunk, f, ": ", parts.back().str(), " for ",
              in_chunk, " slices");
    rows += in_chunk;
  }
  ICH_CHECK(!parts.empty(), feature_dir, ": no features (no slice was read)");
  const int64_t F = parts.front().size(1);
  Tensor all = Tensor::empty({rows, F});
  int64_t at = 0;
  for (const Tensor& t : parts) {
    std::copy(t.data<float>(), t.data<float>() + t.numel(), all.data<float>() + at * F);
    at += t.size(0);
  }
  return all;
}

// Shard k of n: the files whose index in the sorted list is k mod n (every
// shard a like mix of the archive).
std::vector<std::string> shard_of(const std::vector<std::string>& files, int k, int n) {
  std::vector<std::string> out;
  for (size_t i = size_t(k); i < files.size(); i += size_t(n)) out.push_back(files[i]);
  return out;
}

}  // namespace

// What identifies a checkpoint for a resumed run: its bytes.
std::string checkpoint_identity(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  ICH_CHECK(in.good(), "cannot read ", path);
  std::vector<char> buf(1 << 20);
  uint64_t size = 0;
  uint32_t crc = 0;
  while (in) {
    in.read(buf.data(), std::streamsize(buf.size()));
    const size_t got = size_t(in.gcount());
    crc = crc32_update(crc, buf.data(), got);
    size += got;
  }
  return std::to_string(size) + " bytes, crc32 " + std::to_string(crc);
}

PredictModels load_predict_models(const PredictOptions& o) {
  PredictModels m;
  m.dev = pick_device(o.device);
  m.slice = load_checkpoint(o.checkpoint);
  m.slice.model->to(m.dev);
  m.slice.model->eval();
  m.slice_identity = checkpoint_identity(o.checkpoint);
  ICH_CHECK(o.sequence.empty() || parse_tta(o.tta) == Tta::None,
            "--tta with --sequence: each series model reads embeddings averaged over the views it was trained on "
            "(ich-embed --tta), not others");
  std::vector<std::string> members{o.checkpoint};
  members.insert(members.end(), o.ensemble.begin(), o.ensemble.end());
  m.ensemble = load_ensemble(members, m.dev, parse_tta(o.tta), &m.slice, o.precision);
  for (const std::string& path : o.sequence) {
    m.seqs.push_back(load_seq_checkpoint(path));
    m.seqs.back().model->to(m.dev);
    m.seq_identity.push_back(checkpoint_identity(path));
  }
  if (!m.seqs.empty()) m.pipes = match_pipelines(m.ensemble.members, m.ensemble.paths, m.seqs, o.sequence);
  return m;
}

namespace {

int64_t channels_of(const SliceWindowing& how) { return int64_t(how.windows.empty() ? 1 : how.windows.size()); }

// 1. A chunk's files, windowed and made into the model's input in parallel
// (a file that fails keeps its error). tick(d): d files of the chunk done.
std::vector<FileInputs> window_chunk(const std::vector<std::string>& files, const std::vector<int64_t>& todo,
                                     const SliceWindowing& how, int64_t S, bool seq_mode,
                                     const std::function<void(int64_t)>& tick) {
  const int64_t C = channels_of(how);
  std::vector<FileInputs> in(todo.size());
  run_parallel(
      int64_t(todo.size()), 0, [&](int64_t d, int64_t) { tick(d); },
      [&](int64_t t) {
        thread_local WindowScratch scratch;  // the direct reader's buffers, kept between files
        FileInputs& r = in[size_t(t)];
        try {
          window_file(files[size_t(todo[size_t(t)])], how, scratch, [&](const WindowedFile& f) {
            r.inputs.emplace_back(size_t(C * S * S));
            slice_input(f.pixels, f.h, f.w, int(C), int(S), r.inputs.back().data());
            r.ids.push_back(image_id_for(f.slice));
            r.refs.push_back({f.slice.sop_class, f.slice.sop_uid, f.slice.series_uid,
                              std::to_string(f.slice.frames > 1 ? f.slice.frame : 0)});
            if (seq_mode) r.geometry.push_back(geometry_fields(f.slice));
          });
        } catch (const std::exception& e) {
          r = FileInputs();
          r.error = e.what();
        }
      });
  return in;
}

// --context checkpoints: each slice's input is the 2K+1 slices of its
// series around it (their windows as channels, slice by slice; the edge
// repeated at a series' ends), as SliceDataset builds it in training.
// Before any windowing the headers of every file are read (no pixels): the
// slices grouped into series and ordered along each normal (data/series.h),
// each slice's neighbours listed, and the files put in series order, so
// that a chunk holds whole series but at its two ends, where the few
// neighbours outside it are windowed as well.
struct ContextPlan {
  int K = 0;
  std::vector<std::string> work;  // the files in series order (unreadable ones last)
  std::vector<size_t> group;      // per file of `work`: its series' ordinal (shards take whole series)
  std::unordered_map<std::string, std::vector<std::string>> neighbours;  // image id -> 2K+1 ids
  std::unordered_map<std::string, std::string> file_of;                 // image id -> its file
};

ContextPlan plan_context(const std::vector<std::string>& files, int K) {
  ContextPlan plan;
  plan.K = K;
  std::vector<std::vector<SliceGeometry>> per_file(files.size());
  run_parallel(
      int64_t(files.size()), 0, nullptr,
      [&](int64_t i) {
        try {
          read_dicom_frames(
              files[size_t(i)],
              [&](DicomSlice& s) {
                per_file[size_t(i)].push_back(geometry_of(image_id_for(s), geometry_fields(s).data()));
              },
              /*pixels=*/false);
        } catch (const std::exception&) {
          per_file[size_t(i)].clear();  // windowing reports the file's error
        }
      });
  std::vector<SliceGeometry> geo;
  std::vector<size_t> file_index;
  for (size_t i = 0; i < files.size(); ++i)
    for (const SliceGeometry& g : per_file[i]) {
      geo.push_back(g);
      file_index.push_back(i);
      plan.file_of[g.image_id] = files[i];
    }
  std::vector<bool> placed(files.size(), false);
  size_t ordinal = 0;
  for (const SeriesOrder& s : order_series(geo)) {
    const int64_t n = int64_t(s.slices.size());
    for (int64_t k = 0; k < n; ++k) {
      std::vector<std::string>& ids = plan.neighbours[geo[s.slices[size_t(k)]].image_id];
      for (int d = -K; d <= K; ++d) ids.push_back(geo[s.slices[size_t(std::clamp<int64_t>(k + d, 0, n - 1))]].image_id);
      const size_t f = file_index[s.slices[size_t(k)]];
      if (!placed[f]) plan.work.push_back(files[f]), plan.group.push_back(ordinal), placed[f] = true;
    }
    ++ordinal;
  }
  for (size_t f = 0; f < files.size(); ++f)
    if (!placed[f]) plan.work.push_back(files[f]), plan.group.push_back(ordinal++);
  return plan;
}

// The files one run (or shard k of n) handles: in the archive's sorted
// order (`files`: the output's rows) and in the order its chunks take them
// (`work`: series order with --context, whose shards take whole series, so
// that every neighbour is in the shard; file k mod n otherwise).
struct RunFiles {
  std::vector<std::string> files, work;
};
RunFiles run_files(const std::vector<std::string>& all, const ContextPlan& plan, int k, int n) {
  RunFiles r;
  if (plan.K == 0) {
    r.files = n > 1 ? shard_of(all, k, n) : all;
    r.work = r.files;
    return r;
  }
  std::unordered_set<std::string> mine;
  for (size_t i = 0; i < plan.work.size(); ++i)
    if (plan.group[i] % size_t(n) == size_t(k)) r.work.push_back(plan.work[i]), mine.insert(plan.work[i]);
  for (const std::string& f : all)
    if (mine.count(f)) r.files.push_back(f);
  return r;
}

// The features of r.files' slices in that order; the chunks that wrote
// them were cut over r.work.
Tensor features_in_file_order(const RunFiles& r, const std::unordered_map<std::string, JournalRecord>& done,
                              size_t per_slice, const std::string& feature_dir, int64_t chunk) {
  const Tensor w = gather_features(r.work, done, per_slice, feature_dir, chunk);
  if (r.work == r.files) return w;
  std::unordered_map<std::string, std::pair<int64_t, int64_t>> rows;  // file -> (first row in w, slices)
  int64_t at = 0;
  for (const std::string& f : r.work) {
    const JournalRecord& rec = done.at(f);
    const int64_t n = rec[0] == "ok" ? int64_t((rec.size() - 2) / per_slice) : 0;
    rows[f] = {at, n};
    at += n;
  }
  const int64_t F = w.size(1);
  Tensor out = Tensor::empty({at, F});
  int64_t next = 0;
  for (const std::string& f : r.files) {
    const auto [first, n] = rows.at(f);
    std::copy(w.data<float>() + first * F, w.data<float>() + (first + n) * F, out.data<float>() + next * F);
    next += n;
  }
  return out;
}

// The chunk's inputs with their neighbours as channels: the chunk's own
// windowed slices, and those of neighbours in other chunks windowed here.
void add_context(const ContextPlan& plan, std::vector<FileInputs>& in, const SliceWindowing& how, int64_t S) {
  const int64_t C = channels_of(how);
  std::unordered_map<std::string, const std::vector<float>*> own;
  for (const FileInputs& f : in)
    for (size_t k = 0; k < f.ids.size(); ++k) own[f.ids[k]] = &f.inputs[k];
  std::vector<std::string> outside;  // the files of neighbours not in the chunk
  for (const FileInputs& f : in)
    for (const std::string& id : f.ids)
      for (const std::string& nb : plan.neighbours.at(id))
        if (!own.count(nb)) outside.push_back(plan.file_of.at(nb));
  std::sort(outside.begin(), outside.end());
  outside.erase(std::unique(outside.begin(), outside.end()), outside.end());
  std::vector<int64_t> all(outside.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = int64_t(i);
  const std::vector<FileInputs> extra = window_chunk(outside, all, how, S, false, [](int64_t) {});
  for (const FileInputs& f : extra) {
    ICH_CHECK(f.error.empty(), "--context: a neighbouring slice's file could not be read again: ", f.error);
    for (size_t k = 0; k < f.ids.size(); ++k) own[f.ids[k]] = &f.inputs[k];
  }
  // every stacked input first: `own` points into the chunk's inputs, which are replaced after
  const size_t plane = size_t(C * S * S);
  std::vector<std::vector<std::vector<float>>> stacked(in.size());
  for (size_t t = 0; t < in.size(); ++t)
    for (const std::string& id : in[t].ids) {
      std::vector<float> v;
      v.reserve(plane * (2 * size_t(plan.K) + 1));
      for (const std::string& nb : plan.neighbours.at(id)) {
        const std::vector<float>* p = own.at(nb);
        v.insert(v.end(), p->begin(), p->end());
      }
      stacked[t].push_back(std::move(v));
    }
  for (size_t t = 0; t < in.size(); ++t) in[t].inputs = std::move(stacked[t]);
}

// 2. Every slice of the chunk in file order through the model in batches:
// its six probabilities as written, and in sequence mode (`pipes` given)
// its embedding: a row of `features`, each member's pooled features
// averaged over the views its series models want, side by side.
struct ChunkOutputs {
  std::vector<std::vector<std::string>> probs;
  Tensor features;
};
// Probabilities as sigmoid(logits), or sigmoid(logits / T) with a
// calibrated checkpoint's temperatures (ich-calibrate).
ChunkOutputs run_chunk(Ensemble& ens, const std::vector<FileInputs>& in, int64_t batch, int64_t C, int64_t S,
                       Device dev, const SeqPipelines* pipes) {
  const bool seq_mode = pipes != nullptr;
  std::vector<std::pair<size_t, size_t>> slices;  // (file in chunk, slice in file)
  for (size_t t = 0; t < in.size(); ++t)
    for (size_t k = 0; k < in[t].inputs.size(); ++k) slices.emplace_back(t, k);
  ChunkOutputs out;
  out.probs.resize(slices.size());
  for (size_t start = 0; start < slices.size(); start += size_t(batch)) {
    const size_t n = std::min(size_t(batch), slices.size() - start);
    Tensor x = Tensor::empty({int64_t(n), C, S, S});
    for (size_t j = 0; j < n; ++j) {
      const std::vector<float>& v = in[slices[start + j].first].inputs[slices[start + j].second];
      std::copy(v.begin(), v.end(), x.data<float>() + j * size_t(C * S * S));
    }
    if (!seq_mode && !ens.single()) {  // several members or views: their mean
      const std::vector<std::array<double, 6>> q = ensemble_probs(ens, x, dev);
      for (size_t j = 0; j < n; ++j)
        for (size_t k = 0; k < 6; ++k) out.probs[start + j].push_back(fmt_double(q[j][k], 6));
      continue;
    }
    // each member's own probabilities (their mean; one member: its own, bit for
    // bit) and, in sequence mode, its embedding from the same feature map
    std::vector<std::array<double, 6>> q(n, std::array<double, 6>{});
    std::vector<Tensor> parts;
    for (size_t m = 0; m < ens.members.size(); ++m) {
      ResNeXt& model = *ens.members[m].model;
      const Tensor fmap = model.features(x.to(dev));
      const std::vector<std::array<double, 6>> qm = probabilities(model.head(fmap), &ens.members[m].meta);
      for (size_t j = 0; j < n; ++j)
        for (size_t k = 0; k < 6; ++k) q[j][k] += qm[j][k] / double(ens.members.size());
      if (seq_mode) parts.push_back(embed_batch(model, x, dev, pipes->views[m], fmap));
    }
    for (size_t j = 0; j < n; ++j)
      for (size_t k = 0; k < 6; ++k) out.probs[start + j].push_back(fmt_double(q[j][k], 6));
    if (!seq_mode) continue;
    const Tensor ph = side_by_side(parts);
    if (!out.features.defined()) out.features = Tensor::empty({int64_t(slices.size()), ph.size(1)});
    std::copy(ph.data<float>(), ph.data<float>() + ph.numel(), out.features.data<float>() + int64_t(start) * ph.size(1));
  }
  return out;
}

// 3. The journal's record of each file of the chunk: "ok", path, then per
// slice its id, six probabilities, instance (four fields) and in sequence
// mode geometry (five); or "error", path, reason.
std::vector<JournalRecord> chunk_records(const std::vector<std::string>& files, const std::vector<int64_t>& todo,
                                         const std::vector<FileInputs>& in, const ChunkOutputs& out, bool seq_mode) {
  std::vector<JournalRecord> records;
  size_t next = 0;
  for (size_t t = 0; t < in.size(); ++t) {
    JournalRecord r{in[t].error.empty() ? "ok" : "error", files[size_t(todo[t])]};
    if (!in[t].error.empty()) r.push_back(in[t].error);
    for (size_t k = 0; k < in[t].ids.size(); ++k, ++next) {
      r.push_back(in[t].ids[k]);
      r.insert(r.end(), out.probs[next].begin(), out.probs[next].end());
      r.insert(r.end(), in[t].refs[k].begin(), in[t].refs[k].end());
      if (seq_mode) r.insert(r.end(), in[t].geometry[k].begin(), in[t].geometry[k].end());
    }
    records.push_back(std::move(r));
  }
  return records;
}

// 4. Every file's record in file order into the report: its slices'
// predictions (and geometry, in sequence mode), or its error.
void collect(const std::vector<std::string>& files, const std::unordered_map<std::string, JournalRecord>& done,
             size_t per_slice, bool seq_mode, PredictReport& rep, std::vector<SliceGeometry>& geometry) {
  for (const std::string& path : files) {
    const JournalRecord& r = done.at(path);
    ++rep.files;
    if (r[0] == "error") {
      ++rep.failed;
      rep.skipped.emplace_back(path, r[2]);
      continue;
    }
    for (size_t k = 2; k < r.size(); k += per_slice, ++rep.slices) {
      SlicePrediction s;
      s.image_id = r[k];
      s.path = path;
      for (size_t j = 0; j < 6; ++j) s.p[j] = r[k + 1 + j];
      s.sop_class_uid = r[k + 7], s.sop_uid = r[k + 8], s.series_uid = r[k + 9];
      s.frame = std::stoi(r[k + 10]);
      rep.predictions.push_back(std::move(s));
      if (seq_mode) geometry.push_back(geometry_of(r[k], &r[k + 11]));
    }
  }
}

// 5. The Kaggle submission format, atomically: ID_<image>_<subtype>,Label.
void write_predictions_csv(const std::string& path, const std::vector<SlicePrediction>& predictions) {
  std::string csv = "ID,Label\n";
  for (const SlicePrediction& s : predictions)
    for (size_t k = 0; k < 6; ++k) csv += s.image_id + "_" + kSubtypes[k] + "," + s.p[k] + "\n";
  write_file_atomic(path, csv);
}

}  // namespace

PredictReport predict_dicoms(const PredictOptions& o, const std::function<void(int64_t, int64_t)>& progress) {
  PredictModels m = load_predict_models(o);
  return predict_dicoms(o, m, progress);
}

Tensor context_input(const std::vector<std::string>& files, const std::string& image_id, const CheckpointMeta& meta,
                     bool any_modality) {
  ICH_CHECK(meta.context > 0, "context_input: the checkpoint reads one slice (no --context)");
  const SliceWindowing how = windowing_for(meta, any_modality);
  const int64_t S = meta.size, C = channels_of(how) * (2 * meta.context + 1);
  const ContextPlan plan = plan_context(files, int(meta.context));
  const auto file = plan.file_of.find(image_id);
  ICH_CHECK(file != plan.file_of.end(), "slice ", image_id, " is in none of the ", files.size(), " files");
  std::vector<FileInputs> in = window_chunk({file->second}, {0}, how, S, false, [](int64_t) {});
  ICH_CHECK(in[0].error.empty(), file->second, ": ", in[0].error);
  add_context(plan, in, how, S);
  for (size_t k = 0; k < in[0].ids.size(); ++k)
    if (in[0].ids[k] == image_id) return Tensor::from_data(in[0].inputs[k].data(), {1, C, S, S});
  throw Error("slice " + image_id + " is not in " + file->second + " when read again");
}

namespace {

// What a resumed run, and every shard of a merge, must share with this one.
JournalRecord run_settings(const PredictOptions& o, const PredictModels& models, int shard) {
  JournalRecord settings{"ich-predict 2", "checkpoint=" + fs::weakly_canonical(o.checkpoint).string(),
                         "checkpoint_bytes=" + models.slice_identity,
                         "input=" + fs::weakly_canonical(o.input).string(),
                         std::string("any_modality=") + (o.any_modality ? "1" : "0"),
                         "chunk=" + std::to_string(o.chunk)};
  for (size_t k = 0; k < o.sequence.size(); ++k)
    settings.push_back("sequence=" + fs::weakly_canonical(o.sequence[k]).string() + " " + models.seq_identity[k]);
  // An ensemble's other members, the views and the shard only when given:
  // a plain run's settings stay as they were
  for (const std::string& p : o.ensemble)
    settings.push_back("ensemble=" + fs::weakly_canonical(p).string() + " " + checkpoint_identity(p));
  if (parse_tta(o.tta) != Tta::None) settings.push_back(std::string("tta=") + tta_name(parse_tta(o.tta)));
  const int shards = o.merge.empty() ? o.shards : int(o.merge.size());
  if (shards > 1) settings.push_back("shard=" + std::to_string(shard) + "/" + std::to_string(shards));
  return settings;
}

// Per slice in the journal: id, six probabilities, the instance (four
// fields), and in sequence mode the five geometry fields.
size_t slice_fields(bool seq_mode) { return seq_mode ? 16 : 11; }

std::unordered_map<std::string, JournalRecord> records_of(const Journal& journal, size_t per_slice) {
  std::unordered_map<std::string, JournalRecord> done;
  for (const JournalRecord& r : journal.records()) {
    ICH_CHECK(r.size() >= 3 && (r[0] == "error" ? r.size() == 3 : r[0] == "ok" && (r.size() - 2) % per_slice == 0),
              journal.path(), ": a malformed record");
    done[r[1]] = r;
  }
  return done;
}

// Sequence mode: the series models' probabilities replace each slice's, and
// studies.csv gets one row per series.
void apply_context(const PredictOptions& o, const PredictModels& models, const Tensor& features,
                   const std::vector<SliceGeometry>& geometry, PredictReport& rep) {
  const std::vector<OrderedSlice> order = order_slices(geometry);
  const std::vector<std::array<double, 6>> q = pipeline_probs(models.pipes, models.seqs, features, order, models.dev);
  for (size_t i = 0; i < q.size(); ++i)
    for (size_t k = 0; k < 6; ++k) rep.predictions[i].p[k] = fmt_double(q[i][k], 6);
  const std::vector<StudySummary> studies = summarise_studies(order, q);
  rep.series = int64_t(studies.size());
  write_studies_csv(o.studies.empty() ? (fs::path(o.out).parent_path() / "studies.csv").string() : o.studies, studies);
}

// --merge: the shards' journals (and features) joined into the output an
// unsharded run writes: the same rows in the same order, and in sequence
// mode the series models over every series whole.
PredictReport merge_shards(const PredictOptions& o, const PredictModels& models) {
  const int n = int(o.merge.size());
  ICH_CHECK(n >= 2, "--merge: give every shard's output (at least two)");
  const std::vector<std::string> all = list_files(o.input);
  const bool seq_mode = !o.sequence.empty();
  const size_t per_slice = slice_fields(seq_mode);
  std::unordered_map<std::string, JournalRecord> done;
  std::vector<Tensor> features(static_cast<size_t>(n));
  std::vector<bool> seen(static_cast<size_t>(n), false);
  const int K = int(models.slice.meta.context);
  const ContextPlan plan = K > 0 ? plan_context(all, K) : ContextPlan();  // the shards' series, as they cut them
  std::unordered_map<std::string, size_t> owner;  // file -> its shard
  for (const std::string& out : o.merge) {
    const std::string jp = out + ".journal";
    ICH_CHECK(fs::exists(jp), "--merge ", out, ": no journal ", jp, " (is it a shard's --out?)");
    std::string first;
    std::ifstream in(jp);
    std::getline(in, first);
    JournalRecord head;
    ICH_CHECK(parse_journal_line(first, head), jp, ": its settings line is damaged");
    int k = -1;
    PredictOptions as_run = o;  // the shard's chunk size (its journal and features are cut by it)
    for (const std::string& f : head) {
      if (f.rfind("shard=", 0) == 0) k = std::atoi(f.c_str() + 6);
      if (f.rfind("chunk=", 0) == 0) as_run.chunk = std::atoll(f.c_str() + 6);
    }
    ICH_CHECK(k >= 0 && k < n, jp, ": not a shard of ", n, " (ich-predict --shard k/", n, ")");
    ICH_CHECK(!seen[size_t(k)], "--merge: shard ", k, "/", n, " given twice");
    seen[size_t(k)] = true;
    const Journal journal(jp, run_settings(as_run, models, k), true);  // refuses other settings, naming them
    const std::unordered_map<std::string, JournalRecord> d = records_of(journal, per_slice);
    const RunFiles rf = run_files(all, plan, k, n);
    const std::vector<std::string>& mine = rf.files;
    for (const std::string& f : mine) owner[f] = size_t(k);
    int64_t have = 0;
    for (const std::string& f : mine) have += d.count(f);
    ICH_CHECK(have == int64_t(mine.size()), "--merge: shard ", k, "/", n, " (", out, ") has ", have, " of its ",
              mine.size(), " files: run it again with --resume to finish it");
    done.insert(d.begin(), d.end());
    if (seq_mode) features[size_t(k)] = features_in_file_order(rf, d, per_slice, out + ".features", as_run.chunk);
  }
  PredictReport rep;
  std::vector<SliceGeometry> geometry;
  collect(all, done, per_slice, seq_mode, rep, geometry);
  if (seq_mode && !rep.predictions.empty()) {
    // each shard's rows in its file order, interleaved back into the archive's
    const int64_t F = features[0].size(1);
    Tensor joined = Tensor::empty({int64_t(rep.predictions.size()), F});
    std::vector<int64_t> next(static_cast<size_t>(n), 0);
    int64_t row = 0;
    for (size_t i = 0; i < all.size(); ++i) {
      const JournalRecord& r = done.at(all[i]);
      if (r[0] != "ok") continue;
      const size_t k = owner.at(all[i]);
      for (size_t s = 2; s < r.size(); s += per_slice, ++row, ++next[k])
        std::copy(features[k].data<float>() + next[k] * F, features[k].data<float>() + (next[k] + 1) * F,
                  joined.data<float>() + row * F);
    }
    apply_context(o, models, joined, geometry, rep);
  }
  write_predictions_csv(o.out, rep.predictions);
  return rep;
}

// A killed run's half-written outputs ("<name>.tmp.<pid>", io/atomic_file.h):
// the submission, studies.csv, the feature chunks.
void remove_leftovers(const PredictOptions& o) {
  const auto clear = [](const fs::path& file) {
    const fs::path dir = file.parent_path().empty() ? fs::path(".") : file.parent_path();
    if (fs::is_directory(dir)) remove_atomic_leftovers(dir.string(), {file.filename().string()});
  };
  clear(o.out);
  clear(o.studies.empty() ? fs::path(o.out).parent_path() / "studies.csv" : fs::path(o.studies));
  if (fs::is_directory(o.out + ".features")) remove_atomic_leftovers(o.out + ".features", {".npy"});
}

}  // namespace

PredictReport predict_dicoms(const PredictOptions& o, PredictModels& models,
                             const std::function<void(int64_t, int64_t)>& progress) {
  ICH_CHECK(o.batch >= 1 && o.chunk >= 1, "batch ", o.batch, " and chunk ", o.chunk, " must be positive");
  ICH_CHECK(models.seqs.size() == o.sequence.size(), "predict_dicoms: ", models.seqs.size(),
            " sequence models loaded for ", o.sequence.size(), " --sequence checkpoints");
  ICH_CHECK(o.shards >= 1 && o.shard >= 0 && o.shard < o.shards, "--shard ", o.shard, "/", o.shards,
            ": expected k/n with 0 <= k < n");
  ICH_CHECK(o.merge.empty() || (o.shards == 1 && !o.resume), "--merge joins finished shards: not with --shard or --resume");
  if (const fs::path dir = fs::path(o.out).parent_path(); !dir.empty()) fs::create_directories(dir);
  remove_leftovers(o);
  if (!o.merge.empty()) return merge_shards(o, models);
  const Device dev = models.dev;
  LoadedCheckpoint& c = models.slice;
  c.model->eval();
  const SliceWindowing how = windowing_for(c.meta, o.any_modality);
  const std::vector<std::string> all = list_files(o.input);
  const int64_t S = c.meta.size;
  // --context: the headers of the archive read first, the files in series
  // order for the chunks (the output keeps the sorted order), shards by series
  const ContextPlan plan = c.meta.context > 0 ? plan_context(all, int(c.meta.context)) : ContextPlan();
  const RunFiles rf = run_files(all, plan, o.shard, o.shards);
  const std::vector<std::string>& files = rf.files;
  const std::vector<std::string>& work = rf.work;
  const int64_t C_in = channels_of(how) * (2 * c.meta.context + 1);
  const bool seq_mode = !o.sequence.empty();
  const std::string feature_dir = o.out + ".features";
  if (seq_mode) fs::create_directories(feature_dir);
  const size_t per_slice = slice_fields(seq_mode);
  Journal journal(o.out + ".journal", run_settings(o, models, o.shard), o.resume);
  // path -> its record (chunk_records())
  std::unordered_map<std::string, JournalRecord> done = records_of(journal, per_slice);
  PredictReport rep;
  for (const std::string& f : files) rep.resumed += done.count(f);
  NoGradGuard ng;
  const int64_t n_files = int64_t(files.size());
  auto recorded = [&](int64_t i) { return done.count(work[size_t(i)]) > 0; };
  for_each_pending_chunk(n_files, o.chunk, recorded, [&](int64_t base, const std::vector<int64_t>& todo) {
    std::vector<FileInputs> in =
        window_chunk(work, todo, how, S, seq_mode, [&](int64_t d) { if (progress) progress(base + d, n_files); });
    if (plan.K > 0) add_context(plan, in, how, S);
    const ChunkOutputs out = run_chunk(models.ensemble, in, o.batch, C_in, S, dev, seq_mode ? &models.pipes : nullptr);
    // the chunk's features land before its record: a recorded chunk always has them
    if (seq_mode && out.features.defined()) write_npy(feature_dir + "/" + std::to_string(base) + ".npy", out.features);
    const std::vector<JournalRecord> records = chunk_records(work, todo, in, out, seq_mode);
    journal.append(records);
    for (const JournalRecord& r : records) done[r[1]] = r;
  });
  if (progress) progress(n_files, n_files);
  std::vector<SliceGeometry> geometry;
  collect(files, done, per_slice, seq_mode, rep, geometry);
  if (seq_mode && !rep.predictions.empty())
    apply_context(o, models, features_in_file_order(rf, done, per_slice, feature_dir, o.chunk), geometry, rep);
  write_predictions_csv(o.out, rep.predictions);
  return rep;
}

}  // namespace ich
