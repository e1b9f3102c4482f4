#include "layers/summary.h"

#include <map>

#include "engine/autograd.h"
#include "layers/layers.h"

namespace ich {

std::vector<LayerRow> summarize(Module& model, const Shape& input) {
  std::map<const Module*, std::string> names;
  for (auto& [n, m] : model.named_modules()) names[m] = n;
  std::vector<LayerRow> rows;
  const bool was_training = model.is_training();
  model.eval();
  {
    NoGradGuard ng;
    ForwardObserverScope watch([&](Module& m, const Tensor& x, const Tensor& y) {
      if (!m.named_children().empty()) return;  // leaves only
      LayerRow r{names.count(&m) ? names[&m] : "?", m.type_name(), y.shape(), 0, 0};
      for (auto& [n, t] : m.named_parameters()) r.params += t.numel();
      if (auto* c = dynamic_cast<Conv2d*>(&m)) {
        r.macs = y.numel() * c->weight.size(1) * c->weight.size(2) * c->weight.size(3);
      } else if (auto* l = dynamic_cast<Linear*>(&m)) {
        r.macs = y.numel() * l->weight.size(1);
      }
      (void)x;
      rows.push_back(std::move(r));
    });
    model(Tensor::zeros(input));
  }
  model.train(was_training);
  return rows;
}

std::vector<LayerRow> group_by_stage(const std::vector<LayerRow>& rows) {
  std::vector<LayerRow> out;
  for (const LayerRow& r : rows) {
    const std::string stage = r.name.substr(0, r.name.find('.'));
    if (out.empty() || out.back().name != stage) out.push_back({stage, "", {}, 0, 0});
    out.back().params += r.params;
    out.back().macs += r.macs;
    out.back().output = r.output;
  }
  return out;
}

}  // namespace ich
