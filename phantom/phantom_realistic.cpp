// phantom_realistic.cpp: ich-phantom --difficulty realistic, a 3-D head
// sampled slice by slice, so that neighbouring slices agree and context
// across a series carries information (phantom/phantom.h says what is drawn).
//
// Coordinates. Each patient's head is modelled in its own frame (mm): x to
// the patient's left, y to the back, z up, origin at the centre of the
// brain. The scanner samples planes: slice k of a series is the plane
// through IPP_k spanned by the row cosine (1,0,0) and the column cosine
// (0, cos t, sin t) (t: a gantry tilt in some series), IPP_k moving along
// the plane's normal by the series' spacing. The head sits in the scanner
// shifted and turned (pitch, roll, yaw a few degrees: head tilt), so a
// scanner point p is the head point q = R^T (p - c). Everything drawn is a
// function of q: a lesion's extent across slices is its 3-D extent.
//
// Tissue in HU: air -1000; scalp 10-40 with a fatty layer; skull 900-1600
// with a diploe; cortex (grey matter) 34-42 in a 3 mm band under the
// subarachnoid CSF, white matter 22-30, deep grey nuclei; sulci as CSF
// sheets (0-10 HU) where a smooth 3-D noise field crosses zero near the
// surface, the interhemispheric fissure with the falx; lateral, third and
// fourth ventricles; at the skull base the middle and posterior fossae,
// petrous bone, sphenoid and mastoid air, orbits; calcified pineal, choroid
// plexus and (some patients) falx, bright like bone but not blood; beam
// hardening as dark streaks between dense bone; noise 3-7 HU, slightly
// correlated, and slow tissue variation.
//
// Blood is 45-85 HU (acute clot; hyperacute blood overlaps grey matter) with
// partial volume: each lesion gives a fraction f in [0, 1] that falls over
// about a millimetre at its edge, and a pixel's HU is mixed by f. The label
// of a slice follows the pixels with f >= 0.5: a subtype is present when
// they cover at least kMinBloodMm2. Lesions: epidural (a biconvex lens under
// the inner table, rare), subdural (a thin, wide crescent), subarachnoid
// (blood in the sulci of a region, or in the basal cisterns), intraparenchymal
// (irregular blobs of 2-20 mm radius, with oedema: small ones show on one
// or two slices), intraventricular (layering in the dependent, posterior
// part of the ventricles). Prevalence and co-occurrence follow RSNA's
// (about 14% of slices with some blood; epidural in at least three patients
// of 30 or more).
#include "phantom/phantom_realistic.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "engine/error.h"
#include "engine/random.h"

