#include "data/dataset.h"

#include <algorithm>
#include <filesystem>
#include <unordered_map>

#include "data/series.h"
#include "engine/error.h"
#include "io/csv.h"
#include "io/npy.h"

namespace ich {

SliceDataset::SliceDataset(std::vector<SplitRow> rows, std::string dir) : rows_(std::move(rows)), dir_(std::move(dir)) {
  ICH_CHECK(!rows_.empty(), "dataset: no rows");
  const std::string first = (std::filesystem::path(dir_) / (rows_[0].image_id + ".npy")).string();
  const Tensor t = read_npy(first);
  ICH_CHECK(t.dtype() == DType::UInt8 && t.dim() == 3, "image ", first, " is ", t.str(),
            ", expected uint8 (H, W, C) from ich-window");
  channels_ = int(t.size(2));
}

Tensor SliceDataset::image(const std::string& id) const {
  const std::string p = (std::filesystem::path(dir_) / (id + ".npy")).string();
  Tensor t = read_npy(p);
  ICH_CHECK(t.dtype() == DType::UInt8 && t.dim() == 3 && t.size(2) == channels_, "image ", p, " is ", t.str(),
            ", expected uint8 (H, W, ", channels_, ")");
  return t;
}

void SliceDataset::set_context(int K) {
  ICH_CHECK(K >= 0 && K <= 8, "--context ", K, ": 0 to 8 neighbouring slices a side");
  context_ = K;
  neighbours_.clear();
  if (K == 0) return;
  const std::string meta = (std::filesystem::path(dir_) / "meta.csv").string();
  ICH_CHECK(std::filesystem::exists(meta), "--context needs the geometry of the slices: no ", meta,
            " (ich-window writes it)");
  const std::vector<SliceGeometry> geo = read_geometry(read_csv(meta));
  std::unordered_map<std::string, std::pair<size_t, size_t>> where;  // id -> (series, place)
  const std::vector<SeriesOrder> series = order_series(geo);
  for (size_t s = 0; s < series.size(); ++s)
    for (size_t k = 0; k < series[s].slices.size(); ++k) where[geo[series[s].slices[k]].image_id] = {s, k};
  for (const SplitRow& r : rows_) {
    const auto it = where.find(r.image_id);
    ICH_CHECK(it != where.end(), meta, ": no row for ", r.image_id, ", so its neighbours are unknown");
    const SeriesOrder& s = series[it->second.first];
    std::vector<std::string> ids;
    for (int d = -K; d <= K; ++d) {
      const int64_t k = std::clamp<int64_t>(int64_t(it->second.second) + d, 0, int64_t(s.slices.size()) - 1);
      ids.push_back(geo[s.slices[size_t(k)]].image_id);
    }
    neighbours_.push_back(std::move(ids));
  }
}

Tensor SliceDataset::input(size_t i) const {
  if (context_ == 0) return image(rows_[i].image_id);
  const std::vector<std::string>& ids = neighbours_.at(i);
  const int64_t C = channels_, n = int64_t(ids.size());
  Tensor out;
  for (int64_t j = 0; j < n; ++j) {
    const Tensor t = image(ids[size_t(j)]);
    if (!out.defined()) out = Tensor::empty({t.size(0), t.size(1), C * n}, DType::UInt8);
    ICH_CHECK(t.size(0) == out.size(0) && t.size(1) == out.size(1), "image ", ids[size_t(j)], " is ", t.str(),
              ", its neighbour ", ids[0], " has ", out.size(0), " x ", out.size(1), " pixels");
    const uint8_t* src = t.data<uint8_t>();
    uint8_t* dst = out.data<uint8_t>();
    for (int64_t p = 0; p < t.size(0) * t.size(1); ++p)
      for (int64_t c = 0; c < C; ++c) dst[p * C * n + j * C + c] = src[p * C + c];
  }
  return out;
}

void SliceDataset::load(size_t i, const AugmentOptions& o, Generator& gen, float* out) const {
  const Tensor t = input(i);
  augment_slice(t.data<uint8_t>(), int(t.size(0)), int(t.size(1)), channels(), o, gen, out);
}

void SliceDataset::load_u8(size_t i, const AugmentOptions& o, Generator& gen, uint8_t* out) const {
  const Tensor t = input(i);
  augment_slice_u8(t.data<uint8_t>(), int(t.size(0)), int(t.size(1)), channels(), o, gen, out);
}

std::array<double, 6> SliceDataset::positive_fraction() const {
  std::array<double, 6> f{};
  for (const auto& r : rows_)
    for (size_t k = 0; k < 6; ++k) f[k] += r.y[k];
  for (double& v : f) v /= double(rows_.size());
  return f;
}

std::vector<size_t> epoch_order(size_t n, uint64_t seed, int64_t epoch, bool shuffle) {
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  if (shuffle) {
    Generator g(seed * 1000003 + uint64_t(epoch) * 7919 + 1);
    for (size_t i = n; i > 1; --i) std::swap(order[i - 1], order[size_t(g.below(i))]);
  }
  return order;
}

std::vector<size_t> shard_order(const std::vector<size_t>& order, const Shard& s) {
  ICH_CHECK(s.parts >= 1 && s.part >= 0 && s.part < s.parts, "shard ", s.part, " of ", s.parts);
  if (s.parts == 1) return order;
  std::vector<size_t> all = order;
  if (s.pad && !order.empty())  // DistributedSampler: repeat the first ones until every shard has as many
    for (size_t i = 0; all.size() % size_t(s.parts) != 0; ++i) all.push_back(order[i % order.size()]);
  std::vector<size_t> mine;
  for (size_t i = size_t(s.part); i < all.size(); i += size_t(s.parts)) mine.push_back(all[i]);
  return mine;
}

BatchLoader::BatchLoader(const SliceDataset& ds, AugmentOptions o, const LoaderOptions& lo)
    : ds_(ds), o_(o), batch_(lo.batch), seed_(lo.seed), epoch_(lo.epoch), prefetch_(size_t(std::max(1, lo.prefetch))),
      bytes_(lo.bytes) {
  const int64_t batch = lo.batch;
  ICH_CHECK(batch >= 1, "batch size must be >= 1");
  order_ = shard_order(epoch_order(ds.size(), lo.seed, lo.epoch, lo.shuffle), lo.shard);
  const int64_t n = int64_t(order_.size());
  n_batches_ = lo.drop_last ? n / batch : (n + batch - 1) / batch;
  ICH_CHECK(n_batches_ >= 1 || (!lo.drop_last && n == 0), "dataset of ", ds.size(), " images",
            lo.shard.parts > 1 ? " (" + std::to_string(n) + " in each of " + std::to_string(lo.shard.parts) + " shards)" : "",
            " has no full batch of ", batch);
  next_to_make_ = next_to_give_ = std::min(lo.first_batch, n_batches_);
  for (int i = 0; i < std::max(1, lo.workers); ++i) workers_.emplace_back([this] { work(); });
}

BatchLoader::~BatchLoader() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

Batch BatchLoader::make(int64_t index) {
  Batch b;
  b.index = index;
  const int64_t start = index * batch_, n = std::min<int64_t>(batch_, int64_t(order_.size()) - start);
  const int64_t C = ds_.channels(), S = o_.size;
  b.x = Tensor::empty({n, C, S, S}, bytes_ ? DType::UInt8 : DType::Float32);
  std::vector<double> y(size_t(n * 6));
  for (int64_t j = 0; j < n; ++j) {
    const size_t i = order_[size_t(start + j)];
    b.samples.push_back(i);
    Generator gen(seed_ ^ (uint64_t(epoch_) << 40) ^ (uint64_t(i) * 0x9E3779B97F4A7C15ull));
    if (bytes_) ds_.load_u8(i, o_, gen, b.x.data<uint8_t>() + j * C * S * S);
    else ds_.load(i, o_, gen, b.x.data<float>() + j * C * S * S);
    for (size_t k = 0; k < 6; ++k) y[size_t(j * 6) + k] = ds_.row(i).y[k];
  }
  b.y = Tensor::from_vector(y, {n, 6});
  return b;
}

void BatchLoader::work() {
  while (true) {
    int64_t index;
    {
      std::unique_lock<std::mutex> l(mu_);
      // Bounded prefetch: never more than prefetch_ batches ahead of the consumer.
      cv_.wait(l, [&] { return stop_ || (next_to_make_ < n_batches_ && next_to_make_ < next_to_give_ + int64_t(prefetch_)); });
      if (stop_) return;
      index = next_to_make_++;
    }
    try {
      Batch b = make(index);
      std::lock_guard<std::mutex> l(mu_);
      ready_.emplace(index, std::move(b));
    } catch (...) {
      std::lock_guard<std::mutex> l(mu_);
      if (!error_) error_ = std::current_exception();
    }
    cv_.notify_all();
  }
}

bool BatchLoader::next(Batch& b) {
  std::unique_lock<std::mutex> l(mu_);
  if (next_to_give_ >= n_batches_) return false;
  cv_.wait(l, [&] { return error_ || ready_.count(next_to_give_); });
  if (error_) std::rethrow_exception(error_);
  b = std::move(ready_.at(next_to_give_));
  ready_.erase(next_to_give_);
  ++next_to_give_;
  l.unlock();
  cv_.notify_all();
  return true;
}

}  // namespace ich
