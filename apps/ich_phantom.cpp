// ich-phantom: synthetic head-CT series as real DICOM files, laid out like
// the RSNA data (phantom/phantom.h).
#include <cstdio>

#include "apps/app_main.h"
#include "apps/progress.h"
#include "phantom/phantom.h"

int main(int argc, char** argv) {
  CLI::App app{
      "Write a synthetic head-CT data set: OUT/dicom/ID_*.dcm, OUT/labels.csv (RSNA format), OUT/manifest.csv.\n"
      "Exit codes: 0 written, 1 failed, 2 bad flags."};
  ich::PhantomOptions o;
  app.add_option("--out", o.out, "output folder")->required();
  app.add_option("--difficulty", o.difficulty,
                 "realistic: a tilted 3-D head with CT texture, noise, skull base, partial-volume blood from large to "
                 "one-slice lesions (phantom/phantom_realistic.cpp); easy: the first phantom's bright, sharp lesions "
                 "(fast tests)")
      ->check(CLI::IsMember({"realistic", "easy"}))
      ->capture_default_str();
  app.add_option("--patients", o.patients, "patients (one study and one series each)")->capture_default_str();
  app.add_option("--slices-per-series", o.slices_per_series, "slices per series (easy: 5 mm apart; realistic: skull base to vertex)")->capture_default_str();
  app.add_option("--size", o.size, "rows and columns of most series (a few differ, as in RSNA)")
      ->capture_default_str();
  app.add_option("--seed", o.seed, "seed: the same seed gives the same files")->capture_default_str();
  app.add_option("--corrupt-fraction", o.corrupt_fraction, "fraction of files written truncated or as garbage")
      ->capture_default_str();
  app.add_option("--patient-prefix", o.patient_prefix,
                 "PatientID <prefix><n> (n = 0, 1, ...) instead of a random id, e.g. CQ500-CT- for CQ500's layout");
  app.add_option("--threads", o.threads, "writer threads (0: all cores)")->capture_default_str();
  return ich::run_app("ich-phantom", app, argc, argv, [&] {
    ich::Progress progress("ich-phantom", "slices");
    const ich::PhantomSummary s = ich::write_phantom(o, std::ref(progress));
    std::printf("%lld slices from %d patients (%lld with hemorrhage, %.1f%%; %lld corrupt) in %s\n",
                (long long)s.slices, o.patients, (long long)s.positives, 100.0 * double(s.positives) / double(s.slices),
                (long long)s.corrupt, o.out.c_str());
    return 0;
  });
}
