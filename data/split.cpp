#include "data/split.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <unordered_map>

#include "data/labels.h"
#include "engine/error.h"
#include "engine/random.h"

namespace ich {

namespace {

template <class T> void shuffle(std::vector<T>& v, Generator& g) {
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[size_t(g.below(i))]);
}

std::string group_key(const SplitRow& r, const std::string& by) {
  if (by == "patient") return r.patient_id.empty() ? "image:" + r.image_id : r.patient_id;
  if (by == "study") return r.study_uid.empty() ? "image:" + r.image_id : r.study_uid;
  if (by == "series") return r.series_uid.empty() ? "image:" + r.image_id : r.series_uid;
  return r.image_id;
}

// Iterative stratification over groups into folds of the given fractions:
// returns each row's fold. Labels are taken rarest first; each group holding
// the current label goes to the fold that still wants most of it (ties: the
// fold that wants more images, then the generator); groups without
// positives fill the folds up to their sizes. Two folds {1 - v, v} are the
// train/validation split (fold 1 validation).
std::vector<int> stratified_groups(const std::vector<SplitRow>& rows, const std::vector<double>& frac,
                                   const std::string& group_by, Generator& g) {
  const size_t F = frac.size();
  std::map<std::string, std::vector<size_t>> by_key;
  for (size_t i = 0; i < rows.size(); ++i) by_key[group_key(rows[i], group_by)].push_back(i);
  struct Group {
    std::vector<size_t> rows;
    std::array<double, 6> pos{};
    int fold = -1;
  };
  std::vector<Group> groups;
  for (auto& [k, idx] : by_key) {
    Group gr;
    gr.rows = idx;
    for (size_t i : idx)
      for (size_t l = 0; l < 6; ++l) gr.pos[l] += rows[i].y[l];
    groups.push_back(std::move(gr));
  }
  shuffle(groups, g);
  std::array<double, 6> total{};
  for (const auto& gr : groups)
    for (size_t l = 0; l < 6; ++l) total[l] += gr.pos[l];
  std::vector<std::array<double, 6>> want_label(F);
  std::vector<double> want_size(F);
  for (size_t f = 0; f < F; ++f) {
    for (size_t l = 0; l < 6; ++l) want_label[f][l] = total[l] * frac[f];
    want_size[f] = double(rows.size()) * frac[f];
  }
  auto assign = [&](Group& gr, size_t f) {
    gr.fold = int(f);
    for (size_t l = 0; l < 6; ++l) want_label[f][l] -= gr.pos[l];
    want_size[f] -= double(gr.rows.size());
  };
  // Among `among`, those with the largest key; one of several by the generator.
  auto largest = [](const std::vector<size_t>& among, const std::function<double(size_t)>& key) {
    std::vector<size_t> best;
    for (size_t f : among) {
      if (!best.empty() && key(f) < key(best[0])) continue;
      if (!best.empty() && key(f) > key(best[0])) best.clear();
      best.push_back(f);
    }
    return best;
  };
  std::vector<size_t> all(F);
  for (size_t f = 0; f < F; ++f) all[f] = f;
  auto by_size = [&](const std::vector<size_t>& among) {
    const std::vector<size_t> best = largest(among, [&](size_t f) { return want_size[f]; });
    return best.size() == 1 ? best[0] : best[size_t(g.below(best.size()))];
  };
  while (true) {
    // The rarest label among the unassigned groups.
    int label = -1;
    double fewest = 0;
    for (int l = 0; l < 6; ++l) {
      double left = 0;
      for (const auto& gr : groups)
        if (gr.fold < 0) left += gr.pos[size_t(l)];
      if (left > 0 && (label < 0 || left < fewest)) label = l, fewest = left;
    }
    if (label < 0) break;
    for (auto& gr : groups) {
      if (gr.fold >= 0 || gr.pos[size_t(label)] == 0) continue;
      assign(gr, by_size(largest(all, [&](size_t f) { return want_label[f][size_t(label)]; })));
    }
  }
  for (auto& gr : groups)
    if (gr.fold < 0) assign(gr, by_size(all));
  std::vector<int> fold(rows.size());
  for (const auto& gr : groups)
    for (size_t i : gr.rows) fold[i] = gr.fold;
  return fold;
}

// The seed notebook's method: per subtype, 84/16 of its (not yet placed)
// positive images, then the rest 84/16; image level.
std::vector<int> seed_method(const std::vector<SplitRow>& rows, const SplitOptions& o, Generator& g) {
  std::vector<int> fold(rows.size(), -1);
  auto place = [&](std::vector<size_t> idx) {
    shuffle(idx, g);
    const size_t nv = size_t(std::lround(double(idx.size()) * o.valid_fraction));
    for (size_t j = 0; j < idx.size(); ++j) fold[idx[j]] = j < nv ? 1 : 0;
  };
  for (size_t l = 0; l < 5; ++l) {
    std::vector<size_t> idx;
    for (size_t i = 0; i < rows.size(); ++i)
      if (fold[i] < 0 && rows[i].y[l]) idx.push_back(i);
    place(idx);
  }
  std::vector<size_t> rest;
  for (size_t i = 0; i < rows.size(); ++i)
    if (fold[i] < 0) rest.push_back(i);
  place(rest);
  return fold;
}

void check_options(const SplitOptions& o) {
  ICH_CHECK(o.group_by == "patient" || o.group_by == "study" || o.group_by == "series" || o.group_by == "none",
            "--group-by '", o.group_by, "': expected patient, study, series or none");
  ICH_CHECK(o.method == "grouped" || o.method == "seed", "--method '", o.method, "': expected grouped or seed");
}

// The labelled images of meta.csv (status ok), once each.
std::vector<SplitRow> join_labels(const LabelTable& labels, const CsvTable& meta, SplitResult& res) {
  const size_t c_id = meta.column("image_id"), c_status = meta.column("status"), c_pat = meta.column("patient_id"),
               c_study = meta.column("study_uid"), c_series = meta.column("series_uid"), c_z = meta.column("z");
  std::vector<SplitRow> rows;
  std::unordered_map<std::string, bool> seen;
  for (const auto& m : meta.rows) {
    if (m[c_status] != "ok") continue;
    auto it = labels.index.find(m[c_id]);
    if (it == labels.index.end()) {
      ++res.images_without_labels;
      continue;
    }
    if (!seen.emplace(m[c_id], true).second) continue;
    rows.push_back({m[c_id], labels.images[it->second].y, m[c_pat], m[c_study], m[c_series], m[c_z]});
  }
  res.labels_without_image = int64_t(labels.images.size()) - int64_t(rows.size());
  ICH_CHECK(!rows.empty(), "no image of ", meta.path, " has labels: do the image ids match the label IDs?");
  return rows;
}

}  // namespace

