#include "data/window_run.h"

#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <filesystem>
#include <unordered_map>

#include "data/csv.h"
#include "data/dicom_direct.h"
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

namespace {

// "dicom" (no windows given): the file's own first window.
std::vector<Window> resolve_windows(const DicomSlice& s, const std::vector<Window>& windows) {
  if (!windows.empty()) return windows;
  ICH_CHECK(!s.window_centers.empty() && !s.window_widths.empty() && s.window_widths[0] > 0,
            "no usable WindowCenter/WindowWidth for --windows dicom");
  return {{s.window_centers[0], s.window_widths[0]}};
}

}  // namespace

void WindowTable::prepare(const DicomSlice& s, const std::vector<Window>& ws, bool rsna_fix, int32_t lo,
                          int32_t hi) {
  const bool fix = rsna_fix && needs_rsna_fix(s), invert = s.photometric == "MONOCHROME1";
  const bool same = !table_.empty() && s.slope == slope_ && s.intercept == intercept_ && fix == fix_ &&
                    invert == invert_ && ws.size() == windows_.size() &&
                    std::equal(ws.begin(), ws.end(), windows_.begin(), [](const Window& a, const Window& b) {
                      return a.center == b.center && a.width == b.width;
                    });
  if (same && lo >= lo_ && hi <= hi_) return;
  if (same) {  // grow, in steps, so that a creeping range is not rebuilt every slice
    lo = std::min(lo, lo_);
    hi = std::max(hi, hi_);
  }
  lo_ = int32_t(std::max<int64_t>(INT32_MIN, int64_t(lo) - 256));
  hi_ = int32_t(std::min<int64_t>(INT32_MAX, int64_t(hi) + 256));
  slope_ = s.slope;
  intercept_ = s.intercept;
  fix_ = fix;
  invert_ = invert;
  windows_ = ws;
  channels_ = ws.size();
  stride_ = channels_ == 1 ? 1 : std::max<size_t>(channels_, 4);
  const size_t span = size_t(int64_t(hi_) - lo_) + 1;
  table_.assign(span * stride_, 0);
  for (size_t k = 0; k < span; ++k) {
    const float hu = hounsfield_of(s, int32_t(int64_t(lo_) + int64_t(k)), rsna_fix);
    for (size_t c = 0; c < channels_; ++c) {
      const uint8_t u = window_hu_to_u8(hu, ws[c]);
      table_[k * stride_ + c] = invert ? uint8_t(255 - u) : u;
    }
  }
}

void WindowTable::apply(const DicomSlice& s, const uint8_t* stored, size_t n, uint8_t* out) const {
  const uint8_t* t = table_.data();
  const int64_t lo = lo_;
  const size_t C = channels_;
  if (C == 1) {
    for_each_stored(s, stored, n, [&](size_t i, int32_t v) { out[i] = t[int64_t(v) - lo]; });
  } else if (C <= 4) {
    // Four bytes per entry: one unaligned store per pixel, whose spare bytes
    // the next pixel overwrites (out has 3 bytes to spare at the end).
    for_each_stored(s, stored, n, [&](size_t i, int32_t v) {
      std::memcpy(out + i * C, t + size_t(int64_t(v) - lo) * 4, 4);
    });
  } else {
    for_each_stored(s, stored, n, [&](size_t i, int32_t v) {
      std::memcpy(out + i * C, t + size_t(int64_t(v) - lo) * stride_, C);
    });
  }
}

namespace {

void stored_range(const DicomSlice& s, const uint8_t* stored, size_t n, int32_t* lo, int32_t* hi) {
  if (stored && s.bits_allocated == 16) {
    // 16-bit values stay in 16-bit lanes: twice the pixels per vector step
    // and SSE2's own min/max (the int32 versions need SSE4.1).
    const int sh = 16 - s.bits_stored;
    const bool is_signed = s.pixel_representation == 1;
    const uint16_t flip = (!is_signed && sh == 0) ? 0x8000 : 0;  // full-range unsigned: order as signed
    const uint16_t mask = uint16_t(0xffffu >> sh);
    int16_t a = INT16_MAX, b = INT16_MIN;
    for (size_t i = 0; i < n; ++i) {
      uint16_t u;
      std::memcpy(&u, stored + 2 * i, 2);
      const int16_t v = !is_signed ? int16_t((u & mask) ^ flip)
                        : sh == 0  ? int16_t(u)
                                   : int16_t(int16_t(uint16_t(u << sh)) >> sh);
      a = std::min(a, v);
      b = std::max(b, v);
    }
    *lo = flip ? int32_t(uint16_t(a) ^ flip) : a;
    *hi = flip ? int32_t(uint16_t(b) ^ flip) : b;
    return;
  }
  int32_t a = INT32_MAX, b = INT32_MIN;
  for_each_stored(s, stored, n, [&](size_t, int32_t v) {
    a = std::min(a, v);
    b = std::max(b, v);
  });
  *lo = a;
  *hi = b;
}

}  // namespace

