#include "infer/calibrate.h"

#include "data/metrics.h"
#include "data/split.h"
#include "engine/device_select.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

namespace ich {

CalibrateResult run_calibrate(const CalibrateOptions& o, const std::function<void(int64_t, int64_t)>& progress) {
  ICH_CHECK(o.batch >= 1, "--batch ", o.batch, " must be positive");
  ICH_CHECK(o.out != o.checkpoint, "--out ", o.out, " is the --checkpoint: write the calibrated one beside it");
  const Device dev = pick_device(o.device);
  LoadedCheckpoint c = load_checkpoint(o.checkpoint);
  c.model->to(dev);
  const std::vector<SplitRow> rows = read_split(o.data);
  ICH_CHECK(!rows.empty(), o.data, ": no slices");
  SliceDataset ds(rows, o.images);
  ds.set_context(int(c.meta.context));
  const std::vector<std::array<double, 6>> z = predict_logits(*c.model, ds, c.meta.size, o.batch, dev, progress);
  CalibrateResult r;
  r.images = int64_t(rows.size());
  std::vector<std::array<int, 6>> y(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) y[i] = rows[i].y;
  CheckpointMeta plain = c.meta;  // the loss before: the checkpoint as it was (uncalibrated)
  plain.calibrated = false;
  for (size_t k = 0; k < 6; ++k) {
    std::vector<double> zk(z.size());
    std::vector<int> yk(z.size());
    for (size_t i = 0; i < z.size(); ++i) zk[i] = z[i][k], yk[i] = y[i][k];
    r.fits[k] = fit_temperature(zk, yk);
    c.meta.temperature[k] = r.fits[k].temperature;
  }
  c.meta.calibrated = true;
  std::vector<std::array<double, 6>> before(z.size()), after(z.size());
  for (size_t i = 0; i < z.size(); ++i) {
    before[i] = probabilities_of(z[i].data(), plain);
    after[i] = probabilities_of(z[i].data(), c.meta);
  }
  r.weighted_log_loss_before = weighted_log_loss(before, y);
  r.weighted_log_loss_after = weighted_log_loss(after, y);
  save_checkpoint(o.out, *c.model, nullptr, c.meta);
  return r;
}

}  // namespace ich
