// embed.h: the second stage's input (ich-embed): every slice's pooled CNN
// features, and the order of its series along the scanner's axis.
//
// The features are the per-slice CNN's global average pool (the vector its
// fc layer reads: 2048 values for ResNeXt-101, 512 for resnext_mini),
// averaged over test-time views of the slice (data/augment.h tta_views; by
// default with its mirror image, as the 2nd place of RSNA 2019 did; with
// --tta flip+transpose its transpose too). An ich-embed folder:
//   embeddings.npy  (N, F) float32, row r the slice of index.csv's row r
//   index.csv       image_id, row, patient_id, study_uid, series_uid,
//                   position, gap_prev, gap_next: one row per slice, the
//                   slices of a series together and in order along the
//                   series' normal (data/series.h; gaps in mm, 0 at the ends)
//   info.csv        key,value: checkpoint, views, cnn (the slice model's
//                   weights_fingerprint), features, slices, series
#pragma once
#include <array>
#include <functional>
#include <string>
#include <vector>

#include "data/augment.h"
#include "data/dataset.h"
#include "data/series.h"
#include "layers/resnext.h"

namespace ich {

struct EmbedOptions {
  std::string checkpoint, images, out, device = "auto";
  std::vector<std::string> data;  // split CSVs, their rows together (train and valid: one folder for both)
  int64_t batch = 32;
  Tta views = Tta::Flip;  // averaged over these views (default: the slice and its mirror)
  std::string precision = "fp32";  // or bf16: the CPU's bf16 inference (layers/resnext_compiled.h)
};

// One batch's embedding (B, F), on `device`: the slice model's feature map
// averaged over space, and over the views (with Tta::Flip the image's and
// its mirror's: columns reversed). x (B, C, S, S) is on the host; `fmap`, when given, is
// model.features(x) already computed (ich-predict has it for the head).
// ich-embed (the series model's training data) and ich-predict --sequence
// (its input in use) both make embeddings here: the series model is right
// only while the two are the same.
Tensor embed_batch(ResNeXt& model, const Tensor& x, Device device, Tta views, const Tensor& fmap = Tensor());

// Pooled features (N, F) float32 on the CPU, row i for slice i of ds.
Tensor embed_slices(ResNeXt& model, const SliceDataset& ds, int64_t size, int64_t batch, Device device, Tta views,
                    const std::function<void(int64_t, int64_t)>& progress = nullptr);

// One slice of an ordered series, as index.csv holds it.
struct OrderedSlice {
  std::string image_id, patient_id, study_uid, series_uid;
  size_t source = 0;  // index into the rows it was ordered from
  double position = 0;
  std::array<double, 2> gaps{};  // to the previous and the next slice (mm)
};
// Slices series by series in order along each series' normal (source: the
// index into `slices`); irregular series are described through `log`.
std::vector<OrderedSlice> order_slices(const std::vector<SliceGeometry>& slices,
                                       const std::function<void(const std::string&)>& log = nullptr);
// The rows of a split, series by series in order along each series' normal;
// the geometry comes from the images folder's meta.csv (ich-window), else
// from the split's z. Irregular series are described through `log`.
std::vector<OrderedSlice> order_split(const std::vector<SplitRow>& rows, const std::string& images_dir,
                                      const std::function<void(const std::string&)>& log = nullptr);

// ich-embed: the folder described above. Returns the number of series.
int64_t run_embed(const EmbedOptions& o, const std::function<void(const std::string&)>& log = nullptr,
                  const std::function<void(int64_t, int64_t)>& progress = nullptr);

}  // namespace ich