namespace ich {

namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr double kMinBloodMm2 = 14.0;  // a subtype's pixels on a slice to call it present

struct V3 {
  double x = 0, y = 0, z = 0;
};
V3 operator-(V3 a, V3 b) { return {a.x - b.x, a.y - b.y, a.z - b.z}; }
V3 operator+(V3 a, V3 b) { return {a.x + b.x, a.y + b.y, a.z + b.z}; }
V3 operator*(double s, V3 a) { return {s * a.x, s * a.y, s * a.z}; }
double dot(V3 a, V3 b) { return a.x * b.x + a.y * b.y + a.z * b.z; }
double norm(V3 a) { return std::sqrt(dot(a, a)); }

double smoothstep(double e0, double e1, double x) {
  const double t = std::clamp((x - e0) / (e1 - e0), 0.0, 1.0);
  return t * t * (3 - 2 * t);
}

// Value noise in 3-D: a hashed lattice of values in [-1, 1], interpolated
// with smoothstep; deterministic for a seed, about unit feature size.
struct Noise3 {
  uint64_t seed = 0;
  double lattice(int64_t i, int64_t j, int64_t k) const {
    uint64_t h = seed ^ (uint64_t(i) * 0x9E3779B97F4A7C15ull) ^ (uint64_t(j) * 0xC2B2AE3D27D4EB4Full) ^
                 (uint64_t(k) * 0x165667B19E3779F9ull);
    h ^= h >> 33;
    h *= 0xFF51AFD7ED558CCDull;
    h ^= h >> 33;
    h *= 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 33;
    return double(h >> 11) / double(1ull << 53) * 2 - 1;
  }
  double operator()(V3 p) const {
    const double fx = std::floor(p.x), fy = std::floor(p.y), fz = std::floor(p.z);
    const int64_t i = int64_t(fx), j = int64_t(fy), k = int64_t(fz);
    const double u = smoothstep(0, 1, p.x - fx), v = smoothstep(0, 1, p.y - fy), w = smoothstep(0, 1, p.z - fz);
    auto L = [&](int a, int b, int c) { return lattice(i + a, j + b, k + c); };
    const double x00 = L(0, 0, 0) + u * (L(1, 0, 0) - L(0, 0, 0)), x10 = L(0, 1, 0) + u * (L(1, 1, 0) - L(0, 1, 0));
    const double x01 = L(0, 0, 1) + u * (L(1, 0, 1) - L(0, 0, 1)), x11 = L(0, 1, 1) + u * (L(1, 1, 1) - L(0, 1, 1));
    const double y0 = x00 + v * (x10 - x00), y1 = x01 + v * (x11 - x01);
    return y0 + w * (y1 - y0);
  }
};

enum Subtype { kEpidural = 0, kIntraparenchymal, kIntraventricular, kSubarachnoid, kSubdural };

struct Lesion {
  int type = 0;
  double hu = 70;
  V3 dir;            // extra-axial: direction from the centre (unit, in axes-normalised space)
  double angle = 0;  // extra-axial: angular radius (rad)
  double thick = 0;  // epidural / subdural: maximum thickness (mm)
  V3 centre;         // intraparenchymal: centre (mm); subarachnoid in the cisterns: centre
  double radius = 0; // intraparenchymal: radius (mm)
  double fill = 0;   // intraventricular: how far forward the layer reaches (y level, mm)
  bool cisternal = false;
  uint64_t shape_seed = 0;
};

struct Head {
  V3 centre;                // brain centre in scanner coordinates (mm)
  double R[3][3];           // head -> scanner rotation
  double ax, ay, az;        // inner table semi-axes (mm)
  double skull, scalp, diploe;
  double gm, wm, csf, bone, deep_gm;
  double vent_scale;        // ventricle size (atrophy widens them)
  double noise_sd;
  bool falx_calcified;
  Noise3 sulci, texture, shape;
  std::vector<Lesion> lesions;
  // series geometry
  double fov, tilt, spacing, d0;
  int rows, cols;
};

V3 rotate_back(const double R[3][3], V3 v) {  // R^T v
  return {R[0][0] * v.x + R[1][0] * v.y + R[2][0] * v.z, R[0][1] * v.x + R[1][1] * v.y + R[2][1] * v.z,
          R[0][2] * v.x + R[1][2] * v.y + R[2][2] * v.z};
}

// Normalised radius of q in the head's shapes: ellipsoids of semi-axes
// (a, b, c) above the brain's centre, taller below it (c * kLow), so that
// the skull base slices are as wide as a head is there.
constexpr double kLow = 1.4;
double rho(V3 q, double a, double b, double c) {
  const double cz = q.z < 0 ? c * kLow : c;
  return std::sqrt((q.x / a) * (q.x / a) + (q.y / b) * (q.y / b) + (q.z / cz) * (q.z / cz));
}

// The skull base: below this z (mm, head frame) at (x, y) there is no
// brain. The anterior fossa sits on the orbital roofs, the middle fossae
// (temporal lobes) deeper on each side, the sella in between, the posterior
// fossa (cerebellum) deepest at the back, behind the petrous ridges.
double floor_z(const Head& h, double x, double y) {
  const double u = std::fabs(x) / h.ax, v = y / h.ay;
  const double anterior = -0.32 * h.az, sella = -0.42 * h.az, middle = -0.68 * h.az, posterior = -0.95 * h.az;
  // the petrous ridge: a line from near the midline at the front of the
  // posterior fossa out to the side and back
  const double ridge_v = 0.02 + 0.45 * u;
  const double behind = smoothstep(ridge_v - 0.06, ridge_v + 0.06, v);
  const double lateral = smoothstep(0.18, 0.38, u);
  const double front = smoothstep(-0.35, -0.5, v);  // 1 in front of the middle fossae
  double z = sella + (middle - sella) * lateral;
  z = z + (anterior - z) * front;
  const double ridge = -0.4 * h.az - 0.15 * h.az * u;  // the ridge's crest
  const double at_ridge = std::exp(-std::pow((v - ridge_v) / 0.05, 2));
  z = std::max(z, ridge * at_ridge + z * (1 - at_ridge));
  return z + (posterior - z) * behind;
}

// Lateral ventricles (and the third, and the fourth in the posterior fossa).
bool in_ventricle(const Head& h, V3 q, double* depth_y = nullptr) {
  const double s = h.vent_scale;
  for (double side : {-1.0, 1.0}) {
    // a curved body: frontal horn to atrium, bending down into the temporal horn at the back
    const double bend = 6 * smoothstep(5, 30, q.y);
    const double dx = (q.x - side * (9 + 0.12 * q.y) * s) / (6.5 * s);
    const double dy = (q.y - 4) / (30 * s);
    const double dz = (q.z - 12 + bend) / (9 * s);
    if (dx * dx + dy * dy + dz * dz < 1) {
      if (depth_y) *depth_y = q.y;
      return true;
    }
  }
  const double t3 = (q.x / 2.0) * (q.x / 2.0) + ((q.y - 2) / (12 * s)) * ((q.y - 2) / (12 * s)) +
                    ((q.z + 2) / (9 * s)) * ((q.z + 2) / (9 * s));
  const double t4 = (q.x / 5.0) * (q.x / 5.0) + ((q.y - 32) / 5.0) * ((q.y - 32) / 5.0) +
                    ((q.z + 0.5 * h.az) / 6.0) * ((q.z + 0.5 * h.az) / 6.0);
  if (t3 < 1 || t4 < 1) {
    if (depth_y) *depth_y = q.y;
    return true;
  }
  return false;
}

// Depth below the inner table along the radius, in mm (negative outside).
double depth_mm(const Head& h, V3 q) {
  const double r = rho(q, h.ax, h.ay, h.az);
  const double len = norm(q);
  if (len < 1e-9) return h.az;
  return len * (1 / std::max(r, 1e-9) - 1);
}

// Whether q lies in sulcal CSF (the sheets between gyri near the surface).
bool in_sulcus(const Head& h, V3 q, double depth) {
  if (depth < 0 || depth > 14) return false;
  const double n = h.sulci(0.14 * q);
  const double width = 0.09 * (1 - depth / 16);
  return std::fabs(n) < width;
}

// Blood fraction of one lesion at q (partial volume over about 1 mm).
double lesion_fraction(const Head& h, const Lesion& L, V3 q, double depth, bool brain, bool csf_space) {
  switch (L.type) {
    case kEpidural:
    case kSubdural: {
      if (depth < -0.5 || !brain) return 0;
      const V3 u{q.x / h.ax, q.y / h.ay, q.z / h.az};
      const double nu = norm(u);
      if (nu < 1e-9) return 0;
      const double ang = std::acos(std::clamp(dot((1 / nu) * u, L.dir), -1.0, 1.0));
      if (ang >= L.angle) return 0;
      const double a = ang / L.angle;
      const double prof = L.type == kEpidural ? 1 - a * a : 1 - a * a * a * a;
      const double wobble = 1 + 0.15 * h.shape(0.05 * q + V3{double(L.shape_seed % 97), 0, 0});
      const double t = L.thick * prof * wobble;
      return 1 - smoothstep(t - 0.6, t + 0.6, depth);
    }
    case kSubarachnoid: {
      if (!csf_space) return 0;
      if (L.cisternal) {
        const double d = norm(q - L.centre);
        return 1 - smoothstep(L.radius - 1, L.radius + 1, d);
      }
      const V3 u{q.x / h.ax, q.y / h.ay, q.z / h.az};
      const double nu = norm(u);
      if (nu < 1e-9) return 0;
      const double ang = std::acos(std::clamp(dot((1 / nu) * u, L.dir), -1.0, 1.0));
      return 1 - smoothstep(0.85 * L.angle, L.angle, ang);
    }
    case kIntraparenchymal: {
      if (!brain) return 0;
      const V3 d = q - L.centre;
      const double r = norm(d);
      const double irregular = 1 + 0.25 * h.shape((1.0 / std::max(4.0, 0.5 * L.radius)) * d +
                                                  V3{0, double(L.shape_seed % 89), 0});
      const double rr = L.radius * irregular;
      return 1 - smoothstep(rr - 0.7, rr + 0.7, r);
    }
    case kIntraventricular: {
      double y = 0;
      if (!in_ventricle(h, q, &y)) return 0;
      return smoothstep(L.fill - 1, L.fill + 1, y);
    }
  }
  return 0;
}

// Oedema around a parenchymal bleed: a low-density rim.
double oedema(const Head& h, V3 q) {
  double e = 0;
  for (const Lesion& L : h.lesions) {
    if (L.type != kIntraparenchymal || L.radius < 6) continue;
    const double r = norm(q - L.centre);
    e = std::max(e, 1 - smoothstep(L.radius, L.radius * 1.6 + 2, r));
  }
  return e;
}

struct Sample {
  double hu = -1000;
  std::array<double, 5> blood{};  // fraction per subtype
};

// The tissue at head point q (no noise).
Sample tissue_at(const Head& h, V3 q, bool with_texture) {
  Sample s;
  const double r_in = rho(q, h.ax, h.ay, h.az);
  const double r_out = rho(q, h.ax + h.skull, h.ay + h.skull, h.az + h.skull);
  const double r_scalp = rho(q, h.ax + h.skull + h.scalp, h.ay + h.skull + h.scalp, h.az + h.skull + h.scalp);
  if (r_scalp > 1) return s;
  const double fz = floor_z(h, q.x, q.y);
  const bool below_floor = q.z < fz;
  if (r_out > 1) {  // scalp: skin, then fat
    s.hu = r_scalp > 0.985 ? 35 : -70;
    return s;
  }
  const double depth = depth_mm(h, q);
  if (r_in > 1 || below_floor) {
    // skull, or the skull base below the brain: bone with air cells and sinuses
    double hu = h.bone;
    const double inner = rho(q, h.ax + 0.35 * h.skull, h.ay + 0.35 * h.skull, h.az + 0.35 * h.skull);
    const double outer = rho(q, h.ax + 0.7 * h.skull, h.ay + 0.7 * h.skull, h.az + 0.7 * h.skull);
    if (r_in > 1 && inner > 1 && outer < 1) hu = h.diploe;
    if (below_floor && r_in <= 1) {
      // the skull base: a bone plate under the brain, then the face and
      // neck: soft tissue with the sinuses, the nasal cavity, the mastoid
      // air cells and the orbits
      const double below = fz - q.z;
      hu = below < 5 + 3 * h.texture(0.2 * q) ? h.bone * 0.8 : 35 + 8 * h.texture(0.15 * q);
      const V3 sph{q.x / 13, (q.y + 0.45 * h.ay) / 14, (q.z + 0.55 * h.az) / 11};  // sphenoid sinus
      const V3 eth{q.x / 10, (q.y + 0.8 * h.ay) / 16, (q.z + 0.5 * h.az) / 14};    // ethmoid, nasal cavity
      const V3 mast{(std::fabs(q.x) - 0.82 * h.ax) / 10, (q.y - 0.15 * h.ay) / 11, (q.z + 0.75 * h.az) / 10};
      if (norm(sph) < 1 || norm(eth) < 1 || (norm(mast) < 1 && h.texture(0.5 * q) > -0.3)) hu = -900;
      const V3 orbit{(std::fabs(q.x) - 0.38 * h.ax) / 17, (q.y + 0.78 * h.ay) / 20, (q.z + 0.45 * h.az) / 15};
      if (norm(orbit) < 1) hu = norm(orbit) < 0.6 ? 12 : -80;  // the globe in orbital fat
      const V3 ridge{(std::fabs(q.x) - 0.5 * h.ax) / (0.32 * h.ax), (q.y - 0.2 * h.ay) / 9, (q.z + 0.55 * h.az) / 9};
      if (norm(ridge) < 1) hu = h.bone;  // the petrous bone, densest of all
    }
    s.hu = hu;
    return s;
  }
  // inside the inner table
  const bool csf_rim = depth < 1.3;
  const bool fissure = std::fabs(q.x) < 1.6 && q.y > -0.9 * h.ay && q.z > -0.15 * h.az;
  // the sylvian fissures: clefts from the side of the brain inwards, between
  // the frontal and the temporal lobe
  const bool sylvian = std::fabs(q.x) > 0.42 * h.ax && q.z > -0.4 * h.az && q.z < 0.08 * h.az && depth < 28 &&
                       std::fabs(q.y - (-0.12 * h.ay + 0.35 * (std::fabs(q.x) - 0.42 * h.ax))) < 1.8;
  const bool sulcus = in_sulcus(h, q, depth) || sylvian;
  const bool ventricle = in_ventricle(h, q);
  const bool csf = csf_rim || fissure || sulcus || ventricle;
  double hu;
  if (csf) {
    hu = h.csf;
  } else if (depth < 4.5) {
    hu = h.gm;
  } else {
    hu = h.wm;
    // deep grey: basal ganglia and thalami
    for (double side : {-1.0, 1.0}) {
      const V3 bg{(q.x - side * 18) / 9, (q.y + 2) / 14, (q.z - 2) / 9};
      if (norm(bg) < 1) hu = h.deep_gm;
    }
    // brainstem and cerebellum are grey-ish
    if (q.z < -0.45 * h.az && q.y > -0.1 * h.ay) hu = 0.5 * (h.gm + h.wm);
  }
  if (fissure && std::fabs(q.x) < 0.5) hu = h.falx_calcified && h.texture(0.2 * q) > 0.45 ? 180 : 48;  // falx
  const V3 pineal{q.x / 3, (q.y - 18) / 3, (q.z - 4) / 3};
  if (norm(pineal) < 1) hu = 150;
  for (double side : {-1.0, 1.0}) {  // choroid plexus calcification in the atria
    const V3 cp{(q.x - side * 17 * h.vent_scale) / 3, (q.y - 24) / 4, (q.z - 8) / 3};
    if (norm(cp) < 1 && ventricle) hu = 110;
  }
  if (with_texture) hu += 2.0 * h.texture(0.08 * q) + 1.0 * h.texture(0.3 * q + V3{50, 0, 0});
  const double oed = oedema(h, q);
  if (oed > 0 && !csf) hu -= 10 * oed;
  // blood: mixed in by its fraction; where lesions overlap the largest wins
  const bool csf_space = sulcus || fissure || csf_rim || (q.z < -0.2 * h.az && q.z > -0.55 * h.az && std::fabs(q.x) < 22 &&
                                                            q.y > -15 && q.y < 25 && depth > 20);
  double best = 0, best_hu = 0;
  for (const Lesion& L : h.lesions) {
    const double f = lesion_fraction(h, L, q, depth, true, csf_space);
    if (f <= 0) continue;
    s.blood[size_t(L.type)] = std::max(s.blood[size_t(L.type)], f);
    if (f > best) best = f, best_hu = L.hu;
  }
  s.hu = hu * (1 - best) + best_hu * best;
  return s;
}

// The scanner point of pixel (x, y) of slice k, and its head point.
V3 head_point(const Head& h, int k, double x, double y) {
  const double px = h.fov / std::max(h.rows, h.cols);
  const V3 row{1, 0, 0}, col{0, std::cos(h.tilt), std::sin(h.tilt)}, n{0, -std::sin(h.tilt), std::cos(h.tilt)};
  const V3 origin = V3{-0.5 * h.cols * px, -0.5 * h.rows * px, 0} + (h.d0 + k * h.spacing) * n;
  const V3 p = origin + (x * px) * row + (y * px) * col;
  return rotate_back(h.R, p - h.centre);
}

// Beam hardening across the skull base: dark streaks between dense bone,
// lines across the slice whose strength grows towards the skull base.
struct Streak {
  double cx, cy, s, c, amp;  // a point (pixels), the line's direction, HU at its centre line
};
std::vector<Streak> streaks_of(const Head& h, int k, uint64_t seed) {
  const V3 mid = head_point(h, k, 0.5 * h.cols, 0.5 * h.rows);
  const double base = smoothstep(-0.35 * h.az, -0.7 * h.az, mid.z);  // only low slices
  std::vector<Streak> out;
  if (base <= 0) return out;
  Generator g(seed * 0x9E3779B97F4A7C15ull + uint64_t(k) * 131 + 7);
  const double px = h.fov / std::max(h.rows, h.cols);
  const int n = 3 + int(g.below(4));
  for (int i = 0; i < n; ++i) {
    const double th = g.uniform(-0.5, 0.5) + (i % 2 ? kPi / 2 : 0);
    out.push_back({0.5 * h.cols + g.uniform(-25, 25) / px, 0.5 * h.rows + g.uniform(0, 40) / px, std::sin(th),
                   std::cos(th), -base * g.uniform(12, 35)});
  }
  return out;
}
double streak_hu(const std::vector<Streak>& v, double px, double x, double y) {
  double s = 0;
  for (const Streak& l : v) {
    const double d = std::fabs(-(x - l.cx) * l.s + (y - l.cy) * l.c) * px;
    s += l.amp * std::exp(-d * d / (2 * 1.2 * 1.2));
  }
  return s;
}

V3 random_unit(Generator& g) {
  while (true) {
    const V3 v{g.uniform(-1, 1), g.uniform(-1, 1), g.uniform(-1, 1)};
    const double n = norm(v);
    if (n > 0.1 && n <= 1) return (1 / n) * v;
  }
}

// A direction on the convexity (above the skull base, mostly lateral).
V3 convexity_dir(Generator& g) {
  while (true) {
    V3 v = random_unit(g);
    if (v.z > -0.15 && std::fabs(v.x) > 0.25) return v;
  }
}

Lesion make_lesion(const Head& h, int type, Generator& g) {
  Lesion L;
  L.type = type;
  L.hu = g.uniform(45, 85);
  L.shape_seed = g.below(1u << 30);
  switch (type) {
    case kEpidural:
      L.dir = convexity_dir(g);
      L.angle = g.uniform(0.15, 0.32);
      L.thick = g.uniform(5, 15);
      break;
    case kSubdural:
      L.dir = convexity_dir(g);
      L.angle = g.uniform(0.45, 1.0);
      L.thick = std::exp(g.uniform(std::log(3.0), std::log(12.0)));  // thin ones are common and hard
      break;
    case kSubarachnoid:
      L.cisternal = g.uniform() < 0.3;
      if (L.cisternal) {
        L.centre = {g.uniform(-8, 8), g.uniform(-5, 12), -0.38 * h.az + g.uniform(-6, 6)};
        L.radius = g.uniform(8, 16);
      } else {
        L.dir = convexity_dir(g);
        L.angle = g.uniform(0.3, 0.8);
      }
      break;
    case kIntraparenchymal: {
      L.radius = std::exp(g.uniform(std::log(2.0), std::log(20.0)));
      while (true) {  // inside the brain, away from the surface
        const V3 c{g.uniform(-0.7, 0.7) * h.ax, g.uniform(-0.7, 0.7) * h.ay, g.uniform(-0.4, 0.7) * h.az};
        if (rho(c, h.ax, h.ay, h.az) < 0.75 && !in_ventricle(h, c)) {
          L.centre = c;
          break;
        }
      }
      break;
    }
    case kIntraventricular:
      L.fill = g.uniform(-10, 25) * h.vent_scale;  // blood behind this y level (dependent, supine)
      break;
  }
  return L;
}

// Which subtypes a patient with hemorrhage has (RSNA's mixes: subdural
// often alone; intraparenchymal with intraventricular and subarachnoid;
// epidural rare, sometimes with subdural).
std::vector<int> draw_pattern(Generator& g) {
  const double u = g.uniform();
  std::vector<int> t;
  auto maybe = [&](int type, double p) {
    if (g.uniform() < p) t.push_back(type);
  };
  if (u < 0.36) {
    t.push_back(kSubdural);
    maybe(kSubarachnoid, 0.3);
  } else if (u < 0.62) {
    t.push_back(kIntraparenchymal);
    maybe(kIntraventricular, 0.35);
    maybe(kSubarachnoid, 0.3);
  } else if (u < 0.84) {
    t.push_back(kSubarachnoid);
    maybe(kIntraventricular, 0.25);
    maybe(kIntraparenchymal, 0.2);
    maybe(kSubdural, 0.2);
  } else if (u < 0.97) {
    t.push_back(kIntraventricular);
    maybe(kIntraparenchymal, 0.5);
  } else {
    t.push_back(kEpidural);
    maybe(kSubdural, 0.3);
  }
  return t;
}

Head make_head(const PhantomOptions& o, int patient, int rows, int cols, bool force_epidural) {
  Generator g(o.seed * 0x2545F4914F6CDD1Dull + uint64_t(patient) * 7919 + 3);
  Head h;
  h.ax = g.uniform(64, 72), h.ay = g.uniform(80, 92), h.az = g.uniform(68, 78);
  h.skull = g.uniform(5, 8), h.scalp = g.uniform(3.5, 6), h.diploe = g.uniform(500, 800);
  h.gm = g.uniform(34, 42), h.wm = g.uniform(22, 30), h.csf = g.uniform(0, 10), h.bone = g.uniform(900, 1600);
  h.deep_gm = h.gm - g.uniform(0, 4);
  h.vent_scale = g.uniform(0.8, 1.45);
  h.noise_sd = g.uniform(3, 7);
  h.falx_calcified = g.uniform() < 0.25;
  h.sulci.seed = g.below(1ull << 62), h.texture.seed = g.below(1ull << 62), h.shape.seed = g.below(1ull << 62);
  // pose: pitch (about x), roll (about y), yaw (about z)
  const double a = g.uniform(-0.22, 0.12), b = g.uniform(-0.08, 0.08), c = g.uniform(-0.1, 0.1);
  const double ca = std::cos(a), sa = std::sin(a), cb = std::cos(b), sb = std::sin(b), cc = std::cos(c),
               sc = std::sin(c);
  const double Rx[3][3] = {{1, 0, 0}, {0, ca, -sa}, {0, sa, ca}}, Ry[3][3] = {{cb, 0, sb}, {0, 1, 0}, {-sb, 0, cb}},
               Rz[3][3] = {{cc, -sc, 0}, {sc, cc, 0}, {0, 0, 1}};
  double T[3][3];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) {
      T[i][j] = 0;
      for (int k = 0; k < 3; ++k) T[i][j] += Ry[i][k] * Rx[k][j];
    }
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) {
      h.R[i][j] = 0;
      for (int k = 0; k < 3; ++k) h.R[i][j] += Rz[i][k] * T[k][j];
    }
  h.rows = rows, h.cols = cols;
  h.fov = g.uniform(205, 250);
  h.tilt = g.uniform() < 0.3 ? g.uniform(-0.35, 0.0) : 0.0;  // some series with a gantry tilt
  h.centre = {g.uniform(-8, 8), g.uniform(-10, 10), 0};
  // the series covers the head from below the skull base to the vertex
  const int S = o.slices_per_series;
  const double lo = -0.98 * h.az, hi = h.az + h.skull - 4;
  h.spacing = std::round((hi - lo) / (S - 1) * 4) / 4;  // a quarter mm, as scanners reconstruct
  h.d0 = lo + g.uniform(-3, 3);
  if (force_epidural || g.uniform() < 0.42) {
    std::vector<int> types = force_epidural ? std::vector<int>{kEpidural} : draw_pattern(g);
    for (int t : types) {
      h.lesions.push_back(make_lesion(h, t, g));
      if (t != kEpidural && g.uniform() < 0.25) h.lesions.push_back(make_lesion(h, t, g));  // a second of the kind
    }
  }
  return h;
}

}  // namespace

