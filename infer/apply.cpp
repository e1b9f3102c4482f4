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

SeqPipelines match_pipelines(const std::vector<LoadedCheckpoint>& members, const std::vector<std::string>& member_paths,
                             const std::vector<LoadedSeqCheckpoint>& seqs, const std::vector<std::string>& seq_paths) {
  ICH_CHECK(!members.empty() && members.size() == member_paths.size() && seqs.size() == seq_paths.size(),
            "match_pipelines: ", members.size(), " members for ", member_paths.size(), " paths");
  SeqPipelines p;
  p.of_member.resize(members.size());
  std::vector<std::string> prints;
  for (const LoadedCheckpoint& m : members) prints.push_back(weights_fingerprint(*m.model));
  for (size_t s = 0; s < seqs.size(); ++s) {
    const std::string& cnn = seqs[s].meta.cnn;
    if (cnn.empty()) {
      ICH_CHECK(members.size() == 1, "--sequence ", seq_paths[s], " does not record the slice model it was trained ",
                "on (made before ich-embed recorded it): it can go with a lone --checkpoint only");
      p.of_member[0].push_back(s);
      continue;
    }
    bool found = false;  // every member with these weights (a checkpoint given twice is one model twice)
    for (size_t k = 0; k < members.size(); ++k)
      if (prints[k] == cnn) p.of_member[k].push_back(s), found = true;
    ICH_CHECK(found, "--sequence ", seq_paths[s], " was trained on the embeddings of a slice model (weights ", cnn,
              ") that is none of the --checkpoints given");
  }
  for (size_t m = 0; m < members.size(); ++m) {
    ICH_CHECK(!p.of_member[m].empty(), "--checkpoint ", member_paths[m],
              " has no --sequence model trained on its embeddings: with --sequence, every slice model needs one");
    const LoadedSeqCheckpoint& first = seqs[p.of_member[m].front()];
    p.views.push_back(first.meta.views);
    p.features.push_back(first.model->config().features);
    for (size_t s : p.of_member[m]) {
      ICH_CHECK(seqs[s].meta.views == first.meta.views, "--sequence ", seq_paths[s], " was trained on embeddings made ",
                "with the views '", tta_name(seqs[s].meta.views), "', ", seq_paths[p.of_member[m].front()],
                " (the same slice model) with '", tta_name(first.meta.views), "'");
      ICH_CHECK(seqs[s].model->config().features == first.model->config().features, "--sequence ", seq_paths[s],
                " reads ", seqs[s].model->config().features, " features per slice; ", member_paths[m], " gives ",
                first.model->config().features);
    }
  }
  return p;
}

Tensor side_by_side(const std::vector<Tensor>& parts) {
  ICH_CHECK(!parts.empty(), "side_by_side: nothing to join");
  std::vector<Tensor> host;
  int64_t width = 0;
  for (const Tensor& t : parts) {
    host.push_back(t.to(Device::cpu()).contiguous());
    ICH_CHECK(host.back().dim() == 2 && host.back().size(0) == parts.front().size(0), "side_by_side: ",
              host.back().str(), " beside ", parts.front().str());
    width += host.back().size(1);
  }
  if (host.size() == 1) return host.front();
  const int64_t N = host.front().size(0);
  Tensor out = Tensor::empty({N, width});
  int64_t at = 0;
  for (const Tensor& t : host) {
    const int64_t F = t.size(1);
    for (int64_t i = 0; i < N; ++i)
      std::copy(t.data<float>() + i * F, t.data<float>() + (i + 1) * F, out.data<float>() + i * width + at);
    at += F;
  }
  return out;
}

std::vector<std::array<double, 6>> pipeline_probs(const SeqPipelines& p, const std::vector<LoadedSeqCheckpoint>& seqs,
                                                  const Tensor& features, const std::vector<OrderedSlice>& order,
                                                  Device device) {
  int64_t width = 0;
  for (int64_t f : p.features) width += f;
  ICH_CHECK(features.dim() == 2 && features.size(1) == width, "embeddings ", features.str(), " for series models that read ",
            width, " features per slice in all (the sequence model was trained on another CNN's embeddings)");
  const Tensor all = features.contiguous();
  std::vector<std::array<double, 6>> q(order.size());
  int64_t at = 0;
  for (size_t m = 0; m < p.of_member.size(); ++m) {
    const int64_t F = p.features[m], N = all.size(0);
    Tensor mine = all;  // one member: the embeddings as they are
    if (p.of_member.size() > 1) {
      mine = Tensor::empty({N, F});
      for (int64_t i = 0; i < N; ++i)
        std::copy(all.data<float>() + i * width + at, all.data<float>() + i * width + at + F, mine.data<float>() + i * F);
    }
    at += F;
    std::vector<std::array<double, 6>> qm(order.size());
    for (size_t s : p.of_member[m]) {
      const std::vector<std::array<double, 6>> ps = predict_with_context(seqs[s], mine, order, device);
      for (size_t i = 0; i < qm.size(); ++i)
        for (size_t k = 0; k < 6; ++k) qm[i][k] += ps[i][k] / double(p.of_member[m].size());
    }
    for (size_t i = 0; i < q.size(); ++i)
      for (size_t k = 0; k < 6; ++k) q[i][k] += qm[i][k] / double(p.of_member.size());
  }
  return q;
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
