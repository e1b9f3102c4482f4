#include "dicom/dicom_direct.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdict.h>
#include <dcmtk/dcmdata/dctag.h>
#include <dcmtk/dcmdata/dcxfer.h>
#include <dcmtk/ofstd/ofstd.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <iterator>
#include <string_view>

namespace ich {

namespace {

constexpr uint32_t tag(uint16_t g, uint16_t e) { return uint32_t(g) << 16 | e; }
constexpr uint32_t kItem = tag(0xFFFE, 0xE000), kItemEnd = tag(0xFFFE, 0xE00D), kSequenceEnd = tag(0xFFFE, 0xE0DD);
constexpr uint32_t kUndefined = 0xFFFFFFFFu;
constexpr int kMaxDepth = 8;

uint16_t le16(const uint8_t* p) { return uint16_t(p[0] | (p[1] << 8)); }
uint32_t le32(const uint8_t* p) { return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24; }

// The attributes read_dicom() reads, with the VR each must have.
struct Wanted {
  uint32_t tag;
  const char* vr;
};
constexpr Wanted kWanted[] = {
    {tag(0x0008, 0x0016), "UI"}, {tag(0x0008, 0x0018), "UI"}, {tag(0x0008, 0x0060), "CS"}, {tag(0x0010, 0x0020), "LO"},
    {tag(0x0020, 0x000D), "UI"}, {tag(0x0020, 0x000E), "UI"}, {tag(0x0020, 0x0032), "DS"},
    {tag(0x0020, 0x0037), "DS"},
    {tag(0x0028, 0x0002), "US"}, {tag(0x0028, 0x0004), "CS"}, {tag(0x0028, 0x0008), "IS"},
    {tag(0x0028, 0x0010), "US"}, {tag(0x0028, 0x0011), "US"}, {tag(0x0028, 0x0030), "DS"},
    {tag(0x0028, 0x0100), "US"}, {tag(0x0028, 0x0101), "US"}, {tag(0x0028, 0x0103), "US"},
    {tag(0x0028, 0x1050), "DS"}, {tag(0x0028, 0x1051), "DS"}, {tag(0x0028, 0x1052), "DS"},
    {tag(0x0028, 0x1053), "DS"}, {tag(0x7FE0, 0x0010), "ox"},  // OB or OW
};

// Attributes that change what the pixels mean beyond what this reader reads:
// a Modality LUT Sequence, and the functional groups of Enhanced images (an
// Enhanced CT file of one frame keeps its rescale there). Left to DCMTK.
constexpr uint32_t kDeclined[] = {tag(0x0028, 0x3000), tag(0x5200, 0x9229), tag(0x5200, 0x9230)};

const Wanted* wanted(uint32_t t) {
  for (const Wanted& w : kWanted)
    if (w.tag == t) return &w;
  return nullptr;
}

bool long_form(const char* vr) {  // VRs with a 4-byte length in explicit VR
  static constexpr const char* kLong[] = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UR", "UT", "UV"};
  for (const char* v : kLong)
    if (vr[0] == v[0] && vr[1] == v[1]) return true;
  return false;
}

bool known_vr(const char* vr) {
  static constexpr const char* kAll[] = {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD", "IS", "LO", "LT",
                                         "OB", "OD", "OF", "OL", "OV", "OW", "PN", "SH", "SL", "SQ", "SS", "ST",
                                         "SV", "TM", "UC", "UI", "UL", "UR", "US", "UT", "UV"};
  for (const char* v : kAll)
    if (vr[0] == v[0] && vr[1] == v[1]) return true;
  return false;  // UN (read with the dictionary's VR, PS3.5 6.2.2), and anything malformed: left to DCMTK
}

bool vr_fits(const char* vr, const char* want) {
  if (want[0] == 'o') return vr[0] == 'O' && (vr[1] == 'B' || vr[1] == 'W');
  return vr[0] == want[0] && vr[1] == want[1];
}

// What DCMTK's dictionary says a tag is, for implicit VR files (where a
// sequence looks like any other element).
bool dictionary_says_sequence(uint32_t t) {
  return DcmTag(DcmTagKey(uint16_t(t >> 16), uint16_t(t & 0xFFFF))).getEVR() == EVR_SQ;
}

struct Element {
  std::string_view value;
  char vr[2] = {0, 0};
};

// Walks a dataset in place. Every element, nested ones included, must lie
// inside its parent; the top-level values we want are kept.
class Walker {
 public:
  Walker(const uint8_t* data, size_t size, bool explicit_vr) : d_(data), n_(size), explicit_(explicit_vr) {}

