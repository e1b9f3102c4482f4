#include "phantom/phantom.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcuid.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include "dicom/dicom.h"
#include "engine/error.h"
#include "engine/random.h"
#include "io/atomic_file.h"
#include "io/csv.h"
#include "io/parallel.h"
#include "phantom/phantom_realistic.h"

namespace ich {

namespace {

enum Subtype { kEpidural = 0, kIntraparenchymal, kIntraventricular, kSubarachnoid, kSubdural };

struct Lesion {
  int type = 0, k0 = 0, k1 = 0;
  double theta = 0, width = 0, depth = 0;  // epidural, subdural, subarachnoid: sector on the surface
  double px = 0, py = 0, rad = 0, phase = 0;  // intraparenchymal blob
  double hu = 70;
};

struct Patient {
  std::string patient_id, study_uid, series_uid;
  int rows = 0, cols = 0;
  double cx = 0.5, cy = 0.5, a = 0.4, b = 0.45, skull = 0.035, bone_hu = 1300;
  int vent_k0 = 0, vent_k1 = 0;
  bool multi_window = false, rsna12 = false;
  std::vector<Lesion> lesions;
};

std::string hex_id(Generator& g, int digits) {
  static const char* h = "0123456789abcdef";
  std::string s = "ID_";
  for (int i = 0; i < digits; ++i) s += h[g.below(16)];
  return s;
}

constexpr double kPi = 3.14159265358979323846;

double angle_diff(double a, double b) {
  double d = std::fmod(a - b + 3 * kPi, 2 * kPi) - kPi;
  return std::fabs(d);
}

// How much of a lesion shows on slice k: 0 outside its span, peaking at 1.
double z_factor(const Lesion& l, int k) {
  if (k < l.k0 || k > l.k1) return 0;
  return std::sin(kPi * (k - l.k0 + 0.5) / (l.k1 - l.k0 + 1));
}

std::vector<Patient> plan_patients(const PhantomOptions& o) {
  Generator g(o.seed * 0x9E3779B97F4A7C15ull + 17);
  std::vector<Patient> ps;
  std::set<std::string> used;
  auto unique = [&](int digits) {
    std::string s;
    do s = hex_id(g, digits);
    while (!used.insert(s).second);
    return s;
  };
  const int S = o.slices_per_series;
  for (int p = 0; p < o.patients; ++p) {
    Patient P;
    P.patient_id = unique(8);
    if (!o.patient_prefix.empty()) P.patient_id = o.patient_prefix + std::to_string(p);
    P.study_uid = unique(10);
    P.series_uid = unique(10);
    P.rows = P.cols = o.size;
    if (g.uniform() < 0.06) {  // a few series of other sizes, as in RSNA
      const uint64_t k = g.below(3);
      if (k == 0) P.rows = P.cols = int(std::lround(o.size * 0.85));
      else if (k == 1) P.rows = P.cols = int(std::lround(o.size * 1.25));
      else P.cols = int(std::lround(o.size * 1.25));
    }
    P.cx = 0.5 + g.uniform(-0.03, 0.03);
    P.cy = 0.5 + g.uniform(-0.03, 0.03);
    P.a = g.uniform(0.34, 0.40);
    P.b = g.uniform(0.41, 0.46);
    P.skull = g.uniform(0.06, 0.085);
    P.bone_hu = g.uniform(1100, 1600);
    P.vent_k0 = int(S * 0.35);
    P.vent_k1 = std::max(P.vent_k0 + 2, int(S * 0.65));
    P.multi_window = g.uniform() < 0.4;
    P.rsna12 = g.uniform() < 0.08;
    if (g.uniform() < 0.44) {
      const int n = 1 + (g.uniform() < 0.35 ? 1 : 0);
      for (int i = 0; i < n; ++i) {
        // RSNA's relative frequencies of the subtypes (per image).
        const double w[5] = {0.05, 0.23, 0.17, 0.23, 0.32};
        double u = g.uniform(), acc = 0;
        int type = 4;
        for (int t = 0; t < 5; ++t)
          if ((acc += w[t]) > u) {
            type = t;
            break;
          }
        Lesion L;
        L.type = type;
        int len = 3 + int(g.below(8));
        int lo = 1, hi = S - 2;
        if (type == kIntraventricular) {
          lo = P.vent_k0;
          hi = P.vent_k1;
        }
        len = std::min(len, hi - lo + 1);
        L.k0 = lo + int(g.below(uint64_t(std::max(1, hi - lo - len + 2))));
        L.k1 = std::min(hi, L.k0 + len - 1);
        L.theta = g.uniform(0, 2 * kPi);
        L.hu = g.uniform(55, 85);
        switch (type) {
          case kEpidural: L.width = g.uniform(0.3, 0.5); L.depth = g.uniform(0.09, 0.14); break;
          case kSubdural: L.width = g.uniform(0.9, 1.5); L.depth = g.uniform(0.03, 0.05); break;
          case kSubarachnoid: L.width = g.uniform(0.6, 1.1); L.depth = 0.05; break;
          case kIntraparenchymal: {
            const double r = g.uniform(0.15, 0.55), t = g.uniform(0, 2 * kPi);
            L.px = r * std::cos(t);
            L.py = r * std::sin(t);
            L.rad = g.uniform(0.08, 0.16);
            L.phase = g.uniform(0, 2 * kPi);
            break;
          }
          default: break;
        }
        P.lesions.push_back(L);
      }
    }
    ps.push_back(std::move(P));
  }
  return ps;
}

// HU (before noise) and blood type (-1 none) at pixel (x, y) of slice k.
double tissue(const Patient& P, int k, int S, int x, int y, int* blood) {
  *blood = -1;
  const double m = std::min(P.rows, P.cols);
  const double t = (k + 0.5) / S - 0.45;
  const double scale = std::max(0.35, std::sqrt(std::max(0.0, 1.0 - (t / 0.62) * (t / 0.62))));
  const double u = (x + 0.5 - P.cx * P.cols) / (P.a * scale * m), v = (y + 0.5 - P.cy * P.rows) / (P.b * scale * m);
  const double r = std::sqrt(u * u + v * v);
  if (r > 1) return -1000;
  const double ri = 1 - P.skull / scale * 0.5;
  if (r > ri) return P.bone_hu;
  const double q = r / ri, phi = std::atan2(v, u);
  const double bu = u / ri, bv = v / ri;  // brain-normalised coordinates
  double hu = q > 0.86 ? 38 : 28;         // cortex (gray), then white matter
  const bool rim = q > 0.975;
  const bool sulcus = q > 0.86 && std::fabs(std::sin(9 * phi + 0.7 * q)) < 0.05;
  if (rim || sulcus) hu = 8;
  bool ventricle = false;
  if (k >= P.vent_k0 && k <= P.vent_k1) {
    for (double side : {-1.0, 1.0}) {
      const double du = (bu - side * 0.17) / 0.09, dv = (bv + 0.05) / 0.30;
      if (du * du + dv * dv < 1) ventricle = true;
    }
    if (ventricle) hu = 5;
  }
  for (const Lesion& L : P.lesions) {
    const double zf = z_factor(L, k);
    if (zf <= 0) continue;
    bool in = false;
    switch (L.type) {
      case kEpidural: {
        const double d = angle_diff(phi, L.theta) / L.width;
        in = d < 1 && q > 1 - L.depth * zf * (1 - d * d);
        break;
      }
      case kSubdural: {
        const double d = angle_diff(phi, L.theta) / L.width;
        in = d < 1 && q > 1 - L.depth * (0.4 + 0.6 * zf) * (1 - d * d * d * d);
        break;
      }
      case kSubarachnoid:
        in = angle_diff(phi, L.theta) < L.width * (0.5 + 0.5 * zf) && (rim || sulcus);
        break;
      case kIntraventricular:
        in = ventricle && bv > -0.05 + 0.25 * (1 - zf);
        break;
      case kIntraparenchymal: {
        const double du = bu - L.px, dv = bv - L.py;
        const double rr = L.rad * (0.4 + 0.6 * zf) * (1 + 0.2 * std::sin(3 * std::atan2(dv, du) + L.phase));
        in = !ventricle && q < 0.95 && du * du + dv * dv < rr * rr;
        break;
      }
    }
    if (in) {
      hu = L.hu;
      *blood = L.type;
    }
  }
  return hu;
}

int min_lesion_pixels(const PhantomSlice& s) { return std::max(20, int(0.0002 * s.rows * s.cols)); }

}  // namespace

namespace {
bool realistic(const PhantomOptions& o) {
  ICH_CHECK(o.difficulty == "realistic" || o.difficulty == "easy", "phantom: difficulty '", o.difficulty,
            "' (expected realistic or easy)");
  return o.difficulty == "realistic";
}

// The realistic model of a set of options, built once per thread and kept
// (plan and render ask for it slice after slice).
const RealisticModel& realistic_model(const PhantomOptions& o, const std::vector<Patient>& ps) {
  static thread_local std::unique_ptr<RealisticModel> model;
  static thread_local std::string key;
  const std::string k = std::to_string(o.seed) + "/" + std::to_string(o.patients) + "/" + std::to_string(o.size) +
                        "/" + std::to_string(o.slices_per_series);
  if (!model || key != k) {
    std::vector<std::array<int, 2>> sizes;
    for (const Patient& P : ps) sizes.push_back({P.rows, P.cols});
    model = std::make_unique<RealisticModel>(o, sizes);
    key = k;
  }
  return *model;
}

double ds_round(double v) { return std::round(v * 1000) / 1000; }  // what a 16-character DS holds exactly

uint64_t noise_seed(const PhantomOptions& o, const PhantomSlice& s) {
  return o.seed ^ (uint64_t(s.patient) << 32) ^ uint64_t(s.slice) * 0x9E3779B97F4A7C15ull;
}
}  // namespace

std::vector<PhantomSlice> plan_phantom(const PhantomOptions& o) {
  ICH_CHECK(o.patients >= 1 && o.slices_per_series >= 4 && o.size >= 32 && o.size <= 2048,
            "phantom: need >= 1 patient, >= 4 slices per series, size 32..2048");
  ICH_CHECK(o.corrupt_fraction >= 0 && o.corrupt_fraction <= 1, "phantom: corrupt fraction must be in [0, 1]");
  const bool real = realistic(o);
  const std::vector<Patient> ps = plan_patients(o);
  const RealisticModel* model = real ? &realistic_model(o, ps) : nullptr;
  Generator g(o.seed * 31 + 7);
  std::set<std::string> used;
  std::vector<PhantomSlice> out;
  for (size_t p = 0; p < ps.size(); ++p) {
    const Patient& P = ps[p];
    const double z0 = g.uniform(-200, 100);
    for (int k = 0; k < o.slices_per_series; ++k) {
      PhantomSlice s;
      do s.image_id = hex_id(g, 9);
      while (!used.insert(s.image_id).second);
      s.patient_id = P.patient_id;
      s.study_uid = P.study_uid;
      s.series_uid = P.series_uid;
      s.patient = int(p);
      s.slice = k;
      s.rows = P.rows;
      s.cols = P.cols;
      if (model) {
        const SliceGeometryInfo gi = model->geometry(int(p), k);
        for (int i = 0; i < 3; ++i) s.position[size_t(i)] = ds_round(gi.position[size_t(i)]);
        s.orientation = gi.orientation;
        for (double& v : s.orientation) v = std::round(v * 1e6) / 1e6;
        s.pixel_spacing = std::round(gi.pixel_spacing * 1e6) / 1e6;
        s.z = s.position[2];
      } else {
        s.z = ds_round(z0 + 5.0 * k);
        s.position = {-125, -121, s.z};
      }
      s.multi_window = P.multi_window;
      s.rsna12 = P.rsna12;
      const double c = g.uniform();
      if (c < o.corrupt_fraction) s.corrupt = g.uniform() < 0.5 ? "truncated" : "garbage";
      if (model) {  // labels from the blood the model draws on this slice
        model->render(int(p), k, 0, nullptr, &s.lesion_pixels, nullptr);
        for (int t = 0; t < 5; ++t) {
          s.labels[size_t(t)] = double(s.lesion_pixels[size_t(t)]) >= model->min_blood_pixels(int(p)) ? 1 : 0;
          s.labels[5] |= s.labels[size_t(t)];
        }
        out.push_back(s);
        continue;
      }
      // Labels from the blood mask (lesions only exist inside their spans).
      bool any_lesion = false;
      for (const Lesion& L : P.lesions) any_lesion |= z_factor(L, k) > 0;
      if (any_lesion) {
        for (int y = 0; y < s.rows; ++y)
          for (int x = 0; x < s.cols; ++x) {
            int b;
            tissue(P, k, o.slices_per_series, x, y, &b);
            if (b < 0) continue;
            ++s.lesion_pixels[size_t(b)];
            auto& bx = s.lesion_box;
            if (bx[0] < 0) bx = {x, y, x, y};
            bx[0] = std::min(bx[0], x), bx[1] = std::min(bx[1], y), bx[2] = std::max(bx[2], x), bx[3] = std::max(bx[3], y);
          }
        for (int t = 0; t < 5; ++t) {
          s.labels[size_t(t)] = s.lesion_pixels[size_t(t)] >= min_lesion_pixels(s) ? 1 : 0;
          s.labels[5] |= s.labels[size_t(t)];
        }
      }
      out.push_back(s);
    }
  }
  return out;
}

std::vector<float> render_phantom_slice(const PhantomOptions& o, const PhantomSlice& s, std::vector<int8_t>* blood) {
  static thread_local std::vector<Patient> cache;
  static thread_local uint64_t cache_seed = ~0ull;
  static thread_local int cache_n = -1, cache_size = -1, cache_s = -1;
  if (cache_seed != o.seed || cache_n != o.patients || cache_size != o.size || cache_s != o.slices_per_series) {
    // (the realistic model keys its own cache the same way)
    cache = plan_patients(o);
    cache_seed = o.seed, cache_n = o.patients, cache_size = o.size, cache_s = o.slices_per_series;
  }
  const Patient& P = cache.at(size_t(s.patient));
  if (realistic(o)) {
    std::vector<float> hu;
    realistic_model(o, cache).render(s.patient, s.slice, noise_seed(o, s), &hu, nullptr, blood);
    if (s.rsna12)
      for (float& v : hu) v = std::max(v, -1000.f);  // the 12-bit files' floor
    return hu;
  }
  Generator noise(noise_seed(o, s));
  std::vector<float> hu(size_t(s.rows) * size_t(s.cols));
  if (blood) blood->assign(hu.size(), -1);
  const float floor = s.rsna12 ? -1000.f : -1024.f;
  for (int y = 0; y < s.rows; ++y)
    for (int x = 0; x < s.cols; ++x) {
      int b;
      const double t = tissue(P, s.slice, o.slices_per_series, x, y, &b);
      const double sd = t <= -999 ? 2.0 : 3.0;
      // Integer HU: the stored values are integers, so a reader gets them back exactly.
      const float v = std::max(floor, float(std::lround(t + sd * noise.normal())));
      hu[size_t(y) * s.cols + x] = v;
      if (blood) (*blood)[size_t(y) * s.cols + x] = int8_t(b);
    }
  return hu;
}

namespace {

void write_slice_dicom(const PhantomOptions& o, const PhantomSlice& s, const std::string& path) {
  const std::vector<float> hu = render_phantom_slice(o, s);
  std::vector<Uint16> raw(hu.size());
  for (size_t i = 0; i < hu.size(); ++i) {
    const int v = int(hu[i]);
    raw[i] = s.rsna12 ? Uint16(((v % 4096) + 4096) % 4096) : Uint16(int16_t(v + 1024));
  }
  DcmFileFormat ff;
  DcmDataset* ds = ff.getDataset();
  auto put = [&](const DcmTagKey& tag, const std::string& v) {
    ICH_CHECK(ds->putAndInsertString(tag, v.c_str()).good(), "phantom: cannot set a DICOM attribute");
  };
  put(DCM_SOPClassUID, UID_CTImageStorage);
  put(DCM_SOPInstanceUID, s.image_id);
  put(DCM_PatientID, s.patient_id);
  put(DCM_StudyInstanceUID, s.study_uid);
  put(DCM_SeriesInstanceUID, s.series_uid);
  put(DCM_Modality, "CT");
  auto decimal = [](double v) { return fmt_double(v, 10); };
  put(DCM_ImagePositionPatient,
      decimal(s.position[0]) + "\\" + decimal(s.position[1]) + "\\" + decimal(s.position[2]));
  std::string ori;
  for (size_t i = 0; i < 6; ++i) ori += (i ? "\\" : "") + decimal(s.orientation[i]);
  put(DCM_ImageOrientationPatient, ori);
  put(DCM_PixelSpacing, decimal(s.pixel_spacing) + "\\" + decimal(s.pixel_spacing));
  put(DCM_PhotometricInterpretation, "MONOCHROME2");
  put(DCM_RescaleSlope, "1");
  put(DCM_RescaleIntercept, s.rsna12 ? "0" : "-1024");
  put(DCM_WindowCenter, s.multi_window ? "40\\36" : "40");
  put(DCM_WindowWidth, s.multi_window ? "80\\100" : "80");
  ds->putAndInsertUint16(DCM_SamplesPerPixel, 1);
  ds->putAndInsertUint16(DCM_Rows, Uint16(s.rows));
  ds->putAndInsertUint16(DCM_Columns, Uint16(s.cols));
  ds->putAndInsertUint16(DCM_BitsAllocated, 16);
  ds->putAndInsertUint16(DCM_BitsStored, s.rsna12 ? 12 : 16);
  ds->putAndInsertUint16(DCM_HighBit, s.rsna12 ? 11 : 15);
  ds->putAndInsertUint16(DCM_PixelRepresentation, s.rsna12 ? 0 : 1);
  ICH_CHECK(ds->putAndInsertUint16Array(DCM_PixelData, raw.data(), raw.size()).good(), "phantom: cannot set PixelData");
  const std::string tmp = path + ".tmp";
  const OFCondition c = ff.saveFile(tmp.c_str(), EXS_LittleEndianExplicit);
  ICH_CHECK(c.good(), "phantom: cannot write ", tmp, ": ", c.text());
  if (s.corrupt == "truncated") {  // cut inside the pixel data, as RSNA's ID_6431af929
    std::filesystem::resize_file(tmp, std::filesystem::file_size(tmp) * 6 / 10);
  } else if (s.corrupt == "garbage") {
    Generator g(std::hash<std::string>{}(s.image_id));
    std::string junk(4096, '\0');
    for (char& ch : junk) ch = char(g.below(256));
    std::ofstream(tmp, std::ios::binary | std::ios::trunc) << junk;
  }
  ICH_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "phantom: cannot rename ", tmp);
}

}  // namespace

