// evaluate.h: what ich-eval does: a checkpoint on a labelled split, and with
// a sequence checkpoint the second stage too. Writes OUT/predictions.csv
// (the final probabilities, and the labels), OUT/metrics.json, OUT/roc.png, pr.png and calibration.png (report/curves.h);
// with --sequence also OUT/per_slice/ (the same three for the CNN alone).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "data/metrics.h"

namespace ich {

struct EvalOptions {
  std::string checkpoint, data, images, out, device = "auto";
  // Sequence checkpoints: none (the CNN alone), one, or several trained on
  // the same embeddings (other seeds): their probabilities are averaged.
  std::vector<std::string> sequence;
  int64_t batch = 16;
};

struct EvalResult {
  EvalReport final_report;        // the sequence model's when given, else the CNN's
  EvalReport per_slice;           // the CNN's
  bool with_context = false;
};

EvalResult run_eval(const EvalOptions& o, const std::function<void(const std::string&)>& log = nullptr,
                    const std::function<void(int64_t, int64_t)>& progress = nullptr);

}  // namespace ich
