// summary.h: a table of every layer of a model: output shape, parameters and
// multiply-adds, from one forward pass with a forward observer.
//
// Multiply-adds count convolutions and linear layers (as torchvision's
// published GFLOPS figures do): a Conv2d output element costs
// (in_channels/groups)*kh*kw multiply-adds, a Linear output in_features.
#pragma once
#include <string>
#include <vector>

#include "layers/module.h"

namespace ich {

struct LayerRow {
  std::string name, type;
  Shape output;
  int64_t params = 0;  // the module's own parameters (not its children's)
  int64_t macs = 0;
};

// Runs `model` in eval mode, without gradients, on zeros of `input` shape,
// and returns one row per leaf module in execution order.
std::vector<LayerRow> summarize(Module& model, const Shape& input);

// Rows grouped by the first component of their name ("layer3", "fc", ...),
// in order of first appearance; output is the group's last output.
std::vector<LayerRow> group_by_stage(const std::vector<LayerRow>& rows);

}  // namespace ich