PhantomSummary write_phantom(const PhantomOptions& o, const std::function<void(int64_t, int64_t)>& progress) {
  dicom_init();
  namespace fs = std::filesystem;
  fs::create_directories(fs::path(o.out) / "dicom");
  const std::vector<PhantomSlice> slices = plan_phantom(o);
  run_parallel(int64_t(slices.size()), o.threads, progress, [&](int64_t i) {
    const PhantomSlice& sl = slices[size_t(i)];
    write_slice_dicom(o, sl, (fs::path(o.out) / "dicom" / (sl.image_id + ".dcm")).string());
  });

  PhantomSummary sum;
  std::string labels = "ID,Label\n";
  CsvWriter manifest((fs::path(o.out) / "manifest.csv").string(),
                     {"image_id", "file", "patient_id", "study_uid", "series_uid", "slice", "z", "rows", "cols",
                      "epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural", "any",
                      "px_epidural", "px_intraparenchymal", "px_intraventricular", "px_subarachnoid", "px_subdural",
                      "box_x0", "box_y0", "box_x1", "box_y1", "multi_window", "rsna12", "corrupt"});
  for (const PhantomSlice& s : slices) {
    for (size_t t = 0; t < 6; ++t) labels += s.image_id + "_" + kSubtypes[t] + "," + std::to_string(s.labels[t]) + "\n";
    std::vector<std::string> row{s.image_id, "dicom/" + s.image_id + ".dcm", s.patient_id, s.study_uid,
                                 s.series_uid, std::to_string(s.slice), fmt_double(s.z, 8), std::to_string(s.rows),
                                 std::to_string(s.cols)};
    for (int l : s.labels) row.push_back(std::to_string(l));
    for (int64_t p : s.lesion_pixels) row.push_back(std::to_string(p));
    for (int b : s.lesion_box) row.push_back(std::to_string(b));
    row.push_back(s.multi_window ? "1" : "0");
    row.push_back(s.rsna12 ? "1" : "0");
    row.push_back(s.corrupt);
    manifest.row(row);
    ++sum.slices;
    sum.positives += s.labels[5];
    sum.corrupt += s.corrupt != "none";
  }
  write_file_atomic((fs::path(o.out) / "labels.csv").string(), labels);
  manifest.commit();
  return sum;
}

}  // namespace ich