struct RealisticModel::Impl {
  std::vector<Head> heads;
};

RealisticModel::RealisticModel(const PhantomOptions& o, const std::vector<std::array<int, 2>>& sizes)
{
  auto impl = std::make_shared<Impl>();
  // A few patients with an epidural bleed whatever the draw (RSNA: 0.4% of
  // slices, small lesions here): three from 30 patients on, so that a
  // stratified validation split of a small set (ich-split: 16%) gets one.
  const int n = int(sizes.size());
  std::set<int> epi;
  const int forced = n >= 30 ? 3 : n >= 10 ? 2 : 0;
  Generator g(o.seed * 977 + 5);
  while (int(epi.size()) < forced) epi.insert(int(g.below(uint64_t(n))));
  for (int p = 0; p < n; ++p)
    impl->heads.push_back(make_head(o, p, sizes[size_t(p)][0], sizes[size_t(p)][1], epi.count(p) > 0));
  impl_ = impl;
}

SliceGeometryInfo RealisticModel::geometry(int patient, int k) const {
  const Head& h = impl_->heads.at(size_t(patient));
  const double px = h.fov / std::max(h.rows, h.cols);
  const V3 n{0, -std::sin(h.tilt), std::cos(h.tilt)};
  const V3 origin = V3{-0.5 * h.cols * px, -0.5 * h.rows * px, 0} + (h.d0 + k * h.spacing) * n;
  SliceGeometryInfo s;
  s.position = {origin.x, origin.y, origin.z};
  s.orientation = {1, 0, 0, 0, std::cos(h.tilt), std::sin(h.tilt)};
  s.pixel_spacing = px;
  return s;
}

