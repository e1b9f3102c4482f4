#include "infer/predict.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <unordered_map>

#include "data/augment.h"
#include "data/labels.h"
#include "data/series.h"
#include "dicom/window_job.h"
#include "engine/autograd.h"
#include "engine/device_select.h"
#include "engine/error.h"
#include "engine/ops.h"
#include "infer/apply.h"
#include "io/atomic_file.h"
#include "io/crc32.h"
#include "io/csv.h"
#include "io/journal.h"
#include "io/npy.h"
#include "io/parallel.h"
#include "train/checkpoint.h"

namespace ich {

namespace fs = std::filesystem;

namespace {

// One slice's input and id, or the file's error.
struct FileInputs {
  std::string error;
  std::vector<std::string> ids;
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

// The mirror image of a batch (B, C, S, S): columns reversed.
Tensor mirrored(const Tensor& x) {
  Tensor m = x.clone();
  const int64_t S = x.size(3), rows = m.numel() / S;
  float* p = m.data<float>();
  for (int64_t r = 0; r < rows; ++r) std::reverse(p + r * S, p + (r + 1) * S);
  return m;
}

// The sequence models' mean probabilities for every recorded slice, in file
// order: the features of each chunk (OUT.features/<first file>.npy) joined
// in file order, the slices ordered into series by their geometry.
std::vector<std::array<double, 6>> with_context(const PredictOptions& o, const std::vector<std::string>& files,
                                                const std::unordered_map<std::string, JournalRecord>& done,
                                                size_t per_slice, const std::string& feature_dir,
                                                const std::vector<SliceGeometry>& geometry,
                                                const std::vector<LoadedSeqCheckpoint>& seqs, Device dev) {
  const int64_t n_files = int64_t(files.size());
  std::vector<Tensor> parts;
  int64_t rows = 0;
  for (int64_t base = 0; base < n_files; base += o.chunk) {
    int64_t in_chunk = 0;
    for (int64_t i = base; i < std::min(n_files, base + o.chunk); ++i) {
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
  const int64_t F = parts.front().size(1);
  Tensor all = Tensor::empty({rows, F});
  int64_t at = 0;
  for (const Tensor& t : parts) {
    std::copy(t.data<float>(), t.data<float>() + t.numel(), all.data<float>() + at * F);
    at += t.size(0);
  }
  const std::vector<OrderedSlice> order = order_slices(geometry);
  std::vector<std::array<double, 6>> q(geometry.size());
  for (size_t m = 0; m < seqs.size(); ++m) {
    ICH_CHECK(seqs[m].model->config().features == F, "--sequence ", o.sequence[m], " reads ",
              seqs[m].model->config().features, " features per slice; ", o.checkpoint, " gives ", F);
    const std::vector<std::array<double, 6>> pm = predict_with_context(seqs[m], all, order, dev);
    for (size_t i = 0; i < q.size(); ++i)
      for (size_t k = 0; k < 6; ++k) q[i][k] += pm[i][k] / double(seqs.size());
  }
  return q;
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
  ICH_CHECK(m.slice.meta.context == 0, o.checkpoint, " reads ", m.slice.meta.context,
            " neighbouring slice(s) a side (ich-train --context); ich-predict feeds slices one at a time: window the "
            "files with ich-window and use ich-eval or ich-embed, which read neighbours");
  m.slice.model->to(m.dev);
  m.slice.model->eval();
  m.slice_identity = checkpoint_identity(o.checkpoint);
  for (const std::string& path : o.sequence) {
    m.seqs.push_back(load_seq_checkpoint(path));
    m.seqs.back().model->to(m.dev);
    ICH_CHECK(m.seqs.back().meta.flip == m.seqs.front().meta.flip, "--sequence ", path,
              ": trained on embeddings made otherwise (mirror averaging) than ", o.sequence.front());
    m.seq_identity.push_back(checkpoint_identity(path));
  }
  return m;
}

PredictReport predict_dicoms(const PredictOptions& o, const std::function<void(int64_t, int64_t)>& progress) {
  PredictModels m = load_predict_models(o);
  return predict_dicoms(o, m, progress);
}

PredictReport predict_dicoms(const PredictOptions& o, PredictModels& models,
                             const std::function<void(int64_t, int64_t)>& progress) {
  ICH_CHECK(o.batch >= 1 && o.chunk >= 1, "batch ", o.batch, " and chunk ", o.chunk, " must be positive");
  ICH_CHECK(models.seqs.size() == o.sequence.size(), "predict_dicoms: ", models.seqs.size(),
            " sequence models loaded for ", o.sequence.size(), " --sequence checkpoints");
  const Device dev = models.dev;
  LoadedCheckpoint& c = models.slice;
  const std::vector<LoadedSeqCheckpoint>& seqs = models.seqs;
  c.model->eval();
  SliceWindowing how;
  how.windows = parse_windows(c.meta.windows);
  how.any_modality = o.any_modality;
  const std::vector<std::string> files = list_files(o.input);
  const int64_t S = c.meta.size, C = int64_t(how.windows.empty() ? 1 : how.windows.size());
  JournalRecord settings{"ich-predict 1", "checkpoint=" + fs::weakly_canonical(o.checkpoint).string(),
                         "checkpoint_bytes=" + models.slice_identity,
                         "input=" + fs::weakly_canonical(o.input).string(),
                         std::string("any_modality=") + (o.any_modality ? "1" : "0"),
                         "chunk=" + std::to_string(o.chunk)};
  // Sequence mode: what a resumed run must share with this one.
  const bool seq_mode = !o.sequence.empty();
  for (size_t k = 0; k < o.sequence.size(); ++k)
    settings.push_back("sequence=" + fs::weakly_canonical(o.sequence[k]).string() + " " + models.seq_identity[k]);
  const bool flip = seq_mode && seqs.front().meta.flip;
  const std::string feature_dir = o.out + ".features";
  if (seq_mode) fs::create_directories(feature_dir);
  // Per slice in the journal: id, six probabilities, and in sequence mode the five geometry fields.
  const size_t per_slice = seq_mode ? 12 : 7;
  Journal journal(o.out + ".journal", settings, o.resume);
  // path -> record: "ok", path, then (id, six probabilities) per slice; or
  // "error", path, reason.
  std::unordered_map<std::string, JournalRecord> done;
  for (const JournalRecord& r : journal.records()) {
    ICH_CHECK(r.size() >= 3 && (r[0] == "error" ? r.size() == 3 : r[0] == "ok" && (r.size() - 2) % per_slice == 0),
              journal.path(), ": a malformed record");
    done[r[1]] = r;
  }
  PredictReport rep;
  for (const std::string& f : files) rep.resumed += done.count(f);
  NoGradGuard ng;
  const int64_t n_files = int64_t(files.size());
  auto recorded = [&](int64_t i) { return done.count(files[size_t(i)]) > 0; };
  for_each_pending_chunk(n_files, o.chunk, recorded, [&](int64_t base, const std::vector<int64_t>& todo) {
    std::vector<FileInputs> in(todo.size());
    run_parallel(
        int64_t(todo.size()), 0, [&](int64_t d, int64_t) { if (progress) progress(base + d, n_files); },
        [&](int64_t t) {
          thread_local WindowScratch scratch;  // the direct reader's buffers, kept between files
          FileInputs& r = in[size_t(t)];
          try {
            window_file(files[size_t(todo[size_t(t)])], how, scratch, [&](const WindowedFile& f) {
              AugmentOptions ao;
              ao.size = int(S);
              ao.augment = false;
              Generator unused(0);
              r.inputs.emplace_back(size_t(C * S * S));
              augment_slice(f.pixels, f.h, f.w, int(C), ao, unused, r.inputs.back().data());
              r.ids.push_back(image_id_for(f.slice));
              if (seq_mode) r.geometry.push_back(geometry_fields(f.slice));
            });
          } catch (const std::exception& e) {
            r = FileInputs();
            r.error = e.what();
          }
        });
    // Every slice of the chunk in file order, through the model in batches.
    std::vector<std::pair<size_t, size_t>> slices;  // (file in chunk, slice in file)
    for (size_t t = 0; t < in.size(); ++t)
      for (size_t k = 0; k < in[t].inputs.size(); ++k) slices.emplace_back(t, k);
    std::vector<std::vector<std::string>> probs(slices.size());
    Tensor features;  // sequence mode: (slices of the chunk, F), pooled and mirror-averaged as the models want
    for (size_t start = 0; start < slices.size(); start += size_t(o.batch)) {
      const size_t n = std::min(size_t(o.batch), slices.size() - start);
      Tensor x = Tensor::empty({int64_t(n), C, S, S});
      for (size_t j = 0; j < n; ++j) {
        const std::vector<float>& v = in[slices[start + j].first].inputs[slices[start + j].second];
        std::copy(v.begin(), v.end(), x.data<float>() + j * size_t(C * S * S));
      }
      const Tensor fmap = c.model->features(x.to(dev));
      const std::vector<double> p = sigmoid(c.model->head(fmap)).to_vector();
      for (size_t j = 0; j < n; ++j)
        for (size_t k = 0; k < 6; ++k) probs[start + j].push_back(fmt_double(p[j * 6 + k], 6));
      if (!seq_mode) continue;
      Tensor pooled = flatten(adaptive_avg_pool2d(fmap));
      if (flip) pooled = scale(add(pooled, flatten(adaptive_avg_pool2d(c.model->features(mirrored(x).to(dev))))), 0.5);
      const Tensor ph = pooled.to(Device::cpu()).contiguous();
      if (!features.defined()) features = Tensor::empty({int64_t(slices.size()), ph.size(1)});
      std::copy(ph.data<float>(), ph.data<float>() + ph.numel(), features.data<float>() + int64_t(start) * ph.size(1));
    }
    // the chunk's features land before its record: a recorded chunk always has them
    if (seq_mode && features.defined()) write_npy(feature_dir + "/" + std::to_string(base) + ".npy", features);
    std::vector<JournalRecord> records;
    size_t next = 0;
    for (size_t t = 0; t < in.size(); ++t) {
      const std::string& path = files[size_t(todo[t])];
      JournalRecord r{in[t].error.empty() ? "ok" : "error", path};
      if (!in[t].error.empty()) r.push_back(in[t].error);
      for (size_t k = 0; k < in[t].ids.size(); ++k, ++next) {
        r.push_back(in[t].ids[k]);
        r.insert(r.end(), probs[next].begin(), probs[next].end());
        if (seq_mode) r.insert(r.end(), in[t].geometry[k].begin(), in[t].geometry[k].end());
      }
      records.push_back(r);
      done[path] = std::move(r);
    }
    journal.append(records);
  });
  if (progress) progress(n_files, n_files);
  // Every slice in file order: its id and the probabilities to write.
  std::vector<std::string> ids;
  std::vector<std::array<std::string, 6>> written;
  std::vector<SliceGeometry> geometry;
  for (const std::string& path : files) {
    const JournalRecord& r = done.at(path);
    ++rep.files;
    if (r[0] == "error") {
      ++rep.failed;
      rep.skipped.emplace_back(path, r[2]);
      continue;
    }
    for (size_t k = 2; k < r.size(); k += per_slice, ++rep.slices) {
      ids.push_back(r[k]);
      std::array<std::string, 6> p;
      for (size_t s = 0; s < 6; ++s) p[s] = r[k + 1 + s];
      written.push_back(p);
      if (seq_mode) geometry.push_back(geometry_of(r[k], &r[k + 7]));
    }
  }
  if (seq_mode && !ids.empty()) {
    const std::vector<std::array<double, 6>> q = with_context(o, files, done, per_slice, feature_dir, geometry, seqs, dev);
    for (size_t i = 0; i < q.size(); ++i)
      for (size_t k = 0; k < 6; ++k) written[i][k] = fmt_double(q[i][k], 6);
    const std::vector<StudySummary> studies = summarise_studies(order_slices(geometry), q);
    rep.series = int64_t(studies.size());
    write_studies_csv(o.studies.empty() ? (fs::path(o.out).parent_path() / "studies.csv").string() : o.studies,
                      studies);
  }
  std::string csv = "ID,Label\n";
  for (size_t i = 0; i < ids.size(); ++i)
    for (size_t s = 0; s < 6; ++s) csv += ids[i] + "_" + kSubtypes[s] + "," + written[i][s] + "\n";
  write_file_atomic(o.out, csv);
  return rep;
}

}  // namespace ich
