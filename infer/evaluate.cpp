#include "infer/evaluate.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <set>

#include "data/labels.h"
#include "engine/device_select.h"
#include "infer/apply.h"
#include "infer/ensemble.h"
#include "infer/gradcam.h"
#include "io/atomic_file.h"
#include "io/csv.h"
#include "io/json.h"
#include "report/curves.h"
#include "report/html.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

namespace ich {

namespace fs = std::filesystem;

namespace {

// The study level's ROC and precision-recall with the bands of "any":
// study_roc.png, study_pr.png, and in the report.
void add_study_charts(const std::string& dir, const std::vector<StudyLabelReport>& r, HtmlReport& html) {
  for (const auto& [file, caption, chart] :
       {std::tuple{"study_roc.png", "ROC per label (studies), 95% band of any", study_roc_chart(r)},
        std::tuple{"study_pr.png", "precision-recall per label (studies), 95% band of any", study_pr_chart(r)}}) {
    const std::string png = chart_png(chart);
    write_file_atomic((fs::path(dir) / file).string(), png);
    html.charts.emplace_back(caption, png);
  }
}

// predictions.csv, metrics.json and the charts (roc.png, pr.png,
// calibration.png) of one set of probabilities.
// overlay(i): slice i's Grad-CAM overlay for the report (empty function: plain thumbnails).
using Overlay = std::function<std::vector<uint8_t>(size_t)>;
EvalReport write_outputs(const std::string& dir, const SliceDataset& ds, const std::vector<std::array<double, 6>>& p,
                         const Overlay& overlay, const std::vector<std::pair<std::string, std::string>>& training,
                         const std::vector<StudyRow>& studies = {},
                         const std::vector<StudyLabelReport>& study_level = {}, double prevalence = NAN,
                         const std::string& study_json = "") {
  fs::create_directories(dir);
  std::vector<std::array<int, 6>> y(ds.size());
  std::vector<std::string> header{"image_id"};
  for (const char* s : kSubtypes) header.push_back(std::string("p_") + s);
  for (const char* s : kSubtypes) header.push_back(s);
  CsvWriter w((fs::path(dir) / "predictions.csv").string(), header);
  for (size_t i = 0; i < ds.size(); ++i) {
    y[i] = ds.row(i).y;
    std::vector<std::string> row{ds.row(i).image_id};
    for (double v : p[i]) row.push_back(fmt_double(v, 6));
    for (int v : y[i]) row.push_back(std::to_string(v));
    w.row(row);
  }
  w.commit();
  const EvalReport r = evaluate(p, y);
  std::string metrics = to_json(r);
  if (!study_json.empty()) {  // --studies: study_metrics.json's object under "study_level" too
    metrics.erase(metrics.find_last_of('}'));
    while (!metrics.empty() && (metrics.back() == '\n' || metrics.back() == ' ')) metrics.pop_back();
    metrics += ",\n  \"study_level\": " + study_json.substr(0, study_json.find_last_not_of("\n") + 1) + "\n}\n";
  }
  write_file_atomic((fs::path(dir) / "metrics.json").string(), metrics);
  // Each chart drawn once: the file and the page's inlined copy are the same bytes.
  const std::string roc = chart_png(roc_chart(p, y)), pr = chart_png(pr_chart(p, y)),
                    cal = chart_png(calibration_chart(p, y));
  write_file_atomic((fs::path(dir) / "roc.png").string(), roc);
  write_file_atomic((fs::path(dir) / "pr.png").string(), pr);
  write_file_atomic((fs::path(dir) / "calibration.png").string(), cal);
  // report.html: the same numbers, the charts, operating points, and the worst misses as thumbnails
  HtmlReport html;
  html.title = "ich-eval: " + std::to_string(p.size()) + " slices";
  html.report = r;
  html.probs = p;
  html.labels = y;
  html.charts = {{"ROC per label", roc}, {"precision-recall per label", pr}, {"reliability", cal}};
  html.charts.insert(html.charts.end(), training.begin(), training.end());
  std::vector<size_t> pos, neg;
  for (size_t i = 0; i < p.size(); ++i) (y[i][5] ? pos : neg).push_back(i);
  std::stable_sort(pos.begin(), pos.end(), [&](size_t a, size_t b) { return p[a][5] < p[b][5]; });
  std::stable_sort(neg.begin(), neg.end(), [&](size_t a, size_t b) { return p[a][5] > p[b][5]; });
  auto thumbnail = [&](size_t i) {
    Thumbnail t;
    t.image_id = ds.row(i).image_id;
    t.size = 112;
    t.probs = p[i];
    t.labels = y[i];
    if (overlay) {  // the brain window with the heatmap, at the model's input size
      t.rgb = overlay(i);
      t.size = int(std::lround(std::sqrt(double(t.rgb.size() / 3))));
      return t;
    }
    const AugmentOptions ao = eval_augment(t.size);
    std::vector<uint8_t> all(size_t(ds.channels()) * size_t(t.size) * size_t(t.size));
    Generator gen(0);
    ds.load_u8(i, ao, gen, all.data());
    const size_t centre = size_t(3 * ds.context());  // the slice's own first window (brain), with --context too
    const size_t plane = size_t(t.size) * size_t(t.size);
    t.gray.assign(all.begin() + long(centre * plane), all.begin() + long((centre + 1) * plane));
    return t;
  };
  for (size_t j = 0; j < std::min<size_t>(6, pos.size()) && p[pos[j]][5] < 0.5; ++j)
    html.false_negatives.push_back(thumbnail(pos[j]));
  for (size_t j = 0; j < std::min<size_t>(6, neg.size()) && p[neg[j]][5] >= 0.5; ++j)
    html.false_positives.push_back(thumbnail(neg[j]));
  html.studies = studies;
  html.study_level = study_level;
  if (!study_level.empty()) add_study_charts(dir, study_level, html);
  html.prevalence = prevalence;
  write_file_atomic((fs::path(dir) / "report.html").string(), render_report_html(html));
  return r;
}

// Every label's study-level report, "any" first (the labels `known`; all
// when empty), at the operating points asked for or carried in
// (--thresholds); `so` is left holding the options they were made with.
std::vector<StudyLabelReport> label_reports(const EvalOptions& o, const std::vector<StudyScore>& studies,
                                            const std::array<bool, 6>& known, StudyReportOptions& so) {
  const bool all = std::none_of(known.begin(), known.end(), [](bool b) { return b; });
  so.targets = o.sensitivities;
  so.prevalence = o.prevalence;
  so.bootstrap.replicates = o.bootstrap;
  std::vector<StudyLabelReport> out;
  for (size_t k : {size_t(5), size_t(0), size_t(1), size_t(2), size_t(3), size_t(4)}) {
    if (!all && !known[k]) continue;
    so.thresholds = o.thresholds.empty() ? std::vector<double>{}
                                         : read_study_thresholds(o.thresholds, kSubtypes[k], o.sensitivities);
    out.push_back(study_label_report(studies, k, so));
  }
  return out;
}

// The study-level evaluation of the final probabilities (--studies): every
// label's report, written as study_metrics.json and study_thresholds.csv.
std::vector<StudyLabelReport> study_level(const EvalOptions& o, const SliceDataset& ds,
                                          const std::vector<std::array<double, 6>>& p, std::string& json) {
  std::vector<SliceScore> slices(ds.size());
  for (size_t i = 0; i < ds.size(); ++i)
    slices[i] = {ds.row(i).patient_id, ds.row(i).study_uid, p[i], ds.row(i).y};
  StudyReportOptions so;
  const std::vector<StudyLabelReport> out = label_reports(o, studies_from_slices(slices), {}, so);
  fs::create_directories(o.out);
  json = study_report_json(out, so);
  write_file_atomic((fs::path(o.out) / "study_metrics.json").string(), json);
  CsvWriter w((fs::path(o.out) / "study_thresholds.csv").string(), {"label", "target_sensitivity", "threshold"});
  for (const auto& row : study_threshold_rows(out)) w.row(row);
  w.commit();
  return out;
}

// External data: every converted slice of the images folder (meta.csv's
// rows with status ok), labels unknown.
std::vector<SplitRow> rows_of_images(const std::string& images) {
  const std::string path = (fs::path(images) / "meta.csv").string();
  const CsvTable t = read_csv(path);
  const size_t c_id = t.column("image_id"), c_status = t.column("status"), c_pat = t.column("patient_id"),
               c_study = t.column("study_uid"), c_series = t.column("series_uid"), c_z = t.column("z");
  std::vector<SplitRow> rows;
  for (const auto& r : t.rows)
    if (r[c_status] == "ok") rows.push_back({r[c_id], {}, r[c_pat], r[c_study], r[c_series], r[c_z]});
  return rows;
}

// --study-labels: the studies matched to the file's labels, the study-level
// report of every label it gives, and what did not match.
EvalResult external_outputs(const EvalOptions& o, const SliceDataset& ds, const std::vector<std::array<double, 6>>& p,
                            EvalResult& res, const std::function<void(const std::string&)>& log) {
  const StudyLabels labels = read_study_labels(o.study_labels);
  std::vector<SliceScore> slices(ds.size());
  for (size_t i = 0; i < ds.size(); ++i) slices[i] = {ds.row(i).patient_id, ds.row(i).study_uid, p[i], {}};
  std::vector<StudyScore> labelled;
  std::set<std::string> matched;
  ExternalMatch& m = res.external;
  m.format = labels.format;
  for (StudyScore st : studies_from_slices(slices)) {
    const std::string key = normalised_study_key(labels.by_patient ? st.patient_id : st.study_uid);
    const auto it = labels.labels.find(key);
    if (it == labels.labels.end()) {
      m.dicom_without_labels.push_back(labels.by_patient ? st.patient_id + " (" + st.study_uid + ")" : st.study_uid);
      continue;
    }
    st.y = it->second;
    matched.insert(key);
    labelled.push_back(st);
  }
  for (const auto& [key, name] : labels.names)
    if (!matched.count(key)) m.labels_without_dicom.push_back(name);
  m.matched = int64_t(labelled.size());
  ICH_CHECK(!labelled.empty(), o.study_labels, ": none of its ", labels.labels.size(), " studies is among the ",
            ds.size(), " slices of ", o.images, " (", labels.by_patient ? "PatientID" : "StudyInstanceUID",
            " compared without case, spaces, '-' and '_')");
  if (log) {
    log(labels.format + ": " + std::to_string(m.matched) + " studies matched, " +
        std::to_string(m.labels_without_dicom.size()) + " labelled studies without DICOM, " +
        std::to_string(m.dicom_without_labels.size()) + " DICOM studies without labels (left out)");
  }
  StudyReportOptions so;
  res.study_level = label_reports(o, labelled, labels.known, so);
  auto list = [](const std::vector<std::string>& v) {
    std::string j = "[";
    for (size_t i = 0; i < v.size(); ++i) j += (i ? ", " : "") + json_quote(v[i]);
    return j + "]";
  };
  const std::string extra = "  \"external\": {\"labels\": " + json_quote(o.study_labels) +
                            ", \"format\": " + json_quote(labels.format) + ", \"studies_matched\": " +
                            std::to_string(m.matched) + ",\n    \"labels_without_dicom\": " +
                            list(m.labels_without_dicom) + ",\n    \"dicom_without_labels\": " +
                            list(m.dicom_without_labels) + "}";
  fs::create_directories(o.out);
  write_file_atomic((fs::path(o.out) / "study_metrics.json").string(), study_report_json(res.study_level, so, extra));
  {
    CsvWriter w((fs::path(o.out) / "study_thresholds.csv").string(), {"label", "target_sensitivity", "threshold"});
    for (const auto& row : study_threshold_rows(res.study_level)) w.row(row);
    w.commit();
  }
  {  // the slices' probabilities (their labels are not known)
    std::vector<std::string> header{"image_id", "patient_id", "study_uid"};
    for (const char* s : kSubtypes) header.push_back(std::string("p_") + s);
    CsvWriter w((fs::path(o.out) / "predictions.csv").string(), header);
    for (size_t i = 0; i < ds.size(); ++i) {
      std::vector<std::string> row{ds.row(i).image_id, ds.row(i).patient_id, ds.row(i).study_uid};
      for (double v : p[i]) row.push_back(fmt_double(v, 6));
      w.row(row);
    }
    w.commit();
  }
  {  // studies.csv: each labelled study's score and truth
    std::vector<std::string> header{"patient_id", "study_uid", "slices"};
    for (const char* s : kSubtypes) header.push_back(std::string("p_") + s);
    for (const char* s : kSubtypes) header.push_back(s);
    CsvWriter w((fs::path(o.out) / "studies.csv").string(), header);
    for (const StudyScore& st : labelled) {
      std::vector<std::string> row{st.patient_id, st.study_uid, std::to_string(st.slices)};
      for (double v : st.p) row.push_back(fmt_double(v, 6));
      for (size_t k = 0; k < 6; ++k) row.push_back(labels.known[k] ? std::to_string(st.y[k]) : "");
      w.row(row);
    }
    w.commit();
  }
  HtmlReport html;
  html.title = "ich-eval on external data: " + std::to_string(m.matched) + " studies";
  html.slice_level = false;
  html.study_level = res.study_level;
  html.prevalence = o.prevalence;
  if (std::all_of(labels.known.begin(), labels.known.end(), [](bool b) { return b; })) {
    Probs sp;
    Labels sy;
    for (const StudyScore& st : labelled) sp.push_back(st.p), sy.push_back(st.y);
    html.charts = {{"ROC per label (studies)", chart_png(roc_chart(sp, sy))},
                   {"precision-recall per label (studies)", chart_png(pr_chart(sp, sy))},
                   {"reliability (studies)", chart_png(calibration_chart(sp, sy))}};
  }
  add_study_charts(o.out, res.study_level, html);
  write_file_atomic((fs::path(o.out) / "report.html").string(), render_report_html(html));
  return res;
}

}  // namespace

EvalResult run_eval(const EvalOptions& o, const std::function<void(const std::string&)>& log,
                    const std::function<void(int64_t, int64_t)>& progress) {
  ICH_CHECK(o.batch >= 1, "--batch ", o.batch, " must be positive");
  ICH_CHECK(o.studies || !o.study_labels.empty() || (o.thresholds.empty() && std::isnan(o.prevalence)),
            "--thresholds and --prevalence belong to the study-level evaluation: add --studies");
  for (double t : o.sensitivities)
    ICH_CHECK(t > 0 && t <= 1, "--sensitivities: ", t, " is not a fraction in (0, 1]");
  ICH_CHECK(o.bootstrap >= 10, "--bootstrap ", o.bootstrap, ": at least 10 replicates");
  ICH_CHECK(o.sequence.empty() || parse_tta(o.tta) == Tta::None,
            "--tta with --sequence: each series model reads embeddings averaged over the views it was trained on "
            "(ich-embed --tta), not others");
  const Device dev = pick_device(o.device);
  LoadedCheckpoint c = load_checkpoint(o.checkpoint);
  c.model->to(dev);
  const bool external = !o.study_labels.empty();
  ICH_CHECK(external != !o.data.empty(), external ? "--study-labels and --data: give one (external data has no split)"
                                                  : "--data (a split CSV) or --study-labels (external data) is required");
  const std::vector<SplitRow> rows = external ? rows_of_images(o.images) : read_split(o.data);
  ICH_CHECK(!rows.empty(), external ? o.images + "/meta.csv" : o.data, ": no slices");
  SliceDataset ds(rows, o.images);
  ds.set_context(int(c.meta.context));  // a model of adjacent slices reads them
  EvalResult res;
  // the ensemble (one member: the checkpoint itself, bit for bit), calibrated where a member is (ich-calibrate)
  std::vector<std::string> members{o.checkpoint};
  members.insert(members.end(), o.ensemble.begin(), o.ensemble.end());
  Ensemble ens = load_ensemble(members, dev, parse_tta(o.tta), &c, o.precision);
  const auto p = ensemble_predict(ens, ds, o.batch, dev, progress);
  // Grad-CAM of "any" for the report's thumbnails (the slice CNN: where it looked)
  std::map<size_t, std::vector<uint8_t>> cams;  // the per-slice and in-context reports often show the same slices
  const Overlay overlay = [&](size_t i) {
    if (const auto it = cams.find(i); it != cams.end()) return it->second;
    const int S = int(c.meta.size), C = ds.channels();
    const AugmentOptions ao = eval_augment(S);
    std::vector<float> buf(size_t(C) * size_t(S) * size_t(S));
    Generator g(0);
    ds.load(i, ao, g, buf.data());
    const Tensor x = Tensor::from_data(buf.data(), {1, C, S, S}).to(dev);
    const int64_t centre = c.meta.context * (C / (2 * c.meta.context + 1));  // the slice itself, not a neighbour
    return cams[i] = cam_overlay(x, grad_cam(*c.model, x, 5).heat, centre);
  };
  // The training run's curves, when the checkpoint sits in its run folder beside log.csv.
  std::vector<std::pair<std::string, std::string>> training;  // drawn once for both reports (per slice, in context)
  if (const fs::path log = fs::path(o.checkpoint).parent_path() / "log.csv"; fs::exists(log)) {
    const CsvTable t = read_csv(log.string());
    if (!t.rows.empty())
      training = {{"training and validation loss", chart_png(loss_chart(t))},
                  {"competition metric per epoch", chart_png(metric_chart(t))},
                  {"validation AUC per epoch", chart_png(auc_chart(t))}};
  }
  if (o.sequence.empty() && external) return external_outputs(o, ds, p, res, log);
  if (o.sequence.empty()) {
    std::string json;
    if (o.studies) res.study_level = study_level(o, ds, p, json);
    res.per_slice = res.final_report =
        write_outputs(o.out, ds, p, overlay, training, {}, res.study_level, o.prevalence, json);
    return res;
  }
  res.with_context = true;
  if (!external) res.per_slice = write_outputs((fs::path(o.out) / "per_slice").string(), ds, p, overlay, training);
  // each slice model with its series models (infer/apply.h), the pipelines averaged
  std::vector<LoadedSeqCheckpoint> seqs;
  for (const std::string& path : o.sequence) {
    seqs.push_back(load_seq_checkpoint(path));
    seqs.back().model->to(dev);
  }
  const SeqPipelines pipes = match_pipelines(ens.members, ens.paths, seqs, o.sequence);
  std::vector<Tensor> parts;
  for (size_t m = 0; m < ens.members.size(); ++m)
    parts.push_back(embed_slices(*ens.members[m].model, ds, c.meta.size, o.batch, dev, pipes.views[m], progress));
  const Tensor f = side_by_side(parts);
  const std::vector<OrderedSlice> order = order_split(rows, o.images, log);
  const std::vector<std::array<double, 6>> q = pipeline_probs(pipes, seqs, f, order, dev);
  if (external) return external_outputs(o, ds, q, res, log);
  std::vector<StudyRow> studies;
  for (const StudySummary& st : summarise_studies(order, q))
    studies.push_back({st.patient_id, st.study_uid, st.series_uid, st.slices, st.p, st.key_slices});
  std::string json;
  if (o.studies) res.study_level = study_level(o, ds, q, json);
  res.final_report = write_outputs(o.out, ds, q, overlay, training, studies, res.study_level, o.prevalence, json);
  return res;
}

}  // namespace ich
