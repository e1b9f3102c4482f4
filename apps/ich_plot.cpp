// ich-plot: training curves from an ich-train log.csv, as PNG charts with
// titles, axes, tick values and legends (report/curves.h).
#include <cstdio>

#include "apps/app_main.h"
#include "io/csv.h"
#include "report/curves.h"

int main(int argc, char** argv) {
  CLI::App app{
      "Plot RUN/log.csv from ich-train: OUT_losses.png (train and validation loss per epoch), OUT_metric.png (the\n"
      "competition's weighted log loss) and OUT_auc.png (validation AUC of any, the mean, and each subtype).\n"
      "Exit codes: 0 written, 1 failed, 2 bad flags."};
  std::string log, out;
  app.add_option("log", log, "log.csv written by ich-train")->required();
  app.add_option("out", out, "output prefix, e.g. run/curves")->required();
  return ich::run_app("ich-plot", app, argc, argv, [&] {
    const ich::CsvTable t = ich::read_csv(log);
    ich::write_chart_png(out + "_losses.png", ich::loss_chart(t));
    ich::write_chart_png(out + "_metric.png", ich::metric_chart(t));
    ich::write_chart_png(out + "_auc.png", ich::auc_chart(t));
    std::printf("wrote %s_losses.png, %s_metric.png, %s_auc.png\n", out.c_str(), out.c_str(), out.c_str());
    return 0;
  });
}