  // Elements from pos to `end`, or (end == kUndefined) to an item delimiter.
  bool elements(size_t& pos, size_t end, int depth) {
    uint32_t last = 0;
    bool first = true;
    const size_t limit = end == kUndefined ? n_ : end;
    while (end == kUndefined || pos < end) {
      if (pos + 8 > limit) return false;
      const uint8_t* p = d_ + pos;
      const uint32_t t = tag(le16(p), le16(p + 2));
      if (t == kItemEnd && end == kUndefined) {
        if (le32(p + 4) != 0) return false;
        pos += 8;
        return true;
      }
      if ((t >> 16) == 0xFFFE || (!first && t <= last)) return false;  // stray delimiter, or out of order
      first = false;
      last = t;
      if (depth == 0 && std::find(std::begin(kDeclined), std::end(kDeclined), t) != std::end(kDeclined)) return false;
      char vr[2] = {0, 0};
      uint32_t length;
      size_t header = 8;
      if (explicit_) {
        vr[0] = char(p[4]);
        vr[1] = char(p[5]);
        if (!known_vr(vr)) return false;
        if (long_form(vr)) {
          if (pos + 12 > limit) return false;
          length = le32(p + 8);
          header = 12;
        } else {
          length = le16(p + 6);
        }
      } else {
        length = le32(p + 4);
      }
      pos += header;
      const Wanted* w = depth == 0 ? wanted(t) : nullptr;
      if (w && explicit_ && !vr_fits(vr, w->vr)) return false;
      const bool sequence = explicit_ ? (vr[0] == 'S' && vr[1] == 'Q') : (!w && dictionary_says_sequence(t));
      if (length == kUndefined) {
        if (w || (explicit_ && !sequence)) return false;  // encapsulated or odd: DCMTK's job
        if (!items(pos, kUndefined, depth + 1)) return false;
        continue;
      }
      if (length % 2 != 0 || length > limit - pos) return false;
      if (sequence) {
        size_t q = pos;
        if (!items(q, pos + length, depth + 1) || q != pos + length) return false;
      } else if (w) {
        Element& e = found_[size_t(w - kWanted)];
        e.value = std::string_view(reinterpret_cast<const char*>(d_ + pos), length);
        e.vr[0] = explicit_ ? vr[0] : w->vr[0];
        e.vr[1] = explicit_ ? vr[1] : w->vr[1];
        if (e.vr[0] == 'o') e.vr[0] = 'O', e.vr[1] = 'W';  // implicit VR pixel data: 16-bit words
        present_[size_t(w - kWanted)] = true;
      }
      pos += length;
    }
    return pos == end;
  }

  // The items of a sequence, from pos to `end` or to a sequence delimiter.
  bool items(size_t& pos, size_t end, int depth) {
    if (depth > kMaxDepth) return false;
    const size_t limit = end == kUndefined ? n_ : end;
    while (end == kUndefined || pos < end) {
      if (pos + 8 > limit) return false;
      const uint32_t t = tag(le16(d_ + pos), le16(d_ + pos + 2)), length = le32(d_ + pos + 4);
      pos += 8;
      if (t == kSequenceEnd && end == kUndefined) return length == 0;
      if (t != kItem) return false;
      if (length == kUndefined) {
        if (!elements(pos, kUndefined, depth)) return false;
      } else {
        if (length % 2 != 0 || length > limit - pos) return false;
        size_t q = pos;
        if (!elements(q, pos + length, depth)) return false;
        pos += length;
      }
    }
    return pos == end;
  }

  const Element* get(uint32_t t) const {
    const Wanted* w = wanted(t);
    return present_[size_t(w - kWanted)] ? &found_[size_t(w - kWanted)] : nullptr;
  }