void RealisticModel::render(int patient, int k, uint64_t noise_seed, std::vector<float>* hu,
                            std::array<int64_t, 5>* blood_pixels, std::vector<int8_t>* blood) const {
  const Head& h = impl_->heads.at(size_t(patient));
  const int rows = h.rows, cols = h.cols;
  const double px = h.fov / std::max(rows, cols);
  if (blood_pixels) blood_pixels->fill(0);
  if (blood) blood->assign(size_t(rows) * size_t(cols), -1);
  if (hu) hu->assign(size_t(rows) * size_t(cols), -1000.f);
  std::vector<double> white;
  Generator ng(noise_seed);
  const std::vector<Streak> lines = hu ? streaks_of(h, k, noise_seed) : std::vector<Streak>();
  // noise: white, then mixed with its 3x3 box (slightly correlated, as
  // reconstruction kernels make it), scaled to unit variance, then to the
  // patient's SD
  const double wa = 0.6 + 0.4 / 9, wb = 0.4 / 9, unit = std::sqrt(wa * wa + 8 * wb * wb);
  if (hu) {
    white.resize(size_t(rows + 2) * size_t(cols + 2));
    for (double& w : white) w = ng.normal();
  }
  const bool labels_only = hu == nullptr;
  for (int y = 0; y < rows; ++y)
    for (int x = 0; x < cols; ++x) {
      const V3 q = head_point(h, k, x + 0.5, y + 0.5);
      if (labels_only) {  // only what the blood needs: cheap
        if (h.lesions.empty() || rho(q, h.ax, h.ay, h.az) > 1.02) continue;
      }
      const Sample s = tissue_at(h, q, !labels_only);
      int best = -1;
      double bf = 0.5;
      for (int t = 0; t < 5; ++t)
        if (s.blood[size_t(t)] >= bf) bf = s.blood[size_t(t)], best = t;
      if (best >= 0) {
        if (blood_pixels) ++(*blood_pixels)[size_t(best)];
        if (blood) (*blood)[size_t(y) * cols + x] = int8_t(best);
      }
      if (hu) {
        double v = s.hu;
        if (v > -999) {
          const size_t c = size_t(y + 1) * size_t(cols + 2) + size_t(x + 1);
          double box = 0;
          for (int dy = -1; dy <= 1; ++dy)
            for (int dx = -1; dx <= 1; ++dx) box += white[c + size_t(dy * (cols + 2) + dx)];
          const double corr = (0.6 * white[c] + 0.4 * box / 9) / unit;
          v += h.noise_sd * corr + streak_hu(lines, px, x + 0.5, y + 0.5);
        } else {
          v += 2.0 * white[size_t(y + 1) * size_t(cols + 2) + size_t(x + 1)];
        }
        (*hu)[size_t(y) * cols + x] = float(std::lround(std::max(-1024.0, v)));
      }
    }
}

double RealisticModel::min_blood_pixels(int patient) const {
  const Head& h = impl_->heads.at(size_t(patient));
  const double px = h.fov / std::max(h.rows, h.cols);
  return kMinBloodMm2 / (px * px);
}

}  // namespace ich
