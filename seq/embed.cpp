#include "seq/embed.h"

#include "layers/resnext_compiled.h"

#include <filesystem>
#include <map>

#include "data/series.h"
#include "engine/autograd.h"
#include "engine/device_select.h"
#include "engine/ops.h"
#include "io/csv.h"
#include "io/npy.h"
#include "train/checkpoint.h"

namespace ich {

namespace fs = std::filesystem;

Tensor embed_batch(ResNeXt& model, const Tensor& x, Device device, Tta views, const Tensor& fmap) {
  auto pooled = [](const Tensor& map) { return flatten(adaptive_avg_pool2d(map)); };
  Tensor f = pooled(fmap.defined() ? fmap : model.features(x.to(device)));
  if (views == Tta::None) return f;
  const std::vector<Tensor> v = tta_views(x, views);  // v[0] is x itself, whose features are f
  for (size_t k = 1; k < v.size(); ++k) f = add(f, pooled(model.features(v[k].to(device))));
  return scale(f, 1.0 / double(v.size()));
}

Tensor embed_slices(ResNeXt& model, const SliceDataset& ds, int64_t size, int64_t batch, Device device, Tta views,
                    const std::function<void(int64_t, int64_t)>& progress) {
  const bool was_training = model.is_training();
  model.eval();
  NoGradGuard ng;
  const AugmentOptions ao = eval_augment(int(size));
  LoaderOptions lo;
  lo.batch = batch;
  BatchLoader loader(ds, ao, lo);
  Tensor out;
  Batch b;
  int64_t done = 0;
  while (loader.next(b)) {
    const Tensor f = embed_batch(model, b.x, device, views);
    const Tensor fh = f.to(Device::cpu()).contiguous();
    if (!out.defined()) out = Tensor::empty({int64_t(ds.size()), fh.size(1)});
    for (size_t j = 0; j < b.samples.size(); ++j)
      std::copy(fh.data<float>() + j * fh.size(1), fh.data<float>() + (j + 1) * fh.size(1),
                out.data<float>() + int64_t(b.samples[j]) * fh.size(1));
    done += int64_t(b.samples.size());
    if (progress) progress(done, int64_t(ds.size()));
  }
  model.train(was_training);
  return out;
}

std::vector<OrderedSlice> order_split(const std::vector<SplitRow>& rows, const std::string& images_dir,
                                      const std::function<void(const std::string&)>& log) {
  std::map<std::string, SliceGeometry> geo;
  const fs::path meta = fs::path(images_dir) / "meta.csv";
  if (fs::exists(meta))
    for (SliceGeometry& g : read_geometry(read_csv(meta.string()))) geo[g.image_id] = g;
  std::vector<SliceGeometry> in;
  for (const SplitRow& r : rows) {
    SliceGeometry g;
    const auto it = geo.find(r.image_id);
    if (it != geo.end()) {
      g = it->second;
    } else if (!r.z.empty()) {  // no meta.csv row: the split's z, an axial slice
      g.has_position = true;
      g.position = {0, 0, std::stod(r.z)};
    }
    g.image_id = r.image_id, g.patient_id = r.patient_id, g.study_uid = r.study_uid, g.series_uid = r.series_uid;
    in.push_back(g);
  }
  return order_slices(in, log);
}

std::vector<OrderedSlice> order_slices(const std::vector<SliceGeometry>& in,
                                       const std::function<void(const std::string&)>& log) {
  std::vector<OrderedSlice> out;
  for (const SeriesOrder& s : order_series(in)) {
    const std::string irregular = describe_irregularities(s);
    if (!irregular.empty() && log) log(irregular);
    for (size_t k = 0; k < s.slices.size(); ++k) {
      const SliceGeometry& g = in[s.slices[k]];
      out.push_back({g.image_id, g.patient_id, g.study_uid, g.series_uid, s.slices[k], s.position[k],
                     neighbour_gaps(s, k)});
    }
  }
  return out;
}

int64_t run_embed(const EmbedOptions& o, const std::function<void(const std::string&)>& log,
                  const std::function<void(int64_t, int64_t)>& progress) {
  ICH_CHECK(o.batch >= 1, "--batch ", o.batch, " must be positive");
  const Device dev = pick_device(o.device);
  LoadedCheckpoint c = load_checkpoint(o.checkpoint);
  c.model->to(dev);
  c.model->eval();
  apply_inference_precision(*c.model, o.precision, dev);
  ICH_CHECK(!o.data.empty(), "ich-embed: no split CSV");
  std::vector<SplitRow> rows;
  for (const std::string& csv : o.data) {
    std::vector<SplitRow> more = read_split(csv);
    ICH_CHECK(!more.empty(), csv, ": no slices");
    rows.insert(rows.end(), more.begin(), more.end());
  }
  SliceDataset ds(rows, o.images);
  ds.set_context(int(c.meta.context));  // a model of adjacent slices reads them
  const Tensor f = embed_slices(*c.model, ds, c.meta.size, o.batch, dev, o.views, progress);
  const std::vector<OrderedSlice> order = order_split(rows, o.images, log);
  // embeddings.npy in index.csv's order
  const int64_t F = f.size(1);
  Tensor sorted = Tensor::empty({int64_t(order.size()), F});
  CsvWriter index((fs::path(o.out) / "index.csv").string(),
                  {"image_id", "row", "patient_id", "study_uid", "series_uid", "position", "gap_prev", "gap_next"});
  int64_t series = 0;
  for (size_t r = 0; r < order.size(); ++r) {
    const OrderedSlice& s = order[r];
    std::copy(f.data<float>() + int64_t(s.source) * F, f.data<float>() + int64_t(s.source + 1) * F,
              sorted.data<float>() + int64_t(r) * F);
    index.row({s.image_id, std::to_string(r), s.patient_id, s.study_uid, s.series_uid, fmt_double(s.position, 10),
               fmt_double(s.gaps[0], 10), fmt_double(s.gaps[1], 10)});
    series += r == 0 || s.series_uid != order[r - 1].series_uid || s.study_uid != order[r - 1].study_uid;
  }
  fs::create_directories(o.out);
  write_npy((fs::path(o.out) / "embeddings.npy").string(), sorted);
  index.commit();  // after the array: an index.csv always has its embeddings
  CsvWriter info((fs::path(o.out) / "info.csv").string(), {"key", "value"});
  info.row({"checkpoint", fs::weakly_canonical(o.checkpoint).string()});
  info.row({"views", tta_name(o.views)});
  info.row({"cnn", weights_fingerprint(*c.model)});
  info.row({"features", std::to_string(F)});
  info.row({"slices", std::to_string(order.size())});
  info.row({"series", std::to_string(series)});
  info.commit();
  return series;
}

}  // namespace ich
