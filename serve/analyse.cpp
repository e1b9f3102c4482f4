// analyse.cpp: the processing stage of ich-serve (analyse.h).
#include "serve/analyse.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>

#include "data/augment.h"
#include "data/labels.h"
#include "dicom/window.h"
#include "dicom/window_job.h"
#include "engine/device_select.h"
#include "engine/error.h"
#include "infer/gradcam.h"
#include "infer/predict.h"
#include "io/csv.h"
#include "report/text.h"

namespace ich {

namespace fs = std::filesystem;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

struct Instance {
  SliceRef ref;
  int frames = 1;
  std::string path;
};

Instance read_instance(const std::string& path) {
  DcmFileFormat ff;
  const OFCondition c = ff.loadFile(path.c_str(), EXS_Unknown, EGL_noChange, 256);
  ICH_CHECK(c.good(), path, ": ", c.text());
  DcmDataset& d = *ff.getDataset();
  Instance in;
  in.path = path;
  OFString v;
  if (d.findAndGetOFString(DCM_SOPClassUID, v).good()) in.ref.sop_class_uid = v.c_str();
  if (d.findAndGetOFString(DCM_SOPInstanceUID, v).good()) in.ref.sop_uid = v.c_str();
  if (d.findAndGetOFString(DCM_SeriesInstanceUID, v).good()) in.ref.series_uid = v.c_str();
  Sint32 frames = 1;
  if (d.findAndGetSint32(DCM_NumberOfFrames, frames).good() && frames > 1) in.frames = int(frames);
  return in;
}

// Nearest-neighbour enlargement by an integer factor, so that a 128-pixel
// model input still makes a key image whose caption can be read.
std::vector<uint8_t> enlarged(const std::vector<uint8_t>& rgb, int w, int h, int k) {
  std::vector<uint8_t> out(size_t(w * k) * size_t(h * k) * 3);
  for (int y = 0; y < h * k; ++y)
    for (int x = 0; x < w * k; ++x)
      for (int c = 0; c < 3; ++c) out[(size_t(y) * size_t(w * k) + size_t(x)) * 3 + size_t(c)] = rgb[(size_t(y / k) * size_t(w) + size_t(x / k)) * 3 + size_t(c)];
  return out;
}

const char* kShort[6] = {"EDH", "IPH", "IVH", "SAH", "SDH", "any"};

}  // namespace

StudyAnalyser::StudyAnalyser(AnalyseOptions o) : o_(std::move(o)) {
  PredictOptions po;
  po.checkpoint = o_.checkpoint;
  po.sequence = o_.sequence;
  po.device = o_.device;
  models_ = load_predict_models(po);  // refuses a --context checkpoint, as ich-predict does
  name_ = "ich " + models_.slice.meta.arch + " slice model" + (o_.sequence.empty() ? "" : " + series model");
  version_ = fs::path(o_.checkpoint).filename().string() + " (" + models_.slice_identity + ")";
  for (size_t k = 0; k < o_.sequence.size(); ++k)
    version_ += "; " + fs::path(o_.sequence[k]).filename().string() + " (" + models_.seq_identity[k] + ")";
}

