// journal.h: an append-only record of finished work, so that a long run
// killed at any moment (kill -9, a power cut) resumes where it stopped.
//
// One line per record: the CRC-32 of the rest of the line (8 hex digits),
// a tab, and the record's fields, tab-separated, with '%', tab, CR and LF
// escaped as %25, %09, %0D, %0A. The first record is the run's settings: a
// resumed run must have the same ones. A line that is torn (the process died
// inside a write) or fails its CRC ends the journal there: it and anything
// after it are cut off when the run resumes.
//
// The order of work that makes a resumed run write exactly the bytes of an
// uninterrupted one: outputs of a unit of work are complete under their final
// names (written elsewhere, renamed) before append() records the unit, and
// append() makes them and the records durable (syncfs, then fdatasync)
// before returning.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace ich {

using JournalRecord = std::vector<std::string>;

class Journal {
 public:
  // resume=false: a new journal (an old one at `path` is replaced), holding
  // `settings`. resume=true: an existing journal must start with `settings`
  // (else ich::Error naming the fields that differ); its records are read
  // back. With nothing to resume (no journal, or one killed before its
  // settings line was whole) it starts a new one and says so in one line:
  // a retry loop runs the same command line the first time and after.
  Journal(std::string path, const JournalRecord& settings, bool resume);
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // Every record (after the settings), an earlier run's first, in order.
  const std::vector<JournalRecord>& records() const { return records_; }
  // Appends records in one write and makes the output folder and the
  // journal durable; throws ich::Error naming the file on failure.
  void append(const std::vector<JournalRecord>& records);
  const std::string& path() const { return path_; }
  bool started_fresh() const { return started_fresh_; }  // resume asked, nothing there

 private:
  std::string path_;
  bool started_fresh_ = false;
  int fd_ = -1;
  std::vector<JournalRecord> records_;
};

// The work of a resumable run over a sorted list of n items in fixed chunks
// [k*chunk, (k+1)*chunk): f(first, pending) for every chunk that has items
// done(i) says are not yet recorded, their indices in order. Fixed chunks
// make a resumed run append the very records an uninterrupted one does.
void for_each_pending_chunk(int64_t n, int64_t chunk, const std::function<bool(int64_t)>& done,
                            const std::function<void(int64_t first, const std::vector<int64_t>& pending)>& f);

std::string journal_line(const JournalRecord& r);  // with its CRC and "\n"
// Parses one line (without "\n"); false when torn or corrupt.
bool parse_journal_line(const std::string& line, JournalRecord& out);

}  // namespace ich
