// analyse.cpp: the processing stage of ich-serve (analyse.h).
#include "serve/analyse.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <tuple>

#include "data/augment.h"
#include "dicom/window.h"
#include "dicom/window_slice.h"
#include "engine/device_select.h"
#include "engine/error.h"
#include "infer/gradcam.h"
#include "infer/predict.h"
#include "infer/preprocess.h"
#include "io/atomic_file.h"
#include "data/labels.h"
#include "data/study_metrics.h"
#include "report/text.h"
#include "serve/audit.h"
#include "serve/fhir.h"
#include "serve/study_state.h"

namespace ich {

namespace fs = std::filesystem;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
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
  po.ensemble = o_.ensemble;
  po.tta = o_.tta;
  po.precision = o_.precision;
  po.device = o_.device;
  models_ = load_predict_models(po);
  name_ = "ich " + models_.slice.meta.arch + " slice model" + (o_.sequence.empty() ? "" : " + series model");
  version_ = fs::path(o_.checkpoint).filename().string() + " (" + models_.slice_identity + ")";
  for (const std::string& p : o_.ensemble)
    version_ += " + " + fs::path(p).filename().string() + " (" + checkpoint_identity(p) + ")";
  if (o_.tta != "none") version_ += ", test-time views " + o_.tta;
  if (o_.precision != "fp32") version_ += ", " + o_.precision + " inference";
  for (size_t k = 0; k < o_.sequence.size(); ++k)
    version_ += "; " + fs::path(o_.sequence[k]).filename().string() + " (" + models_.seq_identity[k] + ")";
  // Operating thresholds: one for every label, or each label's from a validation run's operating points
  thresholds_.fill(o_.threshold);
  operating_point_ = "the same threshold " + fmt_double(o_.threshold, 6) + " for every label (--threshold)";
  if (!o_.thresholds.empty()) {
    for (size_t k = 0; k < 6; ++k) {
      thresholds_[k] = read_study_thresholds(o_.thresholds, kSubtypes[k], {o_.sensitivity})[0];
      ICH_CHECK(std::isfinite(thresholds_[k]), o_.thresholds, ": no threshold reaches sensitivity ", o_.sensitivity,
                " for ", kSubtypes[k], " (the validation run had too few positive studies for it)");
    }
    operating_point_ = "each label's threshold at study-level sensitivity " + fmt_double(o_.sensitivity, 6) +
                       " on validation data (" + fs::path(o_.thresholds).filename().string() + ", ich-eval --studies)";
  }
}

Analysis StudyAnalyser::analyse(const StudyState& s, const std::string& dir) {
  Analysis a;
  const std::string round_dir = dir + "/round" + std::to_string(s.round);
  fs::create_directories(round_dir);
  // 1. ich-predict on the study's instances.
  auto t0 = std::chrono::steady_clock::now();
  PredictOptions po;
  po.checkpoint = o_.checkpoint;
  po.ensemble = o_.ensemble;
  po.tta = o_.tta;
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
  // 2. Per slice: its probabilities (as written) and its instance, as ich-predict had them.
  const std::vector<SlicePrediction>& slices = rep.predictions;
  ICH_CHECK(!slices.empty(), "study ", s.study_uid, ": no slice could be read (", f.unreadable.size(),
            " instances not read)");
  auto ref_of = [](const SlicePrediction& p) {
    SliceRef r;
    r.sop_class_uid = p.sop_class_uid, r.sop_uid = p.sop_uid, r.series_uid = p.series_uid, r.frame = p.frame;
    return r;
  };
  for (size_t i = 0; i < slices.size(); ++i)
    if (i == 0 || slices[i].path != slices[i - 1].path) {  // one evidence entry per instance
      SliceRef r = ref_of(slices[i]);
      r.frame = 0;
      f.evidence.push_back(r);
    }
  f.header = read_study_header(slices.front().path);
  // 3. The study's highest probability per label; the finding at the threshold.
  std::array<double, 6> best;
  best.fill(-1);
  for (const SlicePrediction& sp : slices)
    for (size_t k = 0; k < 6; ++k)
      if (std::stod(sp.p[k]) > best[k]) best[k] = std::stod(sp.p[k]), f.p[k] = sp.p[k], f.source[k] = ref_of(sp);
  for (size_t k = 0; k < 6; ++k) {
    f.threshold[k] = fmt_double(thresholds_[k], 6);
    f.found[k] = best[k] >= thresholds_[k];
  }
  f.operating_point = operating_point_;
  f.present = f.found[5];
  f.study_uid = s.study_uid;
  f.algorithm_name = name_;
  f.algorithm_version = version_;
  f.station_aet = o_.aet;
  f.observer_uid = o_.observer_uid;
  f.round = s.round;
  // 4. Key slices: the highest p(any), brain window under the Grad-CAM heatmap.
  t0 = std::chrono::steady_clock::now();
  std::vector<std::tuple<double, std::string, size_t>> ranked;  // -p(any), then the image id on ties
  for (size_t i = 0; i < slices.size(); ++i) ranked.emplace_back(-std::stod(slices[i].p[5]), slices[i].image_id, i);
  std::sort(ranked.begin(), ranked.end());
  const SliceWindowing how = windowing_for(models_.slice.meta);
  const int64_t S = models_.slice.meta.size;
  std::vector<std::string> files;  // the study's readable instances (--context: the neighbours' files)
  for (size_t r = 0; r < ranked.size() && int(r) < o_.key_images; ++r) {
    const SlicePrediction& sp = slices[std::get<2>(ranked[r])];
    KeyImage key;
    key.source = ref_of(sp);
    key.p = sp.p;
    std::vector<uint8_t> rgb;
    if (models_.slice.meta.context > 0) {  // the slice among its neighbours, as the model read it
      if (files.empty())
        for (const SlicePrediction& q : slices)
          if (files.empty() || files.back() != q.path) files.push_back(q.path);
      const Tensor x = context_input(files, sp.image_id, models_.slice.meta);
      const int64_t centre = models_.slice.meta.context * int64_t(how.windows.empty() ? 1 : how.windows.size());
      rgb = cam_overlay(x, grad_cam(*models_.slice.model, x.to(models_.dev), 5).heat, centre);
    } else {
      const WindowedImage wi = window_frame(sp.path, how, sp.frame);
      rgb = slice_cam(*models_.slice.model, models_.dev, wi.pixels.data(), wi.h, wi.w, wi.channels, int(S), 5).rgb;
    }
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
  write_file_atomic(round_dir + "/results/fhir.json", fhir_bundle(f, a.written, iso_utc(now_ms())));
  a.write_s = seconds_since(t0);
  return a;
}

}  // namespace ich
