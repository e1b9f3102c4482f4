// fixtures.h: access to the committed PyTorch reference fixtures.
#pragma once
#include <string>

#include "weights/weights_file.h"

namespace ich::test {

// tests/fixtures/ops.ichw, written by tests/reference/gen_op_fixtures.py.
inline const WeightsFile& op_fixtures() {
  static const WeightsFile f = WeightsFile::open(std::string(ICH_SOURCE_DIR) + "/tests/fixtures/ops.ichw");
  return f;
}

// A fixture tensor as a leaf, optionally requiring grad.
inline Tensor fx(const std::string& name, bool requires_grad = false) {
  Tensor t = op_fixtures().read(name);
  if (requires_grad) t.set_requires_grad(true);
  return t;
}
inline bool has_fx(const std::string& name) { return op_fixtures().find(name) != nullptr; }

}  // namespace ich::test
