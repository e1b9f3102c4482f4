#include "seq/seq_data.h"

#include <cmath>
#include <filesystem>
#include <unordered_map>

#include "engine/error.h"
#include "io/csv.h"
#include "io/npy.h"

namespace ich {

namespace fs = std::filesystem;

int64_t SeqData::slices() const {
  int64_t n = 0;
  for (const SeqSeries& s : series) n += int64_t(s.ids.size());
  return n;
}

SeqData read_seq_data(const std::string& dir, const std::vector<SplitRow>* labels) {
  const std::string npy = (fs::path(dir) / "embeddings.npy").string(), idx = (fs::path(dir) / "index.csv").string();
  ICH_CHECK(fs::exists(npy) && fs::exists(idx), dir, ": not an ich-embed folder (embeddings.npy and index.csv)");
  SeqData d;
  d.embeddings = read_npy(npy);
  ICH_CHECK(d.embeddings.dim() == 2 && d.embeddings.dtype() == DType::Float32, npy, ": expected a 2-d float32 array, got ",
            d.embeddings.str());
  const CsvTable t = read_csv(idx);
  const size_t c_id = t.column("image_id"), c_row = t.column("row"), c_pat = t.column("patient_id"),
               c_st = t.column("study_uid"), c_se = t.column("series_uid"), c_gp = t.column("gap_prev"),
               c_gn = t.column("gap_next");
  std::unordered_map<std::string, const SplitRow*> want;
  if (labels)
    for (const SplitRow& r : *labels) want[r.image_id] = &r;
  std::unordered_map<std::string, bool> found;
  for (size_t i = 0; i < t.rows.size(); ++i) {
    const auto& r = t.rows[i];
    const SplitRow* lab = nullptr;
    if (labels) {
      const auto it = want.find(r[c_id]);
      if (it == want.end()) continue;
      lab = it->second;
      found[r[c_id]] = true;
    }
    auto number = [&](size_t c) {
      char* end = nullptr;
      const double v = std::strtod(r[c].c_str(), &end);
      ICH_CHECK(!r[c].empty() && end == r[c].c_str() + r[c].size() && std::isfinite(v), idx, " line ", t.line_of[i],
                ": '", r[c], "' in column ", t.header[c], " is not a number");
      return v;
    };
    const int64_t row = int64_t(number(c_row));
    ICH_CHECK(row >= 0 && row < d.embeddings.size(0), idx, " line ", t.line_of[i], ": row ", row, " outside ", npy,
              " (", d.embeddings.size(0), " rows)");
    if (d.series.empty() || d.series.back().series_uid != r[c_se] || d.series.back().study_uid != r[c_st])
      d.series.push_back({r[c_pat], r[c_st], r[c_se], {}, {}, {}, {}});
    SeqSeries& s = d.series.back();
    s.ids.push_back(r[c_id]);
    s.rows.push_back(row);
    s.gaps.push_back({number(c_gp), number(c_gn)});
    s.y.push_back(lab ? lab->y : std::array<int, 6>{});
  }
  if (labels)
    for (const SplitRow& r : *labels)
      ICH_CHECK(found.count(r.image_id), dir, ": no embedding for ", r.image_id, " (run ich-embed on this split)");
  return d;
}

FeatureNorm feature_norm(const SeqData& data) {
  const int64_t F = data.features();
  std::vector<double> sum(size_t(F), 0), sq(size_t(F), 0);
  int64_t n = 0;
  for (const SeqSeries& s : data.series)
    for (int64_t r : s.rows) {
      const float* e = data.embeddings.data<float>() + r * F;
      for (int64_t f = 0; f < F; ++f) sum[size_t(f)] += e[f], sq[size_t(f)] += double(e[f]) * e[f];
      ++n;
    }
  ICH_CHECK(n > 0, "no slices to standardise the embeddings with");
  FeatureNorm norm;
  for (int64_t f = 0; f < F; ++f) {
    const double m = sum[size_t(f)] / double(n), v = std::max(0.0, sq[size_t(f)] / double(n) - m * m);
    norm.mean.push_back(float(m));
    norm.inv_std.push_back(float(1 / std::max(1e-6, std::sqrt(v))));
  }
  return norm;
}

int64_t series_input_size(int64_t features) { return 3 * features + 2; }

Tensor series_input(const SeqData& data, const FeatureNorm& norm, const std::vector<const SeqSeries*>& batch,
                    std::vector<int64_t>* lengths) {
  const int64_t F = data.features(), D = series_input_size(F), B = int64_t(batch.size());
  ICH_CHECK(int64_t(norm.mean.size()) == F, "the sequence model was trained on ", norm.mean.size(),
            " features per slice, these embeddings have ", F);
  int64_t T = 0;
  lengths->clear();
  for (const SeqSeries* s : batch) {
    lengths->push_back(int64_t(s->rows.size()));
    T = std::max(T, lengths->back());
  }
  Tensor x = Tensor::zeros({B, T, D});
  float* xp = x.data<float>();
  const size_t nf = static_cast<size_t>(F);
  std::vector<float> e(nf), prev(nf), next(nf);
  auto standard = [&](int64_t row, std::vector<float>& out) {
    const float* src = data.embeddings.data<float>() + row * F;
    for (int64_t f = 0; f < F; ++f) out[size_t(f)] = (src[f] - norm.mean[size_t(f)]) * norm.inv_std[size_t(f)];
  };
  for (int64_t b = 0; b < B; ++b) {
    const SeqSeries& s = *batch[size_t(b)];
    const int64_t L = int64_t(s.rows.size());
    for (int64_t t = 0; t < L; ++t) {
      standard(s.rows[size_t(t)], e);
      if (t > 0) standard(s.rows[size_t(t - 1)], prev);
      else prev = e;
      if (t + 1 < L) standard(s.rows[size_t(t + 1)], next);
      else next = e;
      float* o = xp + (b * T + t) * D;
      for (int64_t f = 0; f < F; ++f) {
        o[f] = e[size_t(f)];
        o[F + f] = e[size_t(f)] - prev[size_t(f)];
        o[2 * F + f] = e[size_t(f)] - next[size_t(f)];
      }
      o[3 * F] = float(s.gaps[size_t(t)][0] / 10);
      o[3 * F + 1] = float(s.gaps[size_t(t)][1] / 10);
    }
  }
  return x;
}

}  // namespace ich
