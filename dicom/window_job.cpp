// window_job.cpp: the ich-window job over a folder (window_job.h).
#include "dicom/window_job.h"

#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <filesystem>
#include <unordered_map>

#include "dicom/dicom_direct.h"
#include "engine/error.h"
#include "io/atomic_file.h"
#include "io/csv.h"
#include "io/journal.h"
#include "io/npy.h"
#include "io/parallel.h"

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
  // Start the image's writeback now, without waiting for it: the journal's
  // syncfs at the end of the chunk then finds most pages already on disk
  // instead of writing the whole chunk while the converter waits (measured:
  // a third of a one-window run was that wait). Advisory: an error here
  // only means the syncfs does the work.
  if (err == 0) (void)::sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
  if (::close(fd) != 0 && err == 0) err = errno;
  if (err != 0) {
    ::unlink(path.c_str());
    throw Error(detail::cat("cannot write ", path, ": ", std::strerror(err)));
  }
}

}  // namespace

const std::vector<std::string>& meta_columns() {
  static const std::vector<std::string> c = {
      "path",  "image_id",  "frame",     "file",      "patient_id",    "study_uid",     "series_uid",
      "z",     "rows",      "cols",      "modality",  "transfer_syntax", "slope",       "intercept",
      "window_center", "window_width", "windows", "pixel_spacing", "rsna_fix", "position", "orientation", "status"};
  return c;
}

namespace {

std::string join_doubles(const double* v, int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += (i ? ";" : "") + fmt_double(v[i], 10);
  return s;
}

// One slice's meta.csv row.
std::vector<std::string> meta_row(const std::string& path, const std::string& id, const WindowedFile& f,
                                  const std::string& wspec) {
  const DicomSlice& s = f.slice;
  return {path,
          id,
          std::to_string(s.frame),
          id + ".npy",
          s.patient_id,
          s.study_uid,
          s.series_uid,
          s.has_z ? fmt_double(s.z, 10) : "",
          std::to_string(s.rows),
          std::to_string(s.cols),
          s.modality,
          s.transfer_syntax_uid,
          s.lut ? "" : fmt_double(s.slope),  // a Modality LUT gives the values instead
          s.lut ? "" : fmt_double(s.intercept),
          s.window_centers.empty() ? "" : fmt_double(s.window_centers[0]),
          s.window_widths.empty() ? "" : fmt_double(s.window_widths[0]),
          wspec,
          s.spacing_row > 0 ? fmt_double(s.spacing_row) + ";" + fmt_double(s.spacing_col) : "",
          f.rsna_fixed ? "1" : "0",
          s.has_z ? fmt_double(s.position[0], 10) + ";" + fmt_double(s.position[1], 10) + ";" + fmt_double(s.position[2], 10)
                  : "",
          s.has_orientation ? join_doubles(s.orientation, 6) : "",
          "ok"};
}

std::vector<std::string> error_row(const std::string& path, const std::string& wspec) {
  std::vector<std::string> r(meta_columns().size());
  r.front() = path;
  r[16] = wspec;
  r.back() = "error";
  return r;
}

// The journal's record of one file: "ok", path, then its slices' meta rows
// one after the other; or "error", path, reason.
struct FileResult {
  std::string error;
  std::vector<std::vector<std::string>> rows;  // meta rows, one per slice
  std::vector<std::string> parts;              // where each slice's image waits for its name
};

JournalRecord to_record(const std::string& path, const FileResult& r) {
  JournalRecord rec{r.error.empty() ? "ok" : "error", path};
  if (!r.error.empty()) {
    rec.push_back(r.error);
    return rec;
  }
  for (const auto& row : r.rows) rec.insert(rec.end(), row.begin(), row.end());
  return rec;
}

FileResult from_record(const JournalRecord& rec, const std::string& where) {
  const size_t m = meta_columns().size();
  FileResult r;
  const bool ok = rec.size() >= 2 && rec[0] == "ok" && (rec.size() - 2) % m == 0 && rec.size() > 2;
  ICH_CHECK(ok || (rec.size() == 3 && rec[0] == "error"), where, ": a record that is neither ok nor error");
  if (!ok) {
    r.error = rec[2];
    return r;
  }
  for (size_t k = 2; k < rec.size(); k += m) r.rows.emplace_back(rec.begin() + long(k), rec.begin() + long(k + m));
  return r;
}

void remove_stale_parts(const std::string& out) {
  for (const auto& e : fs::directory_iterator(out))
    if (e.is_regular_file() && e.path().filename().string().find(".npy.part") != std::string::npos)
      fs::remove(e.path());
}

}  // namespace