void window_stored(const DicomSlice& s, const uint8_t* stored, const std::vector<Window>& windows, bool rsna_fix,
                   WindowTable& table, std::vector<uint8_t>& out) {
  const std::vector<Window> ws = resolve_windows(s, windows);
  const size_t n = size_t(s.rows) * size_t(s.cols);
  int32_t lo, hi;
  stored_range(s, stored, n, &lo, &hi);
  table.prepare(s, ws, rsna_fix, lo, hi);
  out.resize(n * ws.size() + 3);
  table.apply(s, stored, n, out.data());
  out.resize(n * ws.size());  // keeps the capacity
}

std::vector<uint8_t> windowed_pixels(const DicomSlice& s, const std::vector<Window>& windows, int size,
                                     bool rsna_fix, int* out_h, int* out_w) {
  if (size <= 0 || (size == s.rows && size == s.cols)) {
    // Stored values are integers in a small range: a lookup table built with
    // the exact formula maps them straight to bytes.
    *out_h = s.rows;
    *out_w = s.cols;
    WindowTable table;
    std::vector<uint8_t> out;
    window_stored(s, nullptr, windows, rsna_fix, table, out);
    return out;
  }
  const std::vector<Window> ws = resolve_windows(s, windows);
  const std::vector<float> hu = resize_bilinear(hounsfield(s, rsna_fix), s.rows, s.cols, size, size);
  *out_h = *out_w = size;
  return window_image(hu, ws, s.photometric == "MONOCHROME1");
}

WindowedFile window_file(const std::string& path, const std::vector<Window>& windows, int size, bool rsna_fix,
                         WindowScratch& scratch) {
  WindowedFile r;
  const uint8_t* stored = nullptr;
  r.direct = read_dicom_direct(path, scratch.file, r.slice, stored);
  if (!r.direct) r.slice = read_dicom(path);
  DicomSlice& s = r.slice;
  r.channels = int(windows.empty() ? 1 : windows.size());
  if (size <= 0 || (size == s.rows && size == s.cols)) {
    r.h = s.rows;
    r.w = s.cols;
    window_stored(s, stored, windows, rsna_fix, scratch.table, scratch.out);
  } else {
    if (stored) {  // the resize path works on Hounsfield units of every pixel
      s.raw.resize(size_t(s.rows) * size_t(s.cols));
      for_each_stored(s, stored, s.raw.size(), [&](size_t i, int32_t v) { s.raw[i] = v; });
    }
    scratch.out = windowed_pixels(s, windows, size, rsna_fix, &r.h, &r.w);
  }
  r.pixels = scratch.out.data();
  return r;
}

namespace {

// A file under a temporary name (the caller renames it when the run ends):
// header and pixels in one call; on failure nothing is left behind.
void write_part(const std::string& path, const std::string& header, const uint8_t* data, size_t n) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ICH_CHECK(fd >= 0, "cannot create ", path, ": ", std::strerror(errno));
  const size_t total = header.size() + n;
  size_t done = 0;
  int err = 0;
  while (done < total) {
    iovec iov[2];
    int k = 0;
    if (done < header.size()) iov[k++] = {const_cast<char*>(header.data()) + done, header.size() - done};
    const size_t d = done > header.size() ? done - header.size() : 0;
    iov[k++] = {const_cast<uint8_t*>(data) + d, n - d};
    const ssize_t w = ::writev(fd, iov, k);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      err = w < 0 ? errno : ENOSPC;
      break;
    }
    done += size_t(w);
  }
  if (::close(fd) != 0 && err == 0) err = errno;
  if (err != 0) {
    ::unlink(path.c_str());
    throw Error(detail::cat("cannot write ", path, ": ", std::strerror(err)));
  }
}

}  // namespace

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
    thread_local WindowScratch scratch;
    try {
      const WindowedFile f = window_file(path, windows, o.size, o.rsna_fix, scratch);
      const DicomSlice& s = f.slice;
      const std::string id = image_id_for(s);
      // Written under a name of its own first: two files may carry the same
      // image id, and which of them gets the real name is decided after the
      // run, in file order, not by which thread finishes first.
      r.id = id;
      r.part = (fs::path(o.out) / (id + ".npy.part" + std::to_string(i))).string();
      write_part(r.part, npy_header(DType::UInt8, {f.h, f.w, f.channels}), f.pixels,
                 size_t(f.h) * size_t(f.w) * size_t(f.channels));
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
