#include "infer/ensemble.h"

#include "engine/autograd.h"
#include "engine/ops.h"
#include "layers/resnext_compiled.h"
#include "train/trainer.h"

namespace ich {

Ensemble load_ensemble(const std::vector<std::string>& paths, Device dev, Tta tta, const LoadedCheckpoint* first,
                       const std::string& precision) {
  ICH_CHECK(!paths.empty(), "no --checkpoint");
  Ensemble e;
  e.tta = tta;
  e.paths = paths;
  for (const std::string& p : paths) {
    e.members.push_back(first && e.members.empty() ? *first : load_checkpoint(p));
    const CheckpointMeta& m = e.members.back().meta;
    const CheckpointMeta& f = e.members.front().meta;
    ICH_CHECK(m.windows == f.windows && m.size == f.size && m.context == f.context, "--checkpoint ", p, " reads ",
              m.windows, " at ", m.size, " px with context ", m.context, "; ", paths.front(), " reads ", f.windows,
              " at ", f.size, " px with context ", f.context, ": members of an ensemble must read the same input");
    e.members.back().model->to(dev);
    e.members.back().model->eval();
    apply_inference_precision(*e.members.back().model, precision, dev);
  }
  return e;
}

std::vector<std::array<double, 6>> ensemble_probs(Ensemble& e, const Tensor& x, Device dev) {
  NoGradGuard ng;
  const std::vector<Tensor> views = tta_views(x, e.tta);
  const size_t B = size_t(x.size(0));
  std::vector<std::array<double, 6>> sum(B, std::array<double, 6>{});
  for (LoadedCheckpoint& m : e.members)
    for (const Tensor& v : views) {
      const std::vector<std::array<double, 6>> p = probabilities((*m.model)(to_device_input(v, dev)), &m.meta);
      for (size_t j = 0; j < B; ++j)
        for (size_t k = 0; k < 6; ++k) sum[j][k] += p[j][k];
    }
  const double n = double(e.members.size() * views.size());
  for (auto& row : sum)
    for (double& v : row) v /= n;
  return sum;
}

std::vector<std::array<double, 6>> ensemble_predict(Ensemble& e, const SliceDataset& ds, int64_t batch, Device dev,
                                                    const std::function<void(int64_t, int64_t)>& progress) {
  std::vector<std::array<double, 6>> out(ds.size());
  for_each_eval_batch(
      ds, e.meta().size, batch, dev, {},
      [&](const Batch& b) {
        const std::vector<std::array<double, 6>> p = ensemble_probs(e, b.x, dev);
        for (size_t j = 0; j < b.samples.size(); ++j) out[b.samples[j]] = p[j];
      },
      progress);
  return out;
}

}  // namespace ich