WindowReport window_dicoms(const WindowOptions& o, const std::function<void(int64_t, int64_t)>& progress) {
  SliceWindowing how;
  how.windows = parse_windows(o.windows);
  how.size = o.size;
  how.rsna_fix = o.rsna_fix;
  how.any_modality = o.any_modality;
  ICH_CHECK(o.chunk >= 1, "chunk of ", o.chunk, " files");
  fs::create_directories(o.out);
  const std::vector<std::string> files = list_files(o.input, o.out);
  ICH_CHECK(!files.empty(), "input ", o.input, " holds no files");
  const std::string wspec = how.windows.empty() ? "dicom" : windows_str(how.windows);
  // What the images depend on: a resumed run must be the same run.
  const JournalRecord settings{"ich-window 2",
                               "input=" + fs::weakly_canonical(o.input).string(),
                               "windows=" + wspec,
                               "size=" + std::to_string(o.size),
                               std::string("rsna_fix=") + (o.rsna_fix ? "1" : "0"),
                               std::string("any_modality=") + (o.any_modality ? "1" : "0"),
                               "chunk=" + std::to_string(o.chunk)};
  Journal journal((fs::path(o.out) / ".ich-window.journal").string(), settings, o.resume);
  remove_stale_parts(o.out);  // images a killed run had not yet named
  remove_atomic_leftovers(o.out, {"meta.csv", "errors.csv"});  // and tables it was writing

  std::unordered_map<std::string, FileResult> done;  // path -> result, from the journal
  std::unordered_map<std::string, std::string> owner;  // image id -> the file that has it
  for (const JournalRecord& rec : journal.records()) {
    ICH_CHECK(rec.size() >= 2, journal.path(), ": a record without a path");
    FileResult r = from_record(rec, journal.path());
    for (const auto& row : r.rows) owner.emplace(row[1], rec[1]);
    done[rec[1]] = std::move(r);
  }
  WindowReport rep;
  for (const std::string& f : files) rep.resumed += done.count(f);

  const int64_t n_files = int64_t(files.size());
  auto recorded = [&](int64_t i) { return done.count(files[size_t(i)]) > 0; };
  for_each_pending_chunk(n_files, o.chunk, recorded, [&](int64_t base, const std::vector<int64_t>& todo) {
    std::vector<FileResult> results(todo.size());
    run_parallel(
        int64_t(todo.size()), o.threads,
        [&](int64_t d, int64_t) {
          if (progress) progress(base + d, n_files);
        },
        [&](int64_t t) {
          const int64_t i = todo[size_t(t)];
          const std::string& path = files[size_t(i)];
          FileResult& r = results[size_t(t)];
          thread_local WindowScratch scratch;
          try {
            window_file(path, how, scratch, [&](const WindowedFile& f) {
              const std::string id = image_id_for(f.slice);
              // Written under a name of its own first: two files may carry
              // the same image id, and which of them gets the real name is
              // decided in file order, not by which thread finishes first.
              const std::string part =
                  (fs::path(o.out) / (id + ".npy.part" + std::to_string(i) + "_" + std::to_string(r.parts.size())))
                      .string();
              r.parts.push_back(part);
              write_part(part, npy_header(DType::UInt8, {f.h, f.w, f.channels}), f.pixels,
                         size_t(f.h) * size_t(f.w) * size_t(f.channels));
              r.rows.push_back(meta_row(path, id, f, wspec));
            });
          } catch (const std::exception& e) {
            r.error = e.what();
            for (const std::string& p : r.parts) fs::remove(p);
            r.parts.clear();
            r.rows.clear();
          }
        });
    // In file order: the first file with an image id keeps it; a later one
    // is a duplicate (all of its slices go).
    std::vector<JournalRecord> records;
    for (size_t t = 0; t < todo.size(); ++t) {
      const std::string& path = files[size_t(todo[t])];
      FileResult& r = results[t];
      if (r.error.empty()) {
        for (const auto& row : r.rows)
          if (auto it = owner.find(row[1]); it != owner.end() && it->second != path) {
            r.error = "duplicate image id " + row[1] + " (also in " + it->second + ")";
            break;
          }
        if (r.error.empty())
          for (const auto& row : r.rows) owner.emplace(row[1], path);
      }
      for (size_t k = 0; k < r.parts.size(); ++k) {
        if (r.error.empty()) fs::rename(r.parts[k], fs::path(o.out) / r.rows[k][3]);
        else fs::remove(r.parts[k]);
      }
      if (!r.error.empty()) r.rows.clear();
      records.push_back(to_record(path, r));
      done[path] = std::move(r);
    }
    journal.append(records);
  });
  if (progress) progress(n_files, n_files);

  CsvWriter meta((fs::path(o.out) / "meta.csv").string(), meta_columns());
  CsvWriter errors((fs::path(o.out) / "errors.csv").string(), {"path", "reason"});
  for (const std::string& path : files) {
    const FileResult& r = done.at(path);
    ++rep.files;
    if (r.error.empty()) {
      ++rep.converted;
      rep.slices += int64_t(r.rows.size());
      for (const auto& row : r.rows) meta.row(row);
    } else {
      ++rep.failed;
      errors.row({path, r.error});
      meta.row(error_row(path, wspec));
    }
  }
  meta.commit();
  errors.commit();
  return rep;
}

}  // namespace ich
