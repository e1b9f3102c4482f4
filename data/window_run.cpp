#include "data/window_run.h"

#include <algorithm>
#include <filesystem>
#include <unordered_map>

#include "data/csv.h"
#include "data/npy.h"
#include "data/parallel.h"
#include "engine/error.h"

namespace ich {

namespace fs = std::filesystem;

std::vector<std::string> list_files(const std::string& input, const std::string& exclude) {
  ICH_CHECK(fs::exists(input), "input ", input, " does not exist");
  if (!fs::is_directory(input)) return {input};
  const fs::path ex = exclude.empty() ? fs::path() : fs::weakly_canonical(exclude);
  std::vector<std::string> out;
  for (auto it = fs::recursive_directory_iterator(input, fs::directory_options::skip_permission_denied);
       it != fs::recursive_directory_iterator(); ++it) {
    if (!ex.empty() && it->is_directory() && fs::weakly_canonical(it->path()) == ex) {
      it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file()) out.push_back(it->path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string image_id_for(const DicomSlice& s) {
  const std::string& u = s.sop_uid;
  const bool safe = !u.empty() && u.size() <= 128 && u != "." && u != ".." &&
                    std::all_of(u.begin(), u.end(), [](char c) {
                      return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
                    });
  return safe ? u : fs::path(s.path).stem().string();
}

std::vector<uint8_t> windowed_pixels(const DicomSlice& s, const std::vector<Window>& windows, int size,
                                     bool rsna_fix, int* out_h, int* out_w) {
  std::vector<Window> ws = windows;
  if (ws.empty()) {  // "dicom": the file's own first window
    ICH_CHECK(!s.window_centers.empty() && !s.window_widths.empty() && s.window_widths[0] > 0,
              "no usable WindowCenter/WindowWidth for --windows dicom");
    ws = {{s.window_centers[0], s.window_widths[0]}};
  }
  const bool invert = s.photometric == "MONOCHROME1";
  int h = s.rows, w = s.cols;
  if (size <= 0 || (size == h && size == w)) {
    // Stored values are integers in a small range: one lookup table per
    // window, built with the exact formula, maps them straight to bytes.
    *out_h = h;
    *out_w = w;
    const auto [mn, mx] = std::minmax_element(s.raw.begin(), s.raw.end());
    const int32_t lo = *mn;
    const size_t span = size_t(int64_t(*mx) - lo) + 1, C = ws.size();
    std::vector<uint8_t> lut(span * C);
    for (size_t k = 0; k < span; ++k)
      for (size_t c = 0; c < C; ++c) {
        const uint8_t u = window_hu_to_u8(hounsfield_of(s, lo + int32_t(k), rsna_fix), ws[c]);
        lut[k * C + c] = invert ? uint8_t(255 - u) : u;
      }
    std::vector<uint8_t> out(s.raw.size() * C);
    for (size_t i = 0; i < s.raw.size(); ++i) {
      const uint8_t* e = &lut[size_t(s.raw[i] - lo) * C];
      for (size_t c = 0; c < C; ++c) out[i * C + c] = e[c];
    }
    return out;
  }
  std::vector<float> hu = hounsfield(s, rsna_fix);
  {
    hu = resize_bilinear(hu, h, w, size, size);
    h = w = size;
  }
  *out_h = h;
  *out_w = w;
  return window_image(hu, ws, invert);
}

WindowReport window_dicoms(const WindowOptions& o, const std::function<void(int64_t, int64_t)>& progress) {
  const std::vector<Window> windows = parse_windows(o.windows);
  fs::create_directories(o.out);
  const std::vector<std::string> files = list_files(o.input, o.out);
  ICH_CHECK(!files.empty(), "input ", o.input, " holds no files");
  struct Result {
    std::string id, part;  // image id, and where its image waits (see below)
    std::vector<std::string> meta;
    std::string error;
  };
  std::vector<Result> results(files.size());
  const std::string wspec = windows.empty() ? "dicom" : windows_str(windows);
  run_parallel(int64_t(files.size()), o.threads, progress, [&](int64_t i) {
    const std::string& path = files[size_t(i)];
    Result& r = results[size_t(i)];
    try {
      const DicomSlice s = read_dicom(path);
      const std::string id = image_id_for(s);
      int h, w;
      const std::vector<uint8_t> px = windowed_pixels(s, windows, o.size, o.rsna_fix, &h, &w);
      const int64_t C = int64_t(px.size()) / (int64_t(h) * w);
      // Written under a name of its own first: two files may carry the same
      // image id, and which of them gets the real name is decided after the
      // run, in file order, not by which thread finishes first.
      r.id = id;
      r.part = (fs::path(o.out) / (id + ".npy.part" + std::to_string(i))).string();
      write_npy_u8(r.part, px.data(), {h, w, C}, /*durable=*/false);
      r.meta = {path,
                id,
                id + ".npy",
                s.patient_id,
                s.study_uid,
                s.series_uid,
                s.has_z ? fmt_double(s.z, 10) : "",
                std::to_string(s.rows),
                std::to_string(s.cols),
                fmt_double(s.slope),
                fmt_double(s.intercept),
                s.window_centers.empty() ? "" : fmt_double(s.window_centers[0]),
                s.window_widths.empty() ? "" : fmt_double(s.window_widths[0]),
                wspec,
                s.spacing_row > 0 ? fmt_double(s.spacing_row) + ";" + fmt_double(s.spacing_col) : "",
                o.rsna_fix && needs_rsna_fix(s) ? "1" : "0",
                "ok"};
    } catch (const std::exception& e) {
      r.error = e.what();
    }
  });
  // The first file (in sorted order) with an image id keeps it; later ones
  // are duplicates.
  std::unordered_map<std::string, size_t> owner;
  for (size_t i = 0; i < files.size(); ++i) {
    Result& r = results[i];
    if (!r.error.empty()) continue;
    auto [it, fresh] = owner.emplace(r.id, i);
    if (fresh) {
      fs::rename(r.part, fs::path(o.out) / (r.id + ".npy"));
    } else {
      fs::remove(r.part);
      r.error = "duplicate image id " + r.id + " (also in " + files[it->second] + ")";
    }
  }
  WindowReport rep;
  CsvWriter meta((fs::path(o.out) / "meta.csv").string(),
                 {"path", "image_id", "file", "patient_id", "study_uid", "series_uid", "z", "rows", "cols", "slope",
                  "intercept", "window_center", "window_width", "windows", "pixel_spacing", "rsna_fix", "status"});
  CsvWriter errors((fs::path(o.out) / "errors.csv").string(), {"path", "reason"});
  for (size_t i = 0; i < files.size(); ++i) {
    ++rep.files;
    if (results[i].error.empty()) {
      ++rep.converted;
      meta.row(results[i].meta);
    } else {
      ++rep.failed;
      errors.row({files[i], results[i].error});
      meta.row({files[i], "", "", "", "", "", "", "", "", "", "", "", "", wspec, "", "", "error"});
    }
  }
  meta.commit();
  errors.commit();
  return rep;
}

}  // namespace ich