Analysis StudyAnalyser::analyse(const StudyState& s, const std::string& dir) {
  Analysis a;
  const std::string round_dir = dir + "/round" + std::to_string(s.round);
  fs::create_directories(round_dir);
  // 1. ich-predict on the study's instances.
  auto t0 = std::chrono::steady_clock::now();
  PredictOptions po;
  po.checkpoint = o_.checkpoint;
  po.input = dir + "/instances";
  po.out = round_dir + "/predictions.csv";
  po.device = o_.device;
  po.batch = o_.batch;
  po.sequence = o_.sequence;
  po.studies = round_dir + "/studies.csv";
  po.resume = fs::exists(po.out + ".journal");
  const PredictReport rep = predict_dicoms(po, models_);
  a.predict_s = seconds_since(t0);
  a.files = rep.files;
  a.slices = rep.slices;
  StudyFindings& f = a.findings;
  for (const auto& [path, why] : rep.skipped) f.unreadable.push_back(fs::path(path).filename().string() + ": " + why);
  for (const std::string& r : s.rejected) f.unreadable.push_back(r);
  // 2. Per slice: its probabilities (as written) and its instance.
  std::map<std::string, std::array<std::string, 6>> probs;
  const CsvTable t = read_csv(po.out);
  for (const auto& row : t.rows) {
    ICH_CHECK(row.size() == 2, po.out, ": a row without two fields");
    const size_t us = row[0].rfind('_');
    ICH_CHECK(us != std::string::npos, po.out, ": bad ID ", row[0]);
    const std::string id = row[0].substr(0, us), sub = row[0].substr(us + 1);
    const auto k = std::find(kSubtypes.begin(), kSubtypes.end(), sub);
    ICH_CHECK(k != kSubtypes.end(), po.out, ": unknown label ", sub);
    probs[id][size_t(k - kSubtypes.begin())] = row[1];
  }
  std::map<std::string, std::pair<Instance, int>> slice_of;  // id -> instance, frame (0: single-frame)
  for (const std::string& path : list_files(po.input)) {
    Instance in;
    try {
      in = read_instance(path);
    } catch (const std::exception&) {
      continue;  // reported by ich-predict already
    }
    for (int fr = 1; fr <= in.frames; ++fr) {
      const std::string id = in.frames > 1 ? in.ref.sop_uid + "_f" + std::to_string(fr) : in.ref.sop_uid;
      if (!probs.count(id)) continue;
      slice_of[id] = {in, in.frames > 1 ? fr : 0};
      SliceRef r = in.ref;
      if (fr == 1) f.evidence.push_back(r);
    }
    if (f.header.values.empty() && slice_of.size() > 0) f.header = read_study_header(path);
  }
  ICH_CHECK(!probs.empty(), "study ", s.study_uid, ": no slice could be read (", f.unreadable.size(),
            " instances not read)");
  // 3. The study's highest probability per label; the finding at the threshold.
  std::array<double, 6> best;
  best.fill(-1);
  for (const auto& [id, p] : probs)
    for (size_t k = 0; k < 6; ++k)
      if (std::stod(p[k]) > best[k]) best[k] = std::stod(p[k]), f.p[k] = p[k];
  f.threshold = fmt_double(o_.threshold, 6);
  f.present = best[5] >= o_.threshold;
  f.study_uid = s.study_uid;
  f.algorithm_name = name_;
  f.algorithm_version = version_;
  f.station_aet = o_.aet;
  f.observer_uid = o_.observer_uid;
  f.round = s.round;
  // 4. Key slices: the highest p(any), brain window under the Grad-CAM heatmap.
  t0 = std::chrono::steady_clock::now();
  std::vector<std::pair<double, std::string>> ranked;
  for (const auto& [id, p] : probs)
    if (slice_of.count(id)) ranked.emplace_back(-std::stod(p[5]), id);
  std::sort(ranked.begin(), ranked.end());
  SliceWindowing how;
  how.windows = parse_windows(models_.slice.meta.windows);
  const int64_t S = models_.slice.meta.size, C = int64_t(how.windows.empty() ? 1 : how.windows.size());
  for (size_t r = 0; r < ranked.size() && int(r) < o_.key_images; ++r) {
    const auto& [in, frame] = slice_of.at(ranked[r].second);
    KeyImage key;
    key.source = in.ref;
    key.source.frame = frame;
    key.p = probs.at(ranked[r].second);
    Tensor x = Tensor::empty({1, C, S, S});
    bool found = false;
    WindowScratch scratch;
    window_file(in.path, how, scratch, [&](const WindowedFile& wf) {
      if (found || (frame > 0 && wf.slice.frame != frame)) return;
      AugmentOptions ao;
      ao.size = int(S);
      ao.augment = false;
      Generator unused(0);
      augment_slice(wf.pixels, wf.h, wf.w, int(C), ao, unused, x.data<float>());
      found = true;
    });
    ICH_CHECK(found, in.path, ": frame ", frame, " not found again for its key image");
    const std::vector<uint8_t> rgb = cam_overlay(x, grad_cam(*models_.slice.model, x.to(models_.dev), 5).heat);
    const int k = std::max(1, int((256 + S - 1) / S));
    key.w = key.h = int(S) * k;
    key.rgb = enlarged(rgb, int(S), int(S), k);
    // Three caption lines that fit 256 pixels: p(any), then the subtypes in two rows.
    std::string line2, line3;
    for (int j = 0; j < 5; ++j) (j < 3 ? line2 : line3) += std::string(j % 3 ? "  " : "") + kShort[j] + " " + key.p[size_t(j)].substr(0, 5);
    const double size = std::max(9.0, key.w / 28.0);
    draw_captions(key.rgb, key.w, key.h,
                  {{4, 3, "Key image " + std::to_string(r + 1) + ": p(any) " + key.p[5], {255, 255, 0}, size * 1.2, true},
                   {4, int(4 + size * 1.6), line2, {255, 255, 255}, size, false},
                   {4, int(4 + size * 2.9), line3, {255, 255, 255}, size, false},
                   {4, key.h - int(size * 1.6), "AI result - NOT FOR DIAGNOSTIC USE", {255, 80, 80}, size, true}});
    a.keys.push_back(std::move(key));
  }
  a.key_images_s = seconds_since(t0);
  // 5. The SR and the key images.
  t0 = std::chrono::steady_clock::now();
  a.written = write_study_results(f, a.keys, round_dir + "/results");
  a.write_s = seconds_since(t0);
  return a;
}

}  // namespace ich
