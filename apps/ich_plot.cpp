// ich-plot: training curves from an ich-train log.csv, as PNG: losses
// (train and validation) and validation AUC per epoch.
#include <cstdio>

#include "apps/app_main.h"
#include "data/csv.h"
#include "data/plot.h"

int main(int argc, char** argv) {
  CLI::App app{
      "Plot RUN/log.csv from ich-train: OUT_losses.png (train and validation loss per epoch) and OUT_auc.png\n"
      "(validation AUC of any, and the mean AUC of the labels). Exit codes: 0 written, 1 failed, 2 bad flags."};
  std::string log, out;
  app.add_option("log", log, "log.csv written by ich-train")->required();
  app.add_option("out", out, "output prefix, e.g. run/curves")->required();
  return ich::run_app("ich-plot", app, argc, argv, [&] {
    const ich::CsvTable t = ich::read_csv(log);
    const size_t ce = t.column("epoch"), ct = t.column("train_loss"), cv = t.column("valid_loss"),
                 ca = t.column("valid_auc_any"), cm = t.column("valid_auc_mean");
    ICH_CHECK(!t.rows.empty(), "log ", log, ": no epochs yet");
    std::vector<std::pair<double, double>> tr, va, auc_any, auc_mean;
    double ymax = 0, x1 = 1;
    for (size_t i = 0; i < t.rows.size(); ++i) {
      const auto& r = t.rows[i];
      const double e = std::stod(r[ce]);
      try {
        tr.emplace_back(e, std::stod(r[ct]));
        va.emplace_back(e, std::stod(r[cv]));
        auc_any.emplace_back(e, std::stod(r[ca]));
        auc_mean.emplace_back(e, std::stod(r[cm]));
      } catch (const std::exception&) {
        throw ich::Error("log " + log + " line " + std::to_string(t.line_of[i]) + ": a value is not a number");
      }
      ymax = std::max({ymax, tr.back().second, va.back().second});
      x1 = std::max(x1, e);
    }
    ich::write_line_plot(out + "_losses.png", {{"train loss", tr, ich::palette(0)}, {"valid loss", va, ich::palette(1)}},
                         0, x1, 0, ymax * 1.1, false);
    ich::write_line_plot(out + "_auc.png",
                         {{"AUC any", auc_any, ich::palette(2)}, {"mean AUC", auc_mean, ich::palette(3)}}, 0, x1, 0.5,
                         1.0, false);
    std::printf("%s_losses.png (blue: train loss, orange: validation loss), %s_auc.png (green: AUC any, red: mean "
                "AUC), %zu epochs\n", out.c_str(), out.c_str(), t.rows.size());
    return 0;
  });
}
