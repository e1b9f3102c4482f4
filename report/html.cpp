#include "report/html.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "data/labels.h"
#include "engine/error.h"
#include "io/png.h"

namespace ich {

namespace {

// The columns of the seed's table (EvalReport::per_label's order) and their
// metrics.json names.
const char* kNames[7] = {"Normal", "Epidural", "Intraparenchymal", "Intraventricular", "Subarachnoid", "Subdural",
                         "Any"};

std::string esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<') o += "&lt;";
    else if (c == '>') o += "&gt;";
    else if (c == '&') o += "&amp;";
    else if (c == '"') o += "&quot;";
    else o += c;
  }
  return o;
}

std::string json_num(double v) {  // metrics.json's text of a number
  if (std::isnan(v)) return "null";
  char b[32];
  std::snprintf(b, sizeof b, "%.6f", v);
  return b;
}

std::string shown(double v, int digits = 3) {
  if (std::isnan(v)) return "n/a";
  char b[32];
  std::snprintf(b, sizeof b, "%.*f", digits, v);
  return b;
}

// A cell that metrics.json also has.
std::string keyed(const std::string& key, double v) {
  return "<td data-key=\"" + esc(key) + "\" data-value=\"" + json_num(v) + "\">" + shown(v) + "</td>";
}
std::string keyed(const std::string& key, int64_t v) {
  return "<td data-key=\"" + esc(key) + "\" data-value=\"" + std::to_string(v) + "\">" + std::to_string(v) + "</td>";
}

std::string png_uri(const std::vector<uint8_t>& px, int w, int h, int channels) {
  return "data:image/png;base64," + base64(png_bytes(px, w, h, channels));
}

}  // namespace

