// ich-window: DICOM slices to windowed uint8 images (dicom/window_job.h).
#include <malloc.h>

#include <cstdio>

#include "apps/app_main.h"
#include "apps/progress.h"
#include "dicom/window_job.h"

int main(int argc, char** argv) {
  CLI::App app{
      "Window DICOM slices into uint8 images: OUT/<image_id>.npy (H x W x C), OUT/meta.csv, OUT/errors.csv.\n"
      "A multi-frame file (e.g. Enhanced CT) gives one image per frame, <SOPInstanceUID>_f<N>. Only CT is\n"
      "converted unless --any-modality. Files that are not DICOM or cannot be decoded are listed in errors.csv\n"
      "with the reason and skipped. A run killed at any moment goes on with --resume (same flags): only what\n"
      "is missing is converted, and the outputs are those of an uninterrupted run.\n"
      "Exit codes: 0 every file converted, 3 finished but some files failed (see errors.csv),\n"
      "1 the run could not go on (e.g. output not writable, --resume with other flags), 2 bad flags."};
  ich::WindowOptions o;
  bool no_fix = false;
  app.add_option("--input", o.input, "a DICOM file, or a folder: every regular file under it")->required();
  app.add_option("--out", o.out, "output folder")->required();
  app.add_option("--windows", o.windows,
                 "windows as channels: names (brain 40/80, subdural 80/200, soft 40/380, bone 600/2800, stroke "
                 "40/40), center/width pairs (e.g. 40/80,80/200), or 'dicom' (the file's own first window)")
      ->capture_default_str();
  app.add_option("--size", o.size, "resize to SIZE x SIZE (bilinear, before windowing); 0 keeps the file's size")
      ->capture_default_str();
  app.add_option("--threads", o.threads, "worker threads (0: all cores)")->capture_default_str();
  app.add_flag("--no-rsna-fix", no_fix,
               "do not correct the RSNA 12-bit files (CT, BitsStored 12, unsigned, intercept > -100, and at least 1% "
               "of the stored values at 3096 or above: docs/data.md)");
  app.add_flag("--any-modality", o.any_modality, "convert files of any modality (MR, CR, ...), not only CT");
  app.add_flag("--resume", o.resume, "go on with an interrupted run into the same --out (same flags); with nothing to resume, start fresh (one command line for a retry loop)");
  app.add_option("--chunk", o.chunk, "files converted between two records of the resume journal")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  return ich::run_app("ich-window", app, argc, argv, [&] {
    // Every slice allocates a few MB and frees them again; glibc would hand
    // such blocks back to the kernel each time (mmap/munmap, then a page fault
    // per 4 KiB on reuse). Keeping them in the heap doubles the throughput.
    mallopt(M_MMAP_THRESHOLD, 256 << 20);
    mallopt(M_TRIM_THRESHOLD, 512 << 20);
    o.rsna_fix = !no_fix;
    ich::Progress progress("ich-window");
    const ich::WindowReport r = ich::window_dicoms(o, std::ref(progress));
    std::printf("%lld files (%lld done by an earlier run): %lld converted into %lld images, %lld failed (see "
                "%s/errors.csv)\n",
                (long long)r.files, (long long)r.resumed, (long long)r.converted, (long long)r.slices,
                (long long)r.failed, o.out.c_str());
    return r.failed > 0 ? 3 : 0;
  });
}
