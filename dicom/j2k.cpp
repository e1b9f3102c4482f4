#include "dicom/j2k.h"

#include <openjpeg.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "engine/error.h"

namespace ich {

bool is_j2k_syntax(const std::string& uid) {
  return uid == "1.2.840.10008.1.2.4.90" || uid == "1.2.840.10008.1.2.4.91";
}

namespace {

// OpenJPEG reads through callbacks; these read from memory.
struct Source {
  const uint8_t* data;
  size_t size, pos = 0;
};
OPJ_SIZE_T read_cb(void* buf, OPJ_SIZE_T n, void* user) {
  Source* s = static_cast<Source*>(user);
  if (s->pos >= s->size) return OPJ_SIZE_T(-1);  // end of stream
  const size_t k = std::min<size_t>(n, s->size - s->pos);
  std::memcpy(buf, s->data + s->pos, k);
  s->pos += k;
  return k;
}
OPJ_OFF_T skip_cb(OPJ_OFF_T n, void* user) {
  Source* s = static_cast<Source*>(user);
  const OPJ_OFF_T room = n >= 0 ? OPJ_OFF_T(s->size - s->pos) : -OPJ_OFF_T(s->pos);
  const OPJ_OFF_T k = n >= 0 ? std::min(n, room) : std::max(n, room);
  s->pos = size_t(OPJ_OFF_T(s->pos) + k);
  return k;
}
OPJ_BOOL seek_cb(OPJ_OFF_T to, void* user) {
  Source* s = static_cast<Source*>(user);
  if (to < 0 || size_t(to) > s->size) return OPJ_FALSE;
  s->pos = size_t(to);
  return OPJ_TRUE;
}
void error_cb(const char* msg, void* user) {
  std::string& e = *static_cast<std::string*>(user);
  if (e.empty()) {
    e = msg;
    while (!e.empty() && (e.back() == '\n' || e.back() == ' ')) e.pop_back();
  }
}
void quiet_cb(const char*, void*) {}

bool is_jp2(const uint8_t* d, size_t n) {
  static const uint8_t sig[12] = {0, 0, 0, 0x0C, 'j', 'P', ' ', ' ', 0x0D, 0x0A, 0x87, 0x0A};
  return n >= 12 && std::memcmp(d, sig, 12) == 0;
}
bool starts_codestream(const std::vector<uint8_t>& f) {  // SOC then SIZ, or a JP2 signature box
  return (f.size() >= 4 && f[0] == 0xFF && f[1] == 0x4F && f[2] == 0xFF && f[3] == 0x51) || is_jp2(f.data(), f.size());
}

}  // namespace

J2kImage decode_j2k(const uint8_t* data, size_t size, int width, int height) {
  ICH_CHECK(size >= 12, "JPEG 2000 frame of ", size, " bytes");
  std::string err;
  const bool jp2 = is_jp2(data, size);
  std::unique_ptr<opj_codec_t, void (*)(opj_codec_t*)> codec(opj_create_decompress(jp2 ? OPJ_CODEC_JP2 : OPJ_CODEC_J2K),
                                                             opj_destroy_codec);
  ICH_CHECK(codec != nullptr, "OpenJPEG: cannot create a decoder");
  opj_set_error_handler(codec.get(), error_cb, &err);
  opj_set_warning_handler(codec.get(), quiet_cb, nullptr);
  opj_set_info_handler(codec.get(), quiet_cb, nullptr);
  opj_dparameters_t params;
  opj_set_default_decoder_parameters(&params);
  ICH_CHECK(opj_setup_decoder(codec.get(), &params), "OpenJPEG: decoder set-up failed: ", err);
  Source src{data, size};
  std::unique_ptr<opj_stream_t, void (*)(opj_stream_t*)> stream(opj_stream_create(1 << 16, OPJ_TRUE),
                                                                opj_stream_destroy);
  opj_stream_set_user_data(stream.get(), &src, nullptr);
  opj_stream_set_user_data_length(stream.get(), size);
  opj_stream_set_read_function(stream.get(), read_cb);
  opj_stream_set_skip_function(stream.get(), skip_cb);
  opj_stream_set_seek_function(stream.get(), seek_cb);
  opj_image_t* raw_img = nullptr;
  const bool header = opj_read_header(stream.get(), codec.get(), &raw_img);
  std::unique_ptr<opj_image_t, void (*)(opj_image_t*)> img(raw_img, opj_image_destroy);
  ICH_CHECK(header && img, "JPEG 2000 header unreadable: ", err.empty() ? "not a J2K codestream" : err);
  ICH_CHECK(img->numcomps >= 1 && img->comps, "JPEG 2000 codestream without components");
  ICH_CHECK(int64_t(img->comps[0].w) == width && int64_t(img->comps[0].h) == height, "JPEG 2000 codestream of ",
            img->comps[0].w, "x", img->comps[0].h, " pixels, the DICOM header says ", width, "x", height);
  ICH_CHECK(opj_decode(codec.get(), stream.get(), img.get()) && opj_end_decompress(codec.get(), stream.get()),
            "JPEG 2000 frame could not be decoded (truncated or corrupt?): ", err.empty() ? "unknown reason" : err);
  ICH_CHECK(img->numcomps >= 1 && img->comps[0].data, "JPEG 2000 frame without image data");
  const opj_image_comp_t& c = img->comps[0];
  J2kImage out;
  out.width = int(c.w);
  out.height = int(c.h);
  out.components = int(img->numcomps);
  out.precision = int(c.prec);
  out.is_signed = c.sgnd != 0;
  out.values.assign(c.data, c.data + size_t(c.w) * c.h);
  return out;
}

std::vector<std::vector<uint8_t>> split_j2k_frames(const std::vector<uint32_t>& offsets,
                                                   const std::vector<std::vector<uint8_t>>& fragments, int frames) {
  ICH_CHECK(frames >= 1 && !fragments.empty(), "encapsulated pixel data holds no fragments for ", frames, " frames");
  std::vector<std::vector<uint8_t>> out;
  auto append = [&](size_t k) { out.back().insert(out.back().end(), fragments[k].begin(), fragments[k].end()); };
  if (frames == 1) {  // every fragment belongs to the one frame
    out.emplace_back();
    for (size_t k = 0; k < fragments.size(); ++k) append(k);
    return out;
  }
  if (offsets.size() == size_t(frames)) {
    // Offsets count from the first fragment's item tag: 8 bytes of item
    // header before each fragment.
    uint64_t at = 0;
    size_t f = 0;
    for (size_t k = 0; k < fragments.size(); ++k) {
      while (f < offsets.size() && offsets[f] <= at) {
        ICH_CHECK(offsets[f] == at, "Basic Offset Table entry ", f, " (", offsets[f], ") is not at a fragment");
        out.emplace_back();
        ++f;
      }
      ICH_CHECK(!out.empty(), "Basic Offset Table does not start at the first fragment");
      append(k);
      at += 8 + fragments[k].size();
    }
    ICH_CHECK(out.size() == size_t(frames), "Basic Offset Table points past the fragments");
    return out;
  }
  if (fragments.size() == size_t(frames)) return fragments;
  for (size_t k = 0; k < fragments.size(); ++k) {
    if (out.empty() || starts_codestream(fragments[k])) out.emplace_back();
    append(k);
  }
  ICH_CHECK(out.size() == size_t(frames), "JPEG 2000 pixel data: ", fragments.size(), " fragments make ", out.size(),
            " codestreams for NumberOfFrames ", frames);
  return out;
}

}  // namespace ich