std::string base64(const std::string& in) {
  static const char* a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const uint32_t v = uint32_t(uint8_t(in[i])) << 16 | uint32_t(uint8_t(in[i + 1])) << 8 | uint8_t(in[i + 2]);
    for (int k = 3; k >= 0; --k) out += a[(v >> (6 * k)) & 63];
  }
  if (i < in.size()) {
    const uint32_t v = uint32_t(uint8_t(in[i])) << 16 | (i + 1 < in.size() ? uint32_t(uint8_t(in[i + 1])) << 8 : 0);
    out += a[(v >> 18) & 63];
    out += a[(v >> 12) & 63];
    out += i + 1 < in.size() ? a[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string render_report_html(const HtmlReport& r) {
  const EvalReport& e = r.report;
  std::string h;
  h += "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" + esc(r.title) + "</title>\n";
  h += "<style>body{font-family:'DejaVu Sans',sans-serif;margin:24px;color:#222}"
       "table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #bbb;padding:4px 8px;text-align:right}"
       "th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}"
       ".note{color:#a00}.charts img{margin:0 12px 12px 0;border:1px solid #ddd}"
       ".thumbs div{display:inline-block;margin:0 10px 10px 0;font-size:12px;vertical-align:top}"
       "td.keys{font-size:11px;max-width:300px;text-align:left}</style>\n";
  h += "</head><body>\n<h1>" + esc(r.title) + "</h1>\n";
  h += "<p class=\"note\">Research software: not for diagnostic use.</p>\n";

  if (r.slice_level) {  // not for external data with study labels only
    h += "<section id=\"metrics\"><h2>Per-label metrics</h2>\n<p>The seed's table (threshold 0.5; Normal: "
         "p(any) &lt; 0.5), with F1 and ROC AUC added.</p>\n<table><tr><th></th>";
    for (const char* n : kNames) h += std::string("<th>") + n + "</th>";
    h += "</tr>\n";
    const std::pair<const char*, double BinaryMetrics::*> rows[] = {{"accuracy", &BinaryMetrics::accuracy},
                                                                     {"precision", &BinaryMetrics::precision},
                                                                     {"recall", &BinaryMetrics::recall},
                                                                     {"f1", &BinaryMetrics::f1},
                                                                     {"auc", &BinaryMetrics::auc}};
    for (const auto& [name, field] : rows) {
      h += std::string("<tr><td>") + name + "</td>";
      for (size_t i = 0; i < 7; ++i) h += keyed(std::string(kNames[i]) + "." + name, e.per_label[i].*field);
      h += "</tr>\n";
    }
    h += "</table>\n<table><tr><th>images</th><th>weighted log loss (competition metric, any x2)</th><th>mean BCE</th></tr>"
         "<tr>" + keyed("images", e.images) + keyed("weighted_log_loss", e.weighted_log_loss) +
         keyed("mean_bce", e.mean_bce) + "</tr></table>\n</section>\n";
  }

  h += "<section id=\"charts\" class=\"charts\"><h2>Charts</h2>\n";
  for (const auto& [caption, png] : r.charts)
    h += "<img alt=\"" + esc(caption) + "\" title=\"" + esc(caption) + "\" width=\"560\" height=\"420\" src=\"" +
         "data:image/png;base64," + base64(png) + "\">\n";
  h += "</section>\n";

  if (r.slice_level) {
    h += "<section id=\"operating-points\"><h2>Operating points</h2>\n<p>For each label, the highest threshold at which "
         "the sensitivity reaches 90%, 95% and 99%, with the specificity and the positive predictive value there.</p>\n"
         "<table><tr><th>label</th><th>target sensitivity</th><th>threshold</th><th>sensitivity</th><th>specificity</th>"
         "<th>PPV</th></tr>\n";
    std::vector<double> s(r.probs.size());
    std::vector<int> l(r.probs.size());
    for (size_t k : {size_t(5), size_t(0), size_t(1), size_t(2), size_t(3), size_t(4)}) {
      for (size_t i = 0; i < r.probs.size(); ++i) s[i] = r.probs[i][k], l[i] = r.labels[i][k];
      for (double target : {0.90, 0.95, 0.99}) {
        const OperatingPoint op = operating_point(s, l, target);
        const std::string key = std::string("op.") + kSubtypes[k] + "." + shown(target, 2);
        h += std::string("<tr><td>") + kSubtypes[k] + "</td><td>" + shown(100 * target, 0) + "%</td>";
        for (const auto& [what, v] : {std::pair{"threshold", op.threshold}, std::pair{"sensitivity", op.sensitivity},
                                      std::pair{"specificity", op.specificity}, std::pair{"ppv", op.ppv}})
          h += "<td data-op=\"" + key + "." + what + "\" data-value=\"" + json_num(v) + "\">" + shown(v) + "</td>";
        h += "</tr>\n";
      }
    }
    h += "</table>\n</section>\n";

    h += "<section id=\"confusion\"><h2>Confusion counts (threshold 0.5)</h2>\n<table><tr><th></th><th>true positives</th>"
         "<th>false positives</th><th>true negatives</th><th>false negatives</th></tr>\n";
    for (size_t i = 0; i < 7; ++i) {
      const BinaryMetrics& m = e.per_label[i];
      const std::string k = kNames[i];
      h += "<tr><td>" + k + "</td>" + keyed(k + ".tp", m.tp) + keyed(k + ".fp", m.fp) + keyed(k + ".tn", m.tn) +
           keyed(k + ".fn", m.fn) + "</tr>\n";
    }
    h += "</table>\n</section>\n";
  }

  auto thumbs = [&](const char* id, const char* title, const char* what, const std::vector<Thumbnail>& ts) {
    h += std::string("<section id=\"") + id + "\" class=\"thumbs\"><h2>" + title + "</h2>\n<p>" + what + "</p>\n";
    if (ts.empty()) h += "<p>none</p>\n";
    for (const Thumbnail& t : ts) {
      std::string lab;
      for (size_t k = 0; k < 5; ++k)
        if (t.labels[k]) lab += std::string(lab.empty() ? "" : ", ") + kSubtypes[k];
      const std::string uri = t.rgb.empty() ? png_uri(t.gray, t.size, t.size, 1) : png_uri(t.rgb, t.size, t.size, 3);
      h += "<div><img alt=\"" + esc(t.image_id) + "\" width=\"128\" height=\"128\" src=\"" + uri + "\"><br>" +
           esc(t.image_id) +
           "<br>p(any) " + shown(t.probs[5]) + "<br>" + (lab.empty() ? std::string("normal") : esc(lab)) + "</div>\n";
    }
    h += "</section>\n";
  };
  const bool cam = !r.false_negatives.empty() ? !r.false_negatives[0].rgb.empty()
                                               : !r.false_positives.empty() && !r.false_positives[0].rgb.empty();
  const std::string how = cam ? " brain window, with the Grad-CAM heatmap of p(any) (blue low, red high)."
                              : " brain window.";
  if (r.slice_level) {
    thumbs("false-negatives", "Worst false negatives", ("Bleeding slices with the lowest p(any)," + how).c_str(),
           r.false_negatives);
    thumbs("false-positives", "Worst false positives", ("Normal slices with the highest p(any)," + how).c_str(),
           r.false_positives);
  }
  if (!r.studies.empty()) {
    h += "<section id=\"studies\"><h2>Per series (with series context)</h2>\n<p>The highest probability of each "
         "label over the series' slices, and the key slices (the highest p(any), and the others over 0.5).</p>\n"
         "<table><tr><th>study</th><th>series</th><th>slices</th>";
    for (size_t k : {size_t(5), size_t(0), size_t(1), size_t(2), size_t(3), size_t(4)})
      h += std::string("<th>") + kSubtypes[k] + "</th>";
    h += "<th>key slices</th></tr>\n";
    for (const StudyRow& st : r.studies) {
      h += "<tr><td>" + esc(st.study_uid) + "</td><td>" + esc(st.series_uid) + "</td><td>" + std::to_string(st.slices) +
           "</td>";
      for (size_t k : {size_t(5), size_t(0), size_t(1), size_t(2), size_t(3), size_t(4)}) h += "<td>" + shown(st.p[k]) + "</td>";
      std::string keys;
      for (const std::string& id : st.key_slices) keys += (keys.empty() ? "" : " ") + esc(id);
      h += "<td class=\"keys\">" + keys + "</td></tr>\n";
    }
    h += "</table>\n</section>\n";
  }
  if (!r.study_level.empty()) {
    const bool here = r.study_level.front().thresholds_from_here;
    h += "<section id=\"study-level\"><h2>Study level</h2>\n<p>A study's score is the highest probability over its "
         "slices; it is positive when one of its slices is. Thresholds chosen " +
         std::string(here ? "on this data (optimistic: choose them on validation data and pass --thresholds)"
                          : "on validation data (--thresholds)") +
         "; 95% intervals by a percentile bootstrap over patients.";
    if (!std::isnan(r.prevalence)) h += " PPV and NPV also at a prevalence of " + shown(100 * r.prevalence, 1) + "%.";
    h += "</p>\n<table><tr><th>label</th><th>studies (positive)</th><th>AUC (95% CI)</th><th>target sensitivity</th>"
         "<th>threshold</th><th>sensitivity</th><th>specificity</th><th>PPV</th><th>NPV</th>";
    if (!std::isnan(r.prevalence)) h += "<th>PPV at prevalence</th><th>NPV at prevalence</th>";
    h += "<th>ECE</th><th>Brier</th></tr>\n";
    auto cell = [](const std::string& key, double v, const Interval& ci) {
      return "<td data-study=\"" + esc(key) + "\" data-value=\"" + json_num(v) + "\">" + shown(v) + " (" +
             shown(ci.lo) + "&ndash;" + shown(ci.hi) + ")</td>";
    };
    for (const StudyLabelReport& l : r.study_level)
      for (size_t i = 0; i < l.points.size(); ++i) {
        const StudyOperatingPoint& p = l.points[i];
        const std::string k = l.label + "." + std::to_string(i) + ".";
        h += "<tr><td>" + esc(l.label) + "</td><td>" + std::to_string(l.studies) + " (" + std::to_string(l.positives) +
             ")</td>" + cell(l.label + ".auc", l.auc, l.auc_ci) + "<td>" + shown(100 * p.target, 0) + "%</td><td>" +
             shown(p.threshold, 4) + "</td>" + cell(k + "sensitivity", p.sensitivity, p.sensitivity_ci) +
             cell(k + "specificity", p.specificity, p.specificity_ci) + cell(k + "ppv", p.ppv, p.ppv_ci) +
             cell(k + "npv", p.npv, p.npv_ci);
        if (!std::isnan(r.prevalence))
          h += cell(k + "ppv_at_prevalence", p.ppv_prev, p.ppv_prev_ci) +
               cell(k + "npv_at_prevalence", p.npv_prev, p.npv_prev_ci);
        h += "<td>" + shown(l.cal.ece) + "</td><td>" + shown(l.cal.brier) + "</td></tr>\n";
      }
    h += "</table>\n</section>\n";
  }
  h += "</body></html>\n";
  return h;
}

}  // namespace ich
