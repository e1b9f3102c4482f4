// ich-explore: explore a data set before training (report/explore.h).
#include <cstdio>

#include "apps/app_main.h"
#include "apps/progress.h"
#include "report/explore.h"

int main(int argc, char** argv) {
  CLI::App app{
      "Explore a labelled head-CT set: OUT/report.md (labels, DICOM attributes, oddities), a CSV per table,\n"
      "and one PNG contact sheet per category. Exit codes: 0 written, 1 failed, 2 bad flags."};
  ich::ExploreOptions o;
  app.add_option("--labels", o.labels, "RSNA labels CSV (ID,Label)")->required();
  auto* dicom = app.add_option("--dicom", o.dicom, "DICOM folder: headers are scanned (pixels not decoded)");
  app.add_option("--meta", o.meta, "or ich-window's meta.csv instead of scanning DICOM")->excludes(dicom);
  app.add_option("--images", o.images,
                 "ich-window's .npy folder, for the contact sheets (without it they are windowed from --dicom)");
  app.add_option("--out", o.out, "output folder")->required();
  app.add_option("--examples", o.examples, "slices per contact sheet")->capture_default_str();
  app.add_option("--threads", o.threads, "header-scanning threads (0: all cores)")->capture_default_str();
  return ich::run_app("ich-explore", app, argc, argv, [&] {
    ich::Progress progress("ich-explore");
    const ich::ExploreReport r = ich::explore(o, std::ref(progress));
    std::printf("%sreport: %s/report.md\n", ich::summary_text(r).c_str(), o.out.c_str());
    return 0;
  });
}
