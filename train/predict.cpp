#include "train/predict.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <unordered_map>

#include <zlib.h>

#include "data/augment.h"
#include "data/csv.h"
#include "data/journal.h"
#include "data/parallel.h"
#include "data/phantom.h"
#include "data/window_run.h"
#include "engine/autograd.h"
#include "engine/device_select.h"
#include "engine/error.h"
#include "engine/ops.h"
#include "train/checkpoint.h"
#include "weights/atomic_file.h"

namespace ich {

namespace fs = std::filesystem;

namespace {

// What identifies a checkpoint for a resumed run: its bytes.
std::string checkpoint_identity(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  ICH_CHECK(in.good(), "cannot read ", path);
  std::vector<char> buf(1 << 20);
  uint64_t size = 0;
  uLong crc = crc32(0L, Z_NULL, 0);
  while (in) {
    in.read(buf.data(), std::streamsize(buf.size()));
    const size_t got = size_t(in.gcount());
    crc = crc32(crc, reinterpret_cast<const Bytef*>(buf.data()), uInt(got));
    size += got;
  }
  return std::to_string(size) + " bytes, crc32 " + std::to_string(crc);
}

// One slice's input and id, or the file's error.
struct FileInputs {
  std::string error;
  std::vector<std::string> ids;
  std::vector<std::vector<float>> inputs;  // C x S x S each
};

}  // namespace

PredictReport predict_dicoms(const PredictOptions& o, const std::function<void(int64_t, int64_t)>& progress) {
  ICH_CHECK(o.batch >= 1 && o.chunk >= 1, "batch ", o.batch, " and chunk ", o.chunk, " must be positive");
  const Device dev = pick_device(o.device);
  LoadedCheckpoint c = load_checkpoint(o.checkpoint);
  c.model->to(dev);
  c.model->eval();
  SliceWindowing how;
  how.windows = parse_windows(c.meta.windows);
  how.any_modality = o.any_modality;
  const std::vector<std::string> files = list_files(o.input);
  const int64_t S = c.meta.size, C = int64_t(how.windows.empty() ? 1 : how.windows.size());
  const JournalRecord settings{"ich-predict 1", "checkpoint=" + fs::weakly_canonical(o.checkpoint).string(),
                               "checkpoint_bytes=" + checkpoint_identity(o.checkpoint),
                               "input=" + fs::weakly_canonical(o.input).string(),
                               std::string("any_modality=") + (o.any_modality ? "1" : "0"),
                               "chunk=" + std::to_string(o.chunk)};
  Journal journal(o.out + ".journal", settings, o.resume);
  // path -> record: "ok", path, then (id, six probabilities) per slice; or
  // "error", path, reason.
  std::unordered_map<std::string, JournalRecord> done;
  for (const JournalRecord& r : journal.records()) {
    ICH_CHECK(r.size() >= 3 && (r[0] == "error" ? r.size() == 3 : r[0] == "ok" && (r.size() - 2) % 7 == 0),
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
    for (size_t start = 0; start < slices.size(); start += size_t(o.batch)) {
      const size_t n = std::min(size_t(o.batch), slices.size() - start);
      Tensor x = Tensor::empty({int64_t(n), C, S, S});
      for (size_t j = 0; j < n; ++j) {
        const std::vector<float>& v = in[slices[start + j].first].inputs[slices[start + j].second];
        std::copy(v.begin(), v.end(), x.data<float>() + j * size_t(C * S * S));
      }
      const std::vector<double> p = sigmoid((*c.model)(x.to(dev))).to_vector();
      for (size_t j = 0; j < n; ++j)
        for (size_t k = 0; k < 6; ++k) probs[start + j].push_back(fmt_double(p[j * 6 + k], 6));
    }
    std::vector<JournalRecord> records;
    size_t next = 0;
    for (size_t t = 0; t < in.size(); ++t) {
      const std::string& path = files[size_t(todo[t])];
      JournalRecord r{in[t].error.empty() ? "ok" : "error", path};
      if (!in[t].error.empty()) r.push_back(in[t].error);
      for (size_t k = 0; k < in[t].ids.size(); ++k, ++next) {
        r.push_back(in[t].ids[k]);
        r.insert(r.end(), probs[next].begin(), probs[next].end());
      }
      records.push_back(r);
      done[path] = std::move(r);
    }
    journal.append(records);
  });
  if (progress) progress(n_files, n_files);
  std::string csv = "ID,Label\n";
  for (const std::string& path : files) {
    const JournalRecord& r = done.at(path);
    ++rep.files;
    if (r[0] == "error") {
      ++rep.failed;
      rep.skipped.emplace_back(path, r[2]);
      continue;
    }
    for (size_t k = 2; k < r.size(); k += 7, ++rep.slices)
      for (size_t s = 0; s < 6; ++s) csv += r[k] + "_" + kSubtypes[s] + "," + r[k + 1 + s] + "\n";
  }
  write_file_atomic(o.out, csv);
  return rep;
}

}  // namespace ich
