// analyse.h: one study's instances in, its results out (the processing stage
// of ich-serve): ich-predict's pipeline on the study's folder (so the SR's
// probabilities are ich-predict's on the same files, and a kill mid-study
// resumes from its journal), the study's highest probability per label, the
// key slices by p(any) with their Grad-CAM overlays, then the SR and the
// Secondary Capture images (serve/results.h).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "infer/predict.h"
#include "serve/results.h"
#include "serve/study_state.h"

namespace ich {

struct AnalyseOptions {
  std::string checkpoint, device = "auto";
  std::vector<std::string> sequence;
  std::vector<std::string> ensemble;  // more slice models, averaged (infer/ensemble.h)
  std::string tta = "none";
  std::string precision = "fp32";  // or bf16 (layers/resnext_compiled.h)
  int64_t batch = 16;
  double threshold = 0.5;            // every label's, unless thresholds is given
  std::string thresholds;            // ich-eval --studies' study_thresholds.csv: each label's at `sensitivity`
  double sensitivity = 0.95;
  int key_images = 3;
  std::string aet = "ICH", observer_uid;
};

struct Analysis {
  StudyFindings findings;
  std::vector<KeyImage> keys;
  WrittenResults written;
  int64_t files = 0, slices = 0;
  double predict_s = 0, key_images_s = 0, write_s = 0;
};

// One per worker: it holds its own copy of the models, loaded once, so that
// workers never share a model (Grad-CAM runs backward through it).
class StudyAnalyser {
 public:
  explicit StudyAnalyser(AnalyseOptions o);  // loads the models; throws on a bad checkpoint
  // dir: the study's folder (instances/ in it); writes dir/round<N>/.
  Analysis analyse(const StudyState& s, const std::string& dir);

 private:
  AnalyseOptions o_;
  PredictModels models_;
  std::string name_, version_;
  std::array<double, 6> thresholds_{};
  std::string operating_point_;
};

}  // namespace ich
