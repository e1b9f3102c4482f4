#include "data/split.h"

#include <algorithm>
#include <cmath>
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

// Returns 1 (valid) or 0 (train) for each row.
std::vector<int> stratified_groups(const std::vector<SplitRow>& rows, const SplitOptions& o, Generator& g) {
  std::map<std::string, std::vector<size_t>> by_key;
  for (size_t i = 0; i < rows.size(); ++i) by_key[group_key(rows[i], o.group_by)].push_back(i);
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
  const double frac[2] = {1 - o.valid_fraction, o.valid_fraction};
  std::array<double, 6> total{};
  for (const auto& gr : groups)
    for (size_t l = 0; l < 6; ++l) total[l] += gr.pos[l];
  double want_label[2][6], want_size[2];
  for (int f = 0; f < 2; ++f) {
    for (size_t l = 0; l < 6; ++l) want_label[f][l] = total[l] * frac[f];
    want_size[f] = double(rows.size()) * frac[f];
  }
  auto assign = [&](Group& gr, int f) {
    gr.fold = f;
    for (size_t l = 0; l < 6; ++l) want_label[f][l] -= gr.pos[l];
    want_size[f] -= double(gr.rows.size());
  };
  auto pick = [&](double a0, double a1) {  // larger want wins; exact ties by the generator
    if (a0 != a1) return a0 > a1 ? 0 : 1;
    return int(g.below(2));
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
      const double a0 = want_label[0][label], a1 = want_label[1][label];
      assign(gr, a0 != a1 ? (a0 > a1 ? 0 : 1) : pick(want_size[0], want_size[1]));
    }
  }
  for (auto& gr : groups)
    if (gr.fold < 0) assign(gr, pick(want_size[0], want_size[1]));
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

}  // namespace

SplitResult split_dataset(const LabelTable& labels, const CsvTable& meta, const SplitOptions& o) {
  ICH_CHECK(o.valid_fraction > 0 && o.valid_fraction < 1, "valid fraction ", o.valid_fraction, " must be in (0, 1)");
  ICH_CHECK(o.group_by == "patient" || o.group_by == "study" || o.group_by == "series" || o.group_by == "none",
            "--group-by '", o.group_by, "': expected patient, study, series or none");
  ICH_CHECK(o.method == "grouped" || o.method == "seed", "--method '", o.method, "': expected grouped or seed");
  const size_t c_id = meta.column("image_id"), c_status = meta.column("status"), c_pat = meta.column("patient_id"),
               c_study = meta.column("study_uid"), c_series = meta.column("series_uid"), c_z = meta.column("z");
  SplitResult res;
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
  Generator g(o.seed);
  const std::vector<int> fold = o.method == "seed" ? seed_method(rows, o, g) : stratified_groups(rows, o, g);
  for (size_t i = 0; i < rows.size(); ++i) (fold[i] ? res.valid : res.train).push_back(rows[i]);
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
