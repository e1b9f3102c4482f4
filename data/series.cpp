#include "data/series.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <sstream>

#include "engine/error.h"

namespace ich {

namespace {

constexpr double kTie = 0.01;  // mm: closer neighbours are the same position

std::array<double, 3> normal_of(const std::array<double, 6>& o) {
  std::array<double, 3> n{o[1] * o[5] - o[2] * o[4], o[2] * o[3] - o[0] * o[5], o[0] * o[4] - o[1] * o[3]};
  const double len = std::sqrt(n[0] * n[0] + n[1] * n[1] + n[2] * n[2]);
  if (!(len > 1e-6)) return {0, 0, 1};  // degenerate cosines: axial
  for (double& v : n) v /= len;
  return n;
}

// A ';'-separated list of numbers; false if any field is not one.
bool parse_numbers(const std::string& s, size_t want, double* out) {
  std::stringstream ss(s);
  std::string f;
  size_t k = 0;
  while (std::getline(ss, f, ';')) {
    if (k == want) return false;
    char* end = nullptr;
    out[k] = std::strtod(f.c_str(), &end);
    if (f.empty() || end != f.c_str() + f.size() || !std::isfinite(out[k])) return false;
    ++k;
  }
  return k == want;
}

}  // namespace

std::vector<SeriesOrder> order_series(const std::vector<SliceGeometry>& slices) {
  std::map<std::pair<std::string, std::string>, size_t> index;
  std::vector<SeriesOrder> out;
  for (size_t i = 0; i < slices.size(); ++i) {
    const SliceGeometry& g = slices[i];
    auto [it, fresh] = index.emplace(std::make_pair(g.study_uid, g.series_uid), out.size());
    if (fresh) out.push_back({g.patient_id, g.study_uid, g.series_uid, {}, {}, 0, 0, 0, 0});
    out[it->second].slices.push_back(i);
  }
  for (SeriesOrder& s : out) {
    std::array<double, 6> o{1, 0, 0, 0, 1, 0};
    for (size_t i : s.slices)
      if (slices[i].has_orientation) {
        o = slices[i].orientation;
        break;
      }
    const std::array<double, 3> n = normal_of(o);
    auto pos = [&](size_t i) {
      const SliceGeometry& g = slices[i];
      if (!g.has_position) return std::numeric_limits<double>::quiet_NaN();
      return g.position[0] * n[0] + g.position[1] * n[1] + g.position[2] * n[2];
    };
    // Placed slices by position (ties by id), then the unplaced by id.
    std::sort(s.slices.begin(), s.slices.end(), [&](size_t a, size_t b) {
      const double pa = pos(a), pb = pos(b);
      const bool na = std::isnan(pa), nb = std::isnan(pb);
      if (na != nb) return nb;
      if (!na && std::fabs(pa - pb) >= kTie) return pa < pb;
      return slices[a].image_id < slices[b].image_id;
    });
    std::vector<double> gaps;
    for (size_t k = 0; k < s.slices.size(); ++k) {
      s.position.push_back(pos(s.slices[k]));
      if (std::isnan(s.position.back())) ++s.unplaced;
      if (k > 0 && !std::isnan(s.position[k]) && !std::isnan(s.position[k - 1])) {
        const double d = s.position[k] - s.position[k - 1];
        if (d < kTie) ++s.ties;
        else gaps.push_back(d);
      }
    }
    if (!gaps.empty()) {
      std::vector<double> sorted = gaps;
      std::nth_element(sorted.begin(), sorted.begin() + long(sorted.size() / 2), sorted.end());
      s.spacing = sorted[sorted.size() / 2];
      for (double d : gaps) s.gaps += d > 1.5 * s.spacing;
    }
  }
  return out;
}

std::array<double, 2> neighbour_gaps(const SeriesOrder& s, size_t k) {
  ICH_CHECK(k < s.slices.size(), "neighbour_gaps: slice ", k, " of a series of ", s.slices.size());
  auto gap = [&](size_t a, size_t b) {
    const double d = s.position[b] - s.position[a];
    return std::isnan(d) ? 0.0 : d;
  };
  return {k > 0 ? gap(k - 1, k) : 0.0, k + 1 < s.slices.size() ? gap(k, k + 1) : 0.0};
}

std::string describe_irregularities(const SeriesOrder& s) {
  if (!s.ties && !s.gaps && !s.unplaced) return "";
  std::ostringstream o;
  o << "series " << s.series_uid << " (patient " << s.patient_id << ", " << s.slices.size() << " slices, spacing "
    << fmt_double(s.spacing, 4) << " mm):";
  if (s.ties) o << " " << s.ties << " duplicated position" << (s.ties > 1 ? "s" : "");
  if (s.gaps) o << " " << s.gaps << " gap" << (s.gaps > 1 ? "s" : "") << " over 1.5x the spacing";
  if (s.unplaced) o << " " << s.unplaced << " slice" << (s.unplaced > 1 ? "s" : "") << " without a position (last)";
  return o.str();
}

std::vector<SliceGeometry> read_geometry(const CsvTable& meta) {
  const size_t c_id = meta.column("image_id"), c_pat = meta.column("patient_id"), c_study = meta.column("study_uid"),
               c_series = meta.column("series_uid"), c_z = meta.column("z");
  const bool full = meta.has_column("position") && meta.has_column("orientation");
  const size_t c_pos = full ? meta.column("position") : 0, c_ori = full ? meta.column("orientation") : 0;
  const bool has_status = meta.has_column("status");
  const size_t c_status = has_status ? meta.column("status") : 0;
  std::vector<SliceGeometry> out;
  for (size_t r = 0; r < meta.rows.size(); ++r) {
    const auto& m = meta.rows[r];
    if (has_status && m[c_status] != "ok") continue;
    SliceGeometry g;
    g.image_id = m[c_id], g.patient_id = m[c_pat], g.study_uid = m[c_study], g.series_uid = m[c_series];
    if (full && !m[c_pos].empty()) {
      ICH_CHECK(parse_numbers(m[c_pos], 3, g.position.data()), meta.path, " line ", meta.line_of[r],
                ": position '", m[c_pos], "' is not three numbers x;y;z");
      g.has_position = true;
    } else if (!m[c_z].empty()) {
      double z = 0;
      ICH_CHECK(parse_numbers(m[c_z], 1, &z), meta.path, " line ", meta.line_of[r], ": z '", m[c_z],
                "' is not a number");
      g.position = {0, 0, z};
      g.has_position = true;
    }
    if (full && !m[c_ori].empty()) {
      ICH_CHECK(parse_numbers(m[c_ori], 6, g.orientation.data()), meta.path, " line ", meta.line_of[r],
                ": orientation '", m[c_ori], "' is not six numbers");
      g.has_orientation = true;
    }
    out.push_back(std::move(g));
  }
  return out;
}

}  // namespace ich
