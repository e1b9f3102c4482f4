// ich-predict: DICOM in, probabilities out, in the Kaggle submission format.
#include <cstdio>
#include <filesystem>

#include "apps/app_main.h"
#include "apps/progress.h"
#include "data/augment.h"
#include "data/csv.h"
#include "data/parallel.h"
#include "data/phantom.h"
#include "data/window_run.h"
#include "engine/autograd.h"
#include "engine/device_select.h"
#include "engine/ops.h"
#include "train/checkpoint.h"
#include "weights/atomic_file.h"

int main(int argc, char** argv) {
  CLI::App app{
      "Predict the five subtypes and any for DICOM slices, windowed as the checkpoint's training images were.\n"
      "Writes ID_<image>_<subtype>,Label rows (the Kaggle submission format). Files that cannot be read are\n"
      "listed on stderr and left out. Exit codes: 0 all predicted, 3 some files failed, 1 failed, 2 bad flags."};
  std::string ckpt, input, out, device = "auto";
  int64_t batch = 16;
  app.add_option("--checkpoint", ckpt, "checkpoint from ich-train")->required();
  app.add_option("--input", input, "a DICOM file or a folder of them")->required();
  app.add_option("--out", out, "submission CSV to write")->required();
  app.add_option("--batch", batch, "slices per forward pass")->capture_default_str();
  app.add_option("--device", device, "cpu, cuda or auto")->capture_default_str();
  return ich::run_app("ich-predict", app, argc, argv, [&] {
    const ich::Device dev = ich::pick_device(device);
    ich::LoadedCheckpoint c = ich::load_checkpoint(ckpt);
    c.model->to(dev);
    c.model->eval();
    const std::vector<ich::Window> windows = ich::parse_windows(c.meta.windows);
    const std::vector<std::string> files = ich::list_files(input);
    // In chunks (the RSNA test set is 121,232 slices: all inputs at once
    // would be tens of GB): window a chunk's files in parallel, then run the
    // model over it in batches.
    const int64_t S = c.meta.size, C = int64_t(windows.empty() ? 1 : windows.size());
    const size_t chunk = std::max<size_t>(size_t(batch), 2048);
    std::string csv = "ID,Label\n";
    int64_t failed = 0, predicted = 0;
    ich::Progress progress("ich-predict", "files");
    ich::NoGradGuard ng;
    for (size_t base = 0; base < files.size(); base += chunk) {
      const size_t m = std::min(chunk, files.size() - base);
      std::vector<std::vector<float>> inputs(m);
      std::vector<std::string> ids(m), errors(m);
      ich::run_parallel(
          int64_t(m), 0, [&](int64_t d, int64_t) { progress(int64_t(base) + d, int64_t(files.size())); },
          [&](int64_t i) {
            thread_local ich::WindowScratch scratch;  // the direct reader's buffers, kept between files
            try {
              const ich::WindowedFile f = ich::window_file(files[base + size_t(i)], windows, 0, true, scratch);
              ich::AugmentOptions ao;
              ao.size = int(S);
              ao.augment = false;
              ich::Generator unused(0);
              inputs[size_t(i)].resize(size_t(C * S * S));
              ich::augment_slice(f.pixels, f.h, f.w, int(C), ao, unused, inputs[size_t(i)].data());
              ids[size_t(i)] = ich::image_id_for(f.slice);
            } catch (const std::exception& e) {
              errors[size_t(i)] = e.what();
            }
          });
      std::vector<size_t> ok;
      for (size_t i = 0; i < m; ++i) {
        if (errors[i].empty()) {
          ok.push_back(i);
        } else {
          ++failed;
          std::fprintf(stderr, "ich-predict: skipped %s: %s\n", files[base + i].c_str(), errors[i].c_str());
        }
      }
      for (size_t start = 0; start < ok.size(); start += size_t(batch)) {
        const size_t n = std::min(size_t(batch), ok.size() - start);
        ich::Tensor x = ich::Tensor::empty({int64_t(n), C, S, S});
        for (size_t j = 0; j < n; ++j)
          std::copy(inputs[ok[start + j]].begin(), inputs[ok[start + j]].end(),
                    x.data<float>() + j * size_t(C * S * S));
        const std::vector<double> p = ich::sigmoid((*c.model)(x.to(dev))).to_vector();
        for (size_t j = 0; j < n; ++j) {
          for (size_t k = 0; k < 6; ++k)
            csv += ids[ok[start + j]] + "_" + ich::kSubtypes[k] + "," + ich::fmt_double(p[j * 6 + k], 6) + "\n";
          ++predicted;
        }
      }
    }
    ich::write_file_atomic(out, csv);
    std::printf("%lld slices predicted, %lld skipped -> %s\n", (long long)predicted, (long long)failed, out.c_str());
    return failed > 0 ? 3 : 0;
  });
}