SplitResult split_dataset(const LabelTable& labels, const CsvTable& meta, const SplitOptions& o) {
  ICH_CHECK(o.valid_fraction > 0 && o.valid_fraction < 1, "valid fraction ", o.valid_fraction, " must be in (0, 1)");
  check_options(o);
  SplitResult res;
  const std::vector<SplitRow> rows = join_labels(labels, meta, res);
  Generator g(o.seed);
  const std::vector<int> fold = o.method == "seed" ? seed_method(rows, o, g)
                                                   : stratified_groups(rows, {1 - o.valid_fraction, o.valid_fraction},
                                                                       o.group_by, g);
  for (size_t i = 0; i < rows.size(); ++i) (fold[i] ? res.valid : res.train).push_back(rows[i]);
  return res;
}

FoldsResult split_folds(const LabelTable& labels, const CsvTable& meta, int folds, const SplitOptions& o) {
  ICH_CHECK(folds >= 2, "--folds ", folds, ": at least 2 (one fold is no cross-validation; use --valid-fraction)");
  check_options(o);
  ICH_CHECK(o.method == "grouped", "--folds: only with --method grouped (the seed's method splits images, not groups)");
  FoldsResult res;
  SplitResult counts;
  const std::vector<SplitRow> rows = join_labels(labels, meta, counts);
  res.labels_without_image = counts.labels_without_image;
  res.images_without_labels = counts.images_without_labels;
  Generator g(o.seed);
  const std::vector<int> fold = stratified_groups(rows, std::vector<double>(size_t(folds), 1.0 / folds), o.group_by, g);
  res.folds.resize(size_t(folds));
  for (size_t i = 0; i < rows.size(); ++i) res.folds[size_t(fold[i])].push_back(rows[i]);
  for (int k = 0; k < folds; ++k)
    ICH_CHECK(!res.folds[size_t(k)].empty(), "--folds ", folds, ": fold ", k, " is empty (fewer ", o.group_by,
              " groups than folds)");
  return res;
}

std::vector<std::string> split_header() {
  std::vector<std::string> h{"image_id"};
  for (const char* s : kSubtypes) h.push_back(s);
  for (const char* s : {"patient_id", "study_uid", "series_uid", "z"}) h.push_back(s);
  return h;
}

std::vector<std::string> split_fields(const SplitRow& r) {
  std::vector<std::string> f{r.image_id};
  for (int v : r.y) f.push_back(std::to_string(v));
  for (const std::string* s : {&r.patient_id, &r.study_uid, &r.series_uid, &r.z}) f.push_back(*s);
  return f;
}

std::vector<SplitRow> read_split(const std::string& path) {
  const CsvTable t = read_csv(path);
  const size_t c_id = t.column("image_id");
  std::array<size_t, 6> c_y{};
  for (size_t k = 0; k < 6; ++k) c_y[k] = t.column(kSubtypes[k]);
  auto opt = [&](const char* n) { return t.has_column(n) ? int64_t(t.column(n)) : int64_t(-1); };
  const int64_t c_pat = opt("patient_id"), c_study = opt("study_uid"), c_series = opt("series_uid"), c_z = opt("z");
  std::vector<SplitRow> out;
  for (size_t r = 0; r < t.rows.size(); ++r) {
    SplitRow s;
    s.image_id = t.rows[r][c_id];
    ICH_CHECK(!s.image_id.empty(), "split ", path, " line ", t.line_of[r], ": empty image_id");
    for (size_t k = 0; k < 6; ++k) {
      const std::string& v = t.rows[r][c_y[k]];
      ICH_CHECK(v == "0" || v == "1", "split ", path, " line ", t.line_of[r], ": ", kSubtypes[k], " is '", v,
                "', not 0 or 1");
      s.y[k] = v == "1";
    }
    if (c_pat >= 0) s.patient_id = t.rows[r][size_t(c_pat)];
    if (c_study >= 0) s.study_uid = t.rows[r][size_t(c_study)];
    if (c_series >= 0) s.series_uid = t.rows[r][size_t(c_series)];
    if (c_z >= 0) s.z = t.rows[r][size_t(c_z)];
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace ich