 private:
  const uint8_t* d_;
  size_t n_;
  bool explicit_;
  Element found_[std::size(kWanted)];
  bool present_[std::size(kWanted)] = {};
};

// Strings as read_dicom() gets them, for values plain enough that there is
// no doubt: printable ASCII without a backslash (one value) or a leading
// space; UIDs lose their NUL padding and may hold no space at all (RSNA's
// are "ID_..." rather than digits and dots), other strings lose their
// trailing spaces.
bool plain_string(const Element* e, std::string& out) {
  out.clear();
  if (!e) return true;
  std::string_view v = e->value;
  const bool uid = e->vr[0] == 'U' && e->vr[1] == 'I';
  while (!v.empty() && v.back() == (uid ? '\0' : ' ')) v.remove_suffix(1);
  if (!v.empty() && v.front() == ' ') return false;
  for (const char c : v)
    if (c < (uid ? 0x21 : 0x20) || c > 0x7E || c == '\\') return false;
  out.assign(v);
  return true;
}

// Decimal strings: every value read_dicom() would get, through DCMTK's own
// number parser; stops at the first value that does not parse, as it does.
bool plain_decimals(const Element* e, std::vector<double>& out) {
  out.clear();
  if (!e) return true;
  for (const char c : e->value)
    if (!((c >= '0' && c <= '9') || c == '.' || c == '+' || c == '-' || c == 'e' || c == 'E' || c == ' ' ||
          c == '\\'))
      return false;
  std::string_view rest = e->value;
  while (true) {
    const size_t cut = rest.find('\\');
    std::string_view v = rest.substr(0, cut);
    while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
    while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
    OFBool ok = OFFalse;
    const double x = OFStandard::atof(std::string(v).c_str(), &ok);
    if (v.empty() || !ok) break;
    out.push_back(x);
    if (cut == std::string_view::npos) break;
    rest.remove_prefix(cut + 1);
  }
  return true;
}

bool plain_u16(const Element* e, int& out) {
  if (!e || e->value.size() != 2) return false;
  out = le16(reinterpret_cast<const uint8_t*>(e->value.data()));
  return true;
}

bool read_whole(const std::string& path, std::vector<uint8_t>& file) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct stat st;
  bool ok = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= 132 && st.st_size <= (1 << 30);
  if (ok) {
    const size_t n = size_t(st.st_size);
    if (file.size() < n) file.resize(n);
    size_t got = 0;
    while (got < n) {
      const ssize_t r = ::read(fd, file.data() + got, n - got);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      got += size_t(r);
    }
    ok = got == n;
    file.resize(n);  // keeps the capacity for the next file
  }
  ::close(fd);
  return ok;
}

}  // namespace

