#include "report/tensorboard.h"

#include <unistd.h>

#include <array>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "engine/error.h"

namespace ich {

namespace {

std::array<uint32_t, 256> crc_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;  // the Castagnoli polynomial, reflected
    t[i] = c;
  }
  return t;
}

uint32_t masked(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

// Protocol buffer wire format: the few pieces an Event needs.
void varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(char(uint8_t(v) | 0x80));
    v >>= 7;
  }
  out.push_back(char(uint8_t(v)));
}
void key(std::string& out, int field, int wire) { varint(out, uint64_t(field) << 3 | uint64_t(wire)); }
template <class T> void fixed(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));  // little-endian (x86-64)
  out.append(b, sizeof(T));
}
void bytes_field(std::string& out, int field, const std::string& b) {
  key(out, field, 2);
  varint(out, b.size());
  out += b;
}
std::string event_head(double wall_time, int64_t step) {
  std::string e;
  key(e, 1, 1);
  fixed(e, wall_time);
  if (step != 0) {
    key(e, 2, 0);
    varint(e, uint64_t(step));
  }
  return e;
}

}  // namespace

uint32_t crc32c(const void* data, size_t n, uint32_t crc) {
  static const std::array<uint32_t, 256> t = crc_table();
  const auto* p = static_cast<const uint8_t*>(data);
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = t[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

EventFileWriter::EventFileWriter(const std::string& dir) {
  std::filesystem::create_directories(dir);
  const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  char host[128] = {};
  ::gethostname(host, sizeof host - 1);
  // TensorBoard reads a folder's files in name order: the seconds keep a
  // resumed run's file after the first one's.
  path_ = (std::filesystem::path(dir) / ("events.out.tfevents." + std::to_string(int64_t(now)) + "." + host + "." +
                                         std::to_string(::getpid()) + ".ich"))
              .string();
  f_ = std::fopen(path_.c_str(), "wb");
  ICH_CHECK(f_ != nullptr, "cannot create the TensorBoard event file ", path_, ": ", std::strerror(errno));
  std::string e = event_head(now, 0);
  bytes_field(e, 3, "brain.Event:2");
  record(e);
}

EventFileWriter::~EventFileWriter() {
  if (f_) std::fclose(f_);
}

void EventFileWriter::record(const std::string& event) {
  const uint64_t len = event.size();
  const uint32_t len_crc = masked(crc32c(&len, 8)), data_crc = masked(crc32c(event.data(), event.size()));
  const bool ok = std::fwrite(&len, 8, 1, f_) == 1 && std::fwrite(&len_crc, 4, 1, f_) == 1 &&
                  std::fwrite(event.data(), 1, event.size(), f_) == event.size() &&
                  std::fwrite(&data_crc, 4, 1, f_) == 1;
  ICH_CHECK(ok, "writing the TensorBoard event file ", path_, " failed (disk full?)");
}

void EventFileWriter::scalar(const std::string& tag, double value, int64_t step, double wall_time) {
  std::string v;
  bytes_field(v, 1, tag);
  key(v, 2, 5);
  fixed(v, float(value));
  std::string summary;
  bytes_field(summary, 1, v);
  std::string e = event_head(wall_time, step);
  bytes_field(e, 5, summary);
  record(e);
}

void EventFileWriter::session_start(int64_t step, double wall_time) {
  std::string log;
  key(log, 1, 0);
  varint(log, 1);  // SessionLog.START
  std::string e = event_head(wall_time, step);
  bytes_field(e, 7, log);  // Event.session_log (6 is the deprecated log_message)
  record(e);
}

void EventFileWriter::flush() {
  ICH_CHECK(std::fflush(f_) == 0 && ::fsync(::fileno(f_)) == 0, "writing the TensorBoard event file ", path_,
            " failed (disk full?)");
}

std::string tensorboard_tag(const std::string& c) {
  if (c == "train_loss") return "train/loss";
  if (c == "lr" || c == "images_per_second") return c;
  if (c.rfind("valid_", 0) == 0) return "valid/" + c.substr(6);
  return "";
}

void write_log_row(EventFileWriter& w, const std::vector<std::string>& header, const std::vector<std::string>& row) {
  int64_t step = 0;
  double wall = 0;
  for (size_t i = 0; i < header.size() && i < row.size(); ++i) {
    if (header[i] == "step" && !row[i].empty()) step = std::stoll(row[i]);
    if (header[i] == "wall_time" && !row[i].empty()) wall = std::stod(row[i]);
  }
  for (size_t i = 0; i < header.size() && i < row.size(); ++i) {
    const std::string tag = tensorboard_tag(header[i]);
    if (tag.empty() || row[i].empty()) continue;
    w.scalar(tag, std::stod(row[i]), step, wall);
  }
}

}  // namespace ich
