#include "report/explore.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <mutex>
#include <set>
#include <unordered_map>

#include "data/labels.h"
#include "dicom/dicom.h"
#include "dicom/hounsfield.h"
#include "dicom/window_job.h"
#include "engine/error.h"
#include "io/atomic_file.h"
#include "io/csv.h"
#include "io/npy.h"
#include "io/parallel.h"
#include "io/png.h"
#include "report/text.h"

namespace ich {

namespace fs = std::filesystem;

namespace {

struct Ids {
  std::string patient, study, series;
};

// Label rows, leniently: oddities are counted and listed, not fatal.
LabelStats label_stats(const std::string& path, std::unordered_map<std::string, std::array<int, 6>>& labels) {
  LabelStats st;
  const CsvTable csv = read_csv(path);
  ICH_CHECK(csv.header.size() == 2 && csv.header[0] == "ID" && csv.header[1] == "Label", "labels ", path,
            ": header must be 'ID,Label'");
  std::unordered_map<std::string, std::array<int, 6>> seen;  // -1 unset
  std::set<std::pair<std::string, std::string>> rows_seen;
  auto problem = [&](const std::string& s) {
    if (st.problems.size() < 20) st.problems.push_back(s);
  };
  for (size_t r = 0; r < csv.rows.size(); ++r) {
    const std::string &id = csv.rows[r][0], &label = csv.rows[r][1];
    const std::string where = "line " + std::to_string(csv.line_of[r]);
    ++st.rows;
    const size_t us = id.rfind('_');
    const int k = us == std::string::npos ? -1 : subtype_index(id.substr(us + 1));
    if (k < 0 || (label != "0" && label != "1")) {
      ++st.malformed_lines;
      problem(where + ": malformed row '" + id + "," + label + "'");
      continue;
    }
    if (!rows_seen.insert({id, label}).second) {
      ++st.duplicate_rows;
      continue;
    }
    auto [it, fresh] = seen.try_emplace(id.substr(0, us));
    if (fresh) it->second.fill(-1);
    int& v = it->second[size_t(k)];
    if (v >= 0 && v != (label == "1")) {
      ++st.conflicting_rows;
      problem(where + ": '" + id + "' conflicts with an earlier row");
      v = 1;  // the positive wins for the counts
      continue;
    }
    v = label == "1";
  }
  for (auto& [img, y] : seen) {
    std::array<int, 6> lab{};
    bool complete = true;
    for (size_t k = 0; k < 6; ++k) {
      complete &= y[k] >= 0;
      lab[k] = std::max(0, y[k]);
    }
    if (!complete) {
      ++st.incomplete_images;
      problem("image " + img + " lacks some of the six rows");
    }
    labels[img] = lab;
    ++st.images;
    int n = 0;
    for (size_t k = 0; k < 6; ++k) st.positives[k] += lab[k];
    for (size_t a = 0; a < 5; ++a) {
      n += lab[a];
      for (size_t b = 0; b < 5; ++b) st.cooccurrence[a][b] += lab[a] && lab[b];
    }
    st.normal += !lab[5];
    if (lab[5]) ++st.subtypes_per_positive[size_t(n)];
    if (n > 0 && !lab[5]) {
      ++st.subtype_without_any;
      problem("image " + img + " has a subtype but any = 0");
    }
    if (lab[5] && n == 0) {
      ++st.any_without_subtype;
      problem("image " + img + " has any = 1 but no subtype");
    }
  }
  return st;
}

std::string ds(double v) { return fmt_double(v, 6); }

// Where a slice found in the header scan lives: its file and frame.
struct Source {
  std::string path;
  int frame = 1;
};

void scan_headers(const ExploreOptions& o, ExploreReport& rep, std::unordered_map<std::string, Ids>& ids,
                  std::unordered_map<std::string, Source>& sources,
                  const std::function<void(int64_t, int64_t)>& progress) {
  AttributeStats& a = rep.attributes;
  const std::vector<std::string> files = list_files(o.dicom, o.out);
  a.files = int64_t(files.size());
  std::mutex mu;
  const auto t0 = std::chrono::steady_clock::now();
  run_parallel(a.files, o.threads, progress, [&](int64_t i) {
    std::vector<DicomSlice> frames;
    try {
      read_dicom_frames(files[size_t(i)], [&](DicomSlice& s) { frames.push_back(std::move(s)); }, /*pixels=*/false);
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> l(mu);
      a.unreadable.emplace_back(files[size_t(i)], e.what());
      return;
    }
    std::lock_guard<std::mutex> l(mu);
    ++a.readable;
    auto& t = a.tables;
    const DicomSlice& s = frames.front();  // the file's attributes; frames differ in position and rescale
    ++t["rows x columns"][std::to_string(s.rows) + " x " + std::to_string(s.cols)];
    ++t["pixel spacing (mm)"][s.spacing_row > 0 ? ds(s.spacing_row) + " x " + ds(s.spacing_col) : "absent"];
    ++t["BitsStored"][std::to_string(s.bits_stored)];
    ++t["PixelRepresentation"][std::to_string(s.pixel_representation)];
    ++t["RescaleIntercept"][s.lut ? "Modality LUT" : ds(s.intercept)];
    ++t["RescaleSlope"][s.lut ? "Modality LUT" : ds(s.slope)];
    ++t["WindowCenter values"][std::to_string(s.window_centers.size())];
    ++t["WindowCenter (first)"][s.window_centers.empty() ? "absent" : ds(s.window_centers[0])];
    ++t["WindowWidth (first)"][s.window_widths.empty() ? "absent" : ds(s.window_widths[0])];
    ++t["Modality"][s.modality.empty() ? "absent" : s.modality];
    ++t["PhotometricInterpretation"][s.photometric];
    ++t["transfer syntax"][s.transfer_syntax];
    ++t["frames per file"][std::to_string(s.frames)];
    if (rsna_fix_candidate(s)) ++a.rsna_fix;
    if (s.window_centers.size() > 1 || s.window_widths.size() > 1) {
      ++a.multi_window;
      const bool differ = (s.window_centers.size() > 1 && s.window_centers[0] != s.window_centers[1]) ||
                          (s.window_widths.size() > 1 && s.window_widths[0] != s.window_widths[1]);
      a.multi_window_differing += differ;
    }
    for (const DicomSlice& f : frames) {
      const std::string id = image_id_for(f);
      ids[id] = {f.patient_id, f.study_uid, f.series_uid};
      sources[id] = {files[size_t(i)], f.frame};
    }
  });
  std::sort(a.unreadable.begin(), a.unreadable.end());
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  a.files_per_second = secs > 0 ? double(a.files) / secs : 0;
  rep.has_attributes = true;
}

void read_meta(const std::string& path, ExploreReport& rep, std::unordered_map<std::string, Ids>& ids) {
  const CsvTable t = read_csv(path);
  AttributeStats& a = rep.attributes;
  const size_t c_id = t.column("image_id"), c_st = t.column("status"), c_r = t.column("rows"), c_c = t.column("cols"),
               c_sl = t.column("slope"), c_ic = t.column("intercept"), c_fix = t.column("rsna_fix"),
               c_p = t.column("patient_id"), c_s = t.column("study_uid"), c_se = t.column("series_uid"),
               c_path = t.column("path"), c_wc = t.column("window_center"), c_ww = t.column("window_width");
  const CsvTable errors = fs::exists(fs::path(path).parent_path() / "errors.csv")
                              ? read_csv((fs::path(path).parent_path() / "errors.csv").string())
                              : CsvTable{};
  for (const auto& r : t.rows) {
    ++a.files;
    if (r[c_st] != "ok") continue;
    ++a.readable;
    ++a.tables["rows x columns"][r[c_r] + " x " + r[c_c]];
    ++a.tables["RescaleSlope"][r[c_sl]];
    ++a.tables["RescaleIntercept"][r[c_ic]];
    ++a.tables["WindowCenter (first)"][r[c_wc].empty() ? "absent" : r[c_wc]];
    ++a.tables["WindowWidth (first)"][r[c_ww].empty() ? "absent" : r[c_ww]];
    a.rsna_fix += r[c_fix] == "1";
    ids[r[c_id]] = {r[c_p], r[c_s], r[c_se]};
  }
  for (const auto& e : errors.rows) a.unreadable.emplace_back(e[0], e[1]);
  (void)c_path;
  rep.has_attributes = true;
}

// A slice's image for a tile: uint8 (H, W, C), channel 0 shown.
using TileSource = std::function<Tensor(const std::string& id)>;

// From ich-window's images.
TileSource images_from_npy(const std::string& folder) {
  return [folder](const std::string& id) { return read_npy((fs::path(folder) / (id + ".npy")).string()); };
}

// Straight from the DICOM files, windowed on the fly (brain window), as the
// seed's third notebook shows them: any modality, the RSNA fix where due.
TileSource images_from_dicom(const std::unordered_map<std::string, Source>& sources) {
  return [&sources](const std::string& id) {
    const Source& src = sources.at(id);
    SliceWindowing how;
    how.windows = parse_windows("brain");
    how.any_modality = true;
    WindowScratch scratch;
    Tensor img;
    window_file(src.path, how, scratch, [&](const WindowedFile& f) {
      if (f.slice.frame != src.frame) return;
      img = Tensor::empty({f.h, f.w, f.channels}, DType::UInt8);
      std::copy(f.pixels, f.pixels + size_t(f.h) * f.w * f.channels, img.data<uint8_t>());
    });
    ICH_CHECK(img.defined(), src.path, ": frame ", src.frame, " not found");
    return img;
  };
}

// One contact sheet: examples of a category, brain window (channel 0) as
// gray, each tile captioned with its image id and labels.
std::string contact_sheet(const ExploreOptions& o, const std::string& name, const std::vector<std::string>& ids,
                          const std::vector<Tensor>& images,
                          const std::unordered_map<std::string, std::array<int, 6>>& labels) {
  const int tile = 160, cap = 24, cols = 4, n = int(ids.size());
  const int rows = (n + cols - 1) / cols, W = cols * tile, H = rows * (tile + cap) + 16;
  std::vector<uint8_t> rgb(size_t(W) * H * 3, 0);
  std::vector<Caption> captions{{4, 1, name + ": " + std::to_string(n) + " examples, brain window", {255, 255, 0}, 12, true}};
  for (int i = 0; i < n; ++i) {
    const Tensor& img = images[size_t(i)];
    const int h = int(img.size(0)), w = int(img.size(1)), C = int(img.size(2));
    const uint8_t* p = img.data<uint8_t>();
    const int x0 = (i % cols) * tile, y0 = 16 + (i / cols) * (tile + cap);
    for (int y = 0; y < tile; ++y)
      for (int x = 0; x < tile; ++x) {
        const uint8_t v = p[(size_t(y * h / tile) * w + size_t(x * w / tile)) * C];
        for (int k = 0; k < 3; ++k) rgb[(size_t(y0 + y) * W + x0 + x) * 3 + k] = v;
      }
    std::string lab;
    const auto& y = labels.at(ids[size_t(i)]);
    const char* abbrev[5] = {"EDH", "IPH", "IVH", "SAH", "SDH"};
    for (size_t k = 0; k < 5; ++k)
      if (y[k]) lab += std::string(lab.empty() ? "" : "+") + abbrev[k];
    captions.push_back({x0 + 2, y0 + tile, ids[size_t(i)], {255, 255, 255}, 10});
    captions.push_back({x0 + 2, y0 + tile + 11, lab.empty() ? "normal" : lab, {255, 160, 160}, 10});
  }
  draw_captions(rgb, W, H, captions);
  const std::string path = (fs::path(o.out) / ("sheet_" + name + ".png")).string();
  write_png(path, rgb, W, H, 3);
  return path;
}

}  // namespace

ExploreReport explore(const ExploreOptions& o, const std::function<void(int64_t, int64_t)>& progress) {
  ICH_CHECK(!o.labels.empty(), "ich-explore needs --labels");
  fs::create_directories(o.out);
  ExploreReport rep;
  std::unordered_map<std::string, std::array<int, 6>> labels;
  rep.labels = label_stats(o.labels, labels);
  std::unordered_map<std::string, Ids> ids;
  std::unordered_map<std::string, Source> sources;
  if (!o.dicom.empty()) scan_headers(o, rep, ids, sources, progress);
  else if (!o.meta.empty()) read_meta(o.meta, rep, ids);
  if (rep.has_attributes) {
    rep.labels.labelled_without_dicom = 0;
    rep.labels.dicom_without_labels = 0;
    for (const auto& [img, y] : labels) rep.labels.labelled_without_dicom += !ids.count(img);
    for (const auto& [img, g] : ids) rep.labels.dicom_without_labels += !labels.count(img);
    // Prevalence per patient, study, series: groups with at least one positive slice.
    for (int level = 0; level < 3; ++level) {
      std::unordered_map<std::string, int> pos;
      for (const auto& [img, g] : ids) {
        const std::string& key = level == 0 ? g.patient : level == 1 ? g.study : g.series;
        auto it = labels.find(img);
        pos[key] |= it != labels.end() && it->second[5];
      }
      int64_t n = 0;
      for (auto& [k, v] : pos) n += v;
      const char* name[3] = {"patients", "studies", "series"};
      rep.prevalence[std::string(name[level]) + " with any hemorrhage"] = pos.empty() ? 0 : double(n) / double(pos.size());
      rep.prevalence[std::string(name[level])] = double(pos.size());
    }
  }
  // CSVs of every table.
  const LabelStats& L = rep.labels;
  CsvWriter counts((fs::path(o.out) / "labels_counts.csv").string(), {"label", "images", "fraction"});
  for (size_t k = 0; k < 6; ++k)
    counts.row({kSubtypes[k], std::to_string(L.positives[k]), ds(double(L.positives[k]) / double(std::max<int64_t>(1, L.images)))});
  counts.row({"normal", std::to_string(L.normal), ds(double(L.normal) / double(std::max<int64_t>(1, L.images)))});
  counts.commit();
  std::vector<std::string> co_header{"subtype"};
  for (size_t k = 0; k < 5; ++k) co_header.push_back(kSubtypes[k]);
  CsvWriter co((fs::path(o.out) / "cooccurrence.csv").string(), co_header);
  for (size_t a = 0; a < 5; ++a) {
    std::vector<std::string> row{kSubtypes[a]};
    for (size_t b = 0; b < 5; ++b) row.push_back(std::to_string(L.cooccurrence[a][b]));
    co.row(row);
  }
  co.commit();
  CsvWriter per((fs::path(o.out) / "subtypes_per_positive_image.csv").string(), {"subtypes", "images"});
  for (size_t k = 0; k < 6; ++k) per.row({std::to_string(k), std::to_string(L.subtypes_per_positive[k])});
  per.commit();
  CsvWriter odd((fs::path(o.out) / "oddities.csv").string(), {"oddity", "count"});
  for (auto [name, v] : std::vector<std::pair<std::string, int64_t>>{
           {"exact duplicate rows", L.duplicate_rows}, {"conflicting rows", L.conflicting_rows},
           {"malformed lines", L.malformed_lines}, {"images without all six rows", L.incomplete_images},
           {"subtype without any", L.subtype_without_any}, {"any without subtype", L.any_without_subtype},
           {"labelled ids without DICOM", L.labelled_without_dicom}, {"DICOM without labels", L.dicom_without_labels}})
    odd.row({name, v < 0 ? "" : std::to_string(v)});
  odd.commit();
  if (rep.has_attributes) {
    for (const auto& [attr, values] : rep.attributes.tables) {
      std::string file = "dicom_" + attr;
      for (char& c : file)
        if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
      CsvWriter t((fs::path(o.out) / (file + ".csv")).string(), {"value", "files"});
      for (const auto& [v, n] : values) t.row({v, std::to_string(n)});
      t.commit();
    }
    CsvWriter u((fs::path(o.out) / "unreadable.csv").string(), {"path", "reason"});
    for (const auto& [p, r] : rep.attributes.unreadable) u.row({p, r});
    u.commit();
  }
  // Contact sheets, one per category, examples in id order (deterministic):
  // from ich-window's images when given, else from the DICOM files.
  if (!o.images.empty() || !sources.empty()) {
    const TileSource image = o.images.empty() ? images_from_dicom(sources) : images_from_npy(o.images);
    std::vector<std::string> sorted;
    for (const auto& [img, y] : labels)
      if (o.images.empty() ? sources.count(img) > 0 : fs::exists(fs::path(o.images) / (img + ".npy")))
        sorted.push_back(img);
    std::sort(sorted.begin(), sorted.end());
    for (int cat = -1; cat < 5; ++cat) {
      std::vector<std::string> pick;
      std::vector<Tensor> tiles;
      for (const auto& img : sorted) {
        const auto& y = labels.at(img);
        if (!(cat < 0 ? !y[5] : y[size_t(cat)]) || int(pick.size()) >= o.examples) continue;
        try {  // a slice whose pixels cannot be read is passed over (and listed)
          Tensor t = image(img);
          ICH_CHECK(t.dtype() == DType::UInt8 && t.dim() == 3, "not uint8 (H,W,C)");
          tiles.push_back(t);
          pick.push_back(img);
        } catch (const std::exception& e) {
          rep.sheet_skipped.emplace_back(img, e.what());
        }
      }
      if (!pick.empty())
        rep.sheets.push_back(contact_sheet(o, cat < 0 ? "normal" : kSubtypes[size_t(cat)], pick, tiles, labels));
    }
  }
  // The report.
  std::string md = "# Data set report\n\nLabels: `" + o.labels + "`\n\n## 1. Labels\n\n";
  md += "| label | images | fraction |\n|---|---:|---:|\n";
  for (size_t k = 0; k < 6; ++k)
    md += "| " + std::string(kSubtypes[k]) + " | " + std::to_string(L.positives[k]) + " | " +
          ds(double(L.positives[k]) / double(std::max<int64_t>(1, L.images))) + " |\n";
  md += "| normal | " + std::to_string(L.normal) + " | " + ds(double(L.normal) / double(std::max<int64_t>(1, L.images))) +
        " |\n\n" + std::to_string(L.images) + " images in " + std::to_string(L.rows) + " rows.\n\n";
  md += "Co-occurrence of the subtypes (images with both):\n\n|  |";
  for (size_t k = 0; k < 5; ++k) md += " " + std::string(kSubtypes[k]) + " |";
  md += "\n|---|---:|---:|---:|---:|---:|\n";
  for (size_t a = 0; a < 5; ++a) {
    md += "| " + std::string(kSubtypes[a]) + " |";
    for (size_t b = 0; b < 5; ++b) md += " " + std::to_string(L.cooccurrence[a][b]) + " |";
    md += "\n";
  }
  md += "\nSubtypes per positive image: ";
  for (size_t k = 0; k < 6; ++k) md += std::to_string(k) + ": " + std::to_string(L.subtypes_per_positive[k]) + (k < 5 ? ", " : "\n\n");
  md += "Oddities: see `oddities.csv`";
  for (const auto& p : L.problems) md += "\n- " + p;
  md += "\n\n";
  for (const auto& [k, v] : rep.prevalence) md += "- " + k + ": " + ds(v) + "\n";
  if (rep.has_attributes) {
    const AttributeStats& a = rep.attributes;
    md += "\n## 2. DICOM attributes\n\n" + std::to_string(a.readable) + " of " + std::to_string(a.files) +
          " files readable; " + std::to_string(a.rsna_fix) +
          " have the RSNA 12-bit header (ich-window fixes those whose values show it, docs/data.md); " +
          std::to_string(a.multi_window) + " have multi-valued windows (" + std::to_string(a.multi_window_differing) +
          " with differing values)";
    if (a.files_per_second > 0) md += "; headers scanned at " + ds(a.files_per_second) + " files/s";
    md += ".\n";
    for (const auto& [attr, values] : a.tables) {
      md += "\n| " + attr + " | files |\n|---|---:|\n";
      for (const auto& [v, n] : values) md += "| " + v + " | " + std::to_string(n) + " |\n";
    }
    if (!a.unreadable.empty()) {
      md += "\nUnreadable files:\n\n| file | reason |\n|---|---|\n";
      for (const auto& [p, r] : a.unreadable) md += "| " + p + " | " + r + " |\n";
    }
  }
  if (!rep.sheets.empty()) {
    md += "\n## 3. Examples per category\n\n";
    md += o.images.empty() ? "Windowed from the DICOM files (brain window 40/80).\n\n"
                           : "From ich-window's images in `" + o.images + "` (channel 0).\n\n";
    for (const auto& s : rep.sheets) md += "![" + fs::path(s).stem().string() + "](" + fs::path(s).filename().string() + ")\n\n";
    for (const auto& [id, why] : rep.sheet_skipped) md += "- passed over " + id + ": " + why + "\n";
  }
  write_file_atomic((fs::path(o.out) / "report.md").string(), md);
  return rep;
}

std::string summary_text(const ExploreReport& r) {
  const LabelStats& L = r.labels;
  std::string s = std::to_string(L.images) + " images: ";
  for (size_t k = 0; k < 6; ++k) s += std::string(kSubtypes[k]) + " " + std::to_string(L.positives[k]) + ", ";
  s += "normal " + std::to_string(L.normal) + "\n";
  s += "oddities: " + std::to_string(L.duplicate_rows) + " duplicate rows, " + std::to_string(L.conflicting_rows) +
       " conflicting, " + std::to_string(L.malformed_lines) + " malformed, " + std::to_string(L.subtype_without_any) +
       " subtype without any, " + std::to_string(L.any_without_subtype) + " any without subtype\n";
  if (r.has_attributes)
    s += "DICOM: " + std::to_string(r.attributes.readable) + "/" + std::to_string(r.attributes.files) + " readable, " +
         std::to_string(r.attributes.rsna_fix) + " with the RSNA 12-bit header, " +
         std::to_string(r.attributes.multi_window) +
         " multi-valued windows" +
         (r.attributes.files_per_second > 0 ? ", " + fmt_double(r.attributes.files_per_second, 4) + " headers/s" : "") +
         "\n";
  s += std::to_string(r.sheets.size()) + " contact sheets\n";
  return s;
}

}  // namespace ich