bool read_dicom_direct(const std::string& path, std::vector<uint8_t>& file, DicomSlice& s, const uint8_t*& pixels) {
  if (!read_whole(path, file) || std::memcmp(file.data() + 128, "DICM", 4) != 0) return false;
  const uint8_t* d = file.data();
  const size_t n = file.size();

  // The meta group: explicit VR little endian whatever the dataset's syntax.
  size_t pos = 132, group_end = 0;
  bool have_group_length = false;
  std::string_view syntax;
  uint32_t last = 0;
  while (pos + 8 <= n && le16(d + pos) == 0x0002) {
    const uint32_t t = tag(0x0002, le16(d + pos + 2));
    const char vr[2] = {char(d[pos + 4]), char(d[pos + 5])};
    if (!known_vr(vr) || (last && t <= last)) return false;
    last = t;
    size_t header = 8;
    uint32_t length = le16(d + pos + 6);
    if (long_form(vr)) {
      if (pos + 12 > n) return false;
      length = le32(d + pos + 8);
      header = 12;
    }
    if (length == kUndefined || length > n - pos - header) return false;
    const uint8_t* v = d + pos + header;
    pos += header + length;
    if (t == tag(0x0002, 0x0000)) {
      if (length != 4 || vr[0] != 'U' || vr[1] != 'L') return false;
      have_group_length = true;
      group_end = pos + le32(v);
    } else if (t == tag(0x0002, 0x0010)) {
      syntax = std::string_view(reinterpret_cast<const char*>(v), length);
      while (!syntax.empty() && (syntax.back() == '\0' || syntax.back() == ' ')) syntax.remove_suffix(1);
    }
  }
  if (have_group_length && group_end != pos) return false;
  E_TransferSyntax xfer;
  if (syntax == "1.2.840.10008.1.2.1") xfer = EXS_LittleEndianExplicit;
  else if (syntax == "1.2.840.10008.1.2") xfer = EXS_LittleEndianImplicit;
  else return false;

  Walker walk(d, n, xfer == EXS_LittleEndianExplicit);
  if (!walk.elements(pos, n, 0)) return false;

  s = DicomSlice();
  s.path = path;
  s.transfer_syntax = DcmXfer(xfer).getXferName();
  s.transfer_syntax_uid = DcmXfer(xfer).getXferID();
  std::vector<double> pos3, ori, slope, icpt, spacing;
  if (!plain_string(walk.get(tag(0x0008, 0x0016)), s.sop_class) ||
      !plain_string(walk.get(tag(0x0008, 0x0018)), s.sop_uid) ||
      !plain_string(walk.get(tag(0x0010, 0x0020)), s.patient_id) ||
      !plain_string(walk.get(tag(0x0020, 0x000D)), s.study_uid) ||
      !plain_string(walk.get(tag(0x0020, 0x000E)), s.series_uid) ||
      !plain_string(walk.get(tag(0x0008, 0x0060)), s.modality) ||
      !plain_string(walk.get(tag(0x0028, 0x0004)), s.photometric) ||
      !plain_decimals(walk.get(tag(0x0020, 0x0032)), pos3) ||
      !plain_decimals(walk.get(tag(0x0020, 0x0037)), ori) ||
      !plain_decimals(walk.get(tag(0x0028, 0x1053)), slope) ||
      !plain_decimals(walk.get(tag(0x0028, 0x1052)), icpt) ||
      !plain_decimals(walk.get(tag(0x0028, 0x1050)), s.window_centers) ||
      !plain_decimals(walk.get(tag(0x0028, 0x1051)), s.window_widths) ||
      !plain_decimals(walk.get(tag(0x0028, 0x0030)), spacing) ||
      !plain_u16(walk.get(tag(0x0028, 0x0010)), s.rows) || !plain_u16(walk.get(tag(0x0028, 0x0011)), s.cols) ||
      !plain_u16(walk.get(tag(0x0028, 0x0100)), s.bits_allocated) ||
      !plain_u16(walk.get(tag(0x0028, 0x0101)), s.bits_stored) ||
      !plain_u16(walk.get(tag(0x0028, 0x0103)), s.pixel_representation))
    return false;
  if (pos3.size() >= 3) {
    s.z = pos3[2];
    s.has_z = true;
    std::copy(pos3.begin(), pos3.begin() + 3, s.position);
  }
  if (ori.size() >= 6) {
    s.has_orientation = true;
    std::copy(ori.begin(), ori.begin() + 6, s.orientation);
  }
  if (!slope.empty()) s.slope = slope[0];
  if (!icpt.empty()) s.intercept = icpt[0];
  if (spacing.size() >= 2) {
    s.spacing_row = spacing[0];
    s.spacing_col = spacing[1];
  }
  // read_dicom()'s checks: where one fails, it gives the reason.
  if (s.rows <= 0 || s.cols <= 0 || (s.bits_allocated != 8 && s.bits_allocated != 16) || s.bits_stored < 1 ||
      s.bits_stored > s.bits_allocated || (s.photometric != "MONOCHROME1" && s.photometric != "MONOCHROME2") ||
      (s.pixel_representation != 0 && s.pixel_representation != 1))
    return false;
  if (const Element* e = walk.get(tag(0x0028, 0x0002)); e) {
    int spp;
    if (!plain_u16(e, spp) || spp != 1) return false;
  }
  if (const Element* e = walk.get(tag(0x0028, 0x0008)); e) {
    std::string_view v = e->value;
    while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
    if (v != "1") return false;
  }
  // Pixel data: 16-bit values as OW; 8-bit only in explicit VR, as OB.
  const Element* px = walk.get(tag(0x7FE0, 0x0010));
  if (!px) return false;
  const size_t need = size_t(s.rows) * size_t(s.cols) * size_t(s.bits_allocated / 8);
  if (s.bits_allocated == 8 && !(xfer == EXS_LittleEndianExplicit && px->vr[0] == 'O' && px->vr[1] == 'B'))
    return false;
  if (px->value.size() < need) return false;
  pixels = reinterpret_cast<const uint8_t*>(px->value.data());
  return true;
}

}  // namespace ich
