// tensorboard.h: ich-train's scalars as TensorBoard event files, so that
// `tensorboard --logdir RUN` shows a run as it shows a PyTorch one.
//
// An event file (TensorFlow's "events.out.tfevents.*") is a sequence of
// TFRecords: u64 length, u32 masked CRC-32C of the length, the bytes, u32
// masked CRC-32C of the bytes (masked: ((crc >> 15) | (crc << 17)) +
// 0xa282ead8), little-endian. Each record is an Event protocol buffer
// (tensorflow/core/util/event.proto): wall_time (field 1, double), step
// (2, int64), file_version (3, "brain.Event:2", the first record),
// summary (5: Summary { repeated Value value = 1 { tag = 1, simple_value =
// 2 (float) } }), session_log (7: SessionLog { status = 1, START = 1 }).
// We encode those few fields ourselves (no protobuf library).
//
// The events mirror RUN/log.csv exactly: every start of ich-train (fresh or
// --resume) opens a new event file that begins with a SessionLog START at
// step 0, which makes TensorBoard drop what earlier files said (including
// a killed run's epochs past the checkpoint), and then repeats the rows of
// log.csv that the run keeps; each finished epoch appends its row. The
// values are log.csv's text read back, so TensorBoard shows exactly its
// numbers (as float32, TensorBoard's scalar type).
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace ich {

// CRC-32C (Castagnoli), as TFRecords use.
uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);

class EventFileWriter {
 public:
  // Creates dir and dir/events.out.tfevents.<seconds>.<host>.<pid>.ich with
  // its file_version record.
  explicit EventFileWriter(const std::string& dir);
  ~EventFileWriter();
  EventFileWriter(const EventFileWriter&) = delete;
  EventFileWriter& operator=(const EventFileWriter&) = delete;
  void scalar(const std::string& tag, double value, int64_t step, double wall_time);
  // TensorBoard forgets every earlier event at steps >= step.
  void session_start(int64_t step, double wall_time);
  void flush();  // to the disk (fsync): a finished epoch's scalars survive a crash
  const std::string& path() const { return path_; }

 private:
  void record(const std::string& event);
  std::string path_;
  FILE* f_ = nullptr;
};

// ich-train's log.csv columns as TensorBoard tags: train_loss -> train/loss,
// valid_loss -> valid/loss, valid_weighted_log_loss ->
// valid/weighted_log_loss, valid_auc_any -> valid/auc_any,
// valid_auc_<subtype> -> valid/auc_<subtype>, valid_auc_mean ->
// valid/auc_mean, lr, images_per_second; "" for the others (epoch, step,
// seconds, wall_time).
std::string tensorboard_tag(const std::string& column);

// One log.csv row's scalars, at the row's step and wall time (columns
// "step" and "wall_time"); empty fields are left out.
void write_log_row(EventFileWriter& w, const std::vector<std::string>& header, const std::vector<std::string>& row);

}  // namespace ich
