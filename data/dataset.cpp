#include "data/dataset.h"

#include <filesystem>

#include "data/npy.h"
#include "engine/error.h"

namespace ich {

SliceDataset::SliceDataset(std::vector<SplitRow> rows, std::string dir) : rows_(std::move(rows)), dir_(std::move(dir)) {
  ICH_CHECK(!rows_.empty(), "dataset: no rows");
  const std::string first = (std::filesystem::path(dir_) / (rows_[0].image_id + ".npy")).string();
  const Tensor t = read_npy(first);
  ICH_CHECK(t.dtype() == DType::UInt8 && t.dim() == 3, "image ", first, " is ", t.str(),
            ", expected uint8 (H, W, C) from ich-window");
  channels_ = int(t.size(2));
}

Tensor SliceDataset::image(size_t i) const {
  const std::string p = (std::filesystem::path(dir_) / (rows_[i].image_id + ".npy")).string();
  Tensor t = read_npy(p);
  ICH_CHECK(t.dtype() == DType::UInt8 && t.dim() == 3 && t.size(2) == channels_, "image ", p, " is ", t.str(),
            ", expected uint8 (H, W, ", channels_, ")");
  return t;
}

void SliceDataset::load(size_t i, const AugmentOptions& o, Generator& gen, float* out) const {
  const Tensor t = image(i);
  augment_slice(t.data<uint8_t>(), int(t.size(0)), int(t.size(1)), channels_, o, gen, out);
}

void SliceDataset::load_u8(size_t i, const AugmentOptions& o, Generator& gen, uint8_t* out) const {
  const Tensor t = image(i);
  augment_slice_u8(t.data<uint8_t>(), int(t.size(0)), int(t.size(1)), channels_, o, gen, out);
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

BatchLoader::BatchLoader(const SliceDataset& ds, AugmentOptions o, int64_t batch, bool shuffle, bool drop_last,
                         uint64_t seed, int64_t epoch, int64_t first_batch, int workers, int prefetch, bool bytes)
    : ds_(ds), o_(o), batch_(batch), seed_(seed), epoch_(epoch), prefetch_(size_t(std::max(1, prefetch))),
      bytes_(bytes) {
  ICH_CHECK(batch >= 1, "batch size must be >= 1");
  order_ = epoch_order(ds.size(), seed, epoch, shuffle);
  n_batches_ = drop_last ? int64_t(ds.size()) / batch : (int64_t(ds.size()) + batch - 1) / batch;
  ICH_CHECK(n_batches_ >= 1, "dataset of ", ds.size(), " images has no full batch of ", batch);
  next_to_make_ = next_to_give_ = std::min(first_batch, n_batches_);
  for (int i = 0; i < std::max(1, workers); ++i) workers_.emplace_back([this] { work(); });
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
  const int64_t start = index * batch_, n = std::min<int64_t>(batch_, int64_t(ds_.size()) - start);
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
