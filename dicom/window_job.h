// window_job.h: the ich-window job: DICOM files in, windowed uint8 images
// out, one DIR/<image_id>.npy (H x W x C) per slice (per frame of a
// multi-frame file), plus DIR/meta.csv (one row per slice, and one per file
// that failed) and DIR/errors.csv (path, reason) for files that could not be
// converted. A bad file is reported and skipped; the run goes on. A run
// killed at any moment resumes with `resume` (io/journal.h): it converts
// only what is missing, and its outputs are byte for byte an uninterrupted
// run's.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "dicom/window_slice.h"

namespace ich {

struct WindowOptions {
  std::string input;  // a file, or a folder: every regular file under it
  std::string out;
  std::string windows = "brain,subdural,soft";  // see parse_windows(); "dicom": the file's first window
  int size = 0;
  int threads = 0;     // 0: all cores
  bool rsna_fix = true;
  bool any_modality = false;
  bool resume = false;  // go on with an interrupted run into the same folder
  int64_t chunk = 2048;  // files converted between two journal records
};

struct WindowReport {
  int64_t files = 0, converted = 0, failed = 0, slices = 0;
  int64_t resumed = 0;  // files an earlier run had done
};

// Every regular file under `input` (or `input` itself), sorted, skipping
// anything under `exclude` (the output folder when it lies inside).
std::vector<std::string> list_files(const std::string& input, const std::string& exclude = "");

// The meta.csv columns, in order.
const std::vector<std::string>& meta_columns();

WindowReport window_dicoms(const WindowOptions& o, const std::function<void(int64_t, int64_t)>& progress = nullptr);

}  // namespace ich
