#include "infer/apply.h"

#include <algorithm>

#include "data/labels.h"
#include "io/csv.h"
#include "seq/train_seq.h"

namespace ich {

SeqData seq_data_from(const Tensor& features, const std::vector<OrderedSlice>& order,
                      const std::vector<std::array<int, 6>>& labels) {
  SeqData d;
  d.embeddings = features;
  for (size_t r = 0; r < order.size(); ++r) {
    const OrderedSlice& s = order[r];
    if (r == 0 || s.series_uid != order[r - 1].series_uid || s.study_uid != order[r - 1].study_uid)
      d.series.push_back({s.patient_id, s.study_uid, s.series_uid, {}, {}, {}, {}});
    SeqSeries& q = d.series.back();
    q.ids.push_back(s.image_id);
    q.rows.push_back(int64_t(s.source));
    q.gaps.push_back(s.gaps);
    q.y.push_back(labels.empty() ? std::array<int, 6>{} : labels.at(s.source));
  }
  return d;
}

std::vector<std::array<double, 6>> predict_with_context(const LoadedSeqCheckpoint& seq, const Tensor& features,
                                                        const std::vector<OrderedSlice>& order, Device device) {
  const SeqData d = seq_data_from(features, order, {});
  const std::vector<std::array<double, 6>> p = predict_series(*seq.model, d, seq.norm, device);
  std::vector<std::array<double, 6>> by_source(order.size());
  for (size_t r = 0; r < order.size(); ++r) by_source.at(order[r].source) = p[r];
  return by_source;
}

std::vector<StudySummary> summarise_studies(const std::vector<OrderedSlice>& order,
                                            const std::vector<std::array<double, 6>>& probs) {
  std::vector<StudySummary> out;
  std::vector<std::pair<double, std::string>> any;  // this series' (p_any, id), in order
  auto finish = [&] {
    if (out.empty()) return;
    StudySummary& s = out.back();
    size_t top = 0;
    for (size_t i = 1; i < any.size(); ++i)
      if (any[i].first > any[top].first) top = i;
    std::vector<size_t> keys{top};
    for (size_t i = 0; i < any.size() && keys.size() < 5; ++i)
      if (i != top && any[i].first > 0.5) keys.push_back(i);
    std::sort(keys.begin(), keys.end());
    for (size_t i : keys) s.key_slices.push_back(any[i].second);
    any.clear();
  };
  for (size_t r = 0; r < order.size(); ++r) {
    const OrderedSlice& o = order[r];
    if (r == 0 || o.series_uid != order[r - 1].series_uid || o.study_uid != order[r - 1].study_uid) {
      finish();
      out.push_back({o.patient_id, o.study_uid, o.series_uid, 0, {}, {}});
    }
    StudySummary& s = out.back();
    const std::array<double, 6>& p = probs.at(o.source);
    for (size_t k = 0; k < 6; ++k) s.p[k] = s.slices ? std::max(s.p[k], p[k]) : p[k];
    ++s.slices;
    any.emplace_back(p[5], o.image_id);
  }
  finish();
  return out;
}

void write_studies_csv(const std::string& path, const std::vector<StudySummary>& studies) {
  std::vector<std::string> header{"patient_id", "study_uid", "series_uid", "slices", "p_any"};
  for (size_t k = 0; k < 5; ++k) header.push_back(std::string("p_") + kSubtypes[k]);
  header.push_back("key_slices");
  CsvWriter w(path, header);
  for (const StudySummary& s : studies) {
    std::vector<std::string> row{s.patient_id, s.study_uid, s.series_uid, std::to_string(s.slices), fmt_double(s.p[5], 6)};
    for (size_t k = 0; k < 5; ++k) row.push_back(fmt_double(s.p[k], 6));
    std::string keys;
    for (const std::string& id : s.key_slices) keys += (keys.empty() ? "" : ";") + id;
    row.push_back(keys);
    w.row(row);
  }
  w.commit();
}

}  // namespace ich
