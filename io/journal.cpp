#include "io/journal.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "engine/error.h"
#include "io/crc32.h"
#include "io/csv.h"

namespace ich {

namespace {

std::string escape(const std::string& s) {
  std::string out;
  for (const char c : s) {
    if (c == '%') out += "%25";
    else if (c == '\t') out += "%09";
    else if (c == '\r') out += "%0D";
    else if (c == '\n') out += "%0A";
    else out += c;
  }
  return out;
}

bool unescape(const std::string& s, std::string& out) {
  out.clear();
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) return false;
    const std::string h = s.substr(i + 1, 2);
    if (h == "25") out += '%';
    else if (h == "09") out += '\t';
    else if (h == "0D") out += '\r';
    else if (h == "0A") out += '\n';
    else return false;
    i += 2;
  }
  return true;
}

std::string hex8(uint32_t v) {
  char b[9];
  std::snprintf(b, sizeof b, "%08x", v);
  return b;
}

void write_all(int fd, const std::string& data, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t w = ::write(fd, data.data() + done, data.size() - done);
    if (w < 0 && errno == EINTR) continue;
    ICH_CHECK(w > 0, "cannot write ", path, ": ", std::strerror(w < 0 ? errno : ENOSPC));
    done += size_t(w);
  }
}

}  // namespace

void for_each_pending_chunk(int64_t n, int64_t chunk, const std::function<bool(int64_t)>& done,
                            const std::function<void(int64_t, const std::vector<int64_t>&)>& f) {
  ICH_CHECK(chunk >= 1, "chunk of ", chunk, " items");
  for (int64_t first = 0; first < n; first += chunk) {
    std::vector<int64_t> pending;
    for (int64_t i = first; i < std::min(n, first + chunk); ++i)
      if (!done(i)) pending.push_back(i);
    if (!pending.empty()) f(first, pending);
  }
}

std::string journal_line(const JournalRecord& r) {
  std::string body;
  for (size_t i = 0; i < r.size(); ++i) body += (i ? "\t" : "") + escape(r[i]);
  return hex8(crc32_of(body.data(), body.size())) + "\t" + body + "\n";
}

bool parse_journal_line(const std::string& line, JournalRecord& out) {
  out.clear();
  if (line.size() < 9 || line[8] != '\t') return false;
  const std::string body = line.substr(9);
  if (hex8(crc32_of(body.data(), body.size())) != line.substr(0, 8)) return false;
  size_t start = 0;
  while (true) {
    const size_t tab = body.find('\t', start);
    std::string field;
    if (!unescape(body.substr(start, tab == std::string::npos ? std::string::npos : tab - start), field)) return false;
    out.push_back(field);
    if (tab == std::string::npos) break;
    start = tab + 1;
  }
  return true;
}

namespace {

// What differs between a journal's settings and this run's, field by field
// ("input=/a" against "input=/b"): what the user must change.
std::string settings_diff(const JournalRecord& had, const JournalRecord& now) {
  std::string d;
  for (size_t i = 0; i < std::max(had.size(), now.size()); ++i) {
    const std::string a = i < had.size() ? had[i] : "(none)", b = i < now.size() ? now[i] : "(none)";
    if (a != b) d += (d.empty() ? "" : "; ") + a.substr(0, 200) + " there, " + b.substr(0, 200) + " here";
  }
  return d;
}

}  // namespace

Journal::Journal(std::string path, const JournalRecord& settings, bool resume) : path_(std::move(path)) {
  if (resume) {
    std::ifstream in(path_, std::ios::binary);
    std::string text;
    if (in.good()) {
      std::stringstream ss;
      ss << in.rdbuf();
      text = ss.str();
    }
    size_t pos = 0, good_end = 0;
    bool first = true;
    while (pos < text.size()) {
      const size_t nl = text.find('\n', pos);
      if (nl == std::string::npos) break;  // torn last line
      JournalRecord r;
      if (!parse_journal_line(text.substr(pos, nl - pos), r)) break;
      if (first) {
        ICH_CHECK(r == settings, "--resume: ", path_, " belongs to another run (", settings_diff(r, settings),
                  "): run without --resume to replace it, or use another output");
        first = false;
      } else {
        records_.push_back(std::move(r));
      }
      pos = good_end = nl + 1;
    }
    if (!first) {
      fd_ = ::open(path_.c_str(), O_WRONLY | O_CLOEXEC);
      ICH_CHECK(fd_ >= 0, "cannot open ", path_, ": ", std::strerror(errno));
      ICH_CHECK(::ftruncate(fd_, off_t(good_end)) == 0 && ::lseek(fd_, 0, SEEK_END) >= 0, "cannot cut ", path_,
                " back to its last whole record: ", std::strerror(errno));
      return;
    }
    // No journal, or one cut before its settings line was whole (a kill
    // while the run started): nothing was recorded, so the same command
    // line serves a first run and its retries.
    std::fprintf(stderr, "note: --resume: %s %s: nothing to resume, starting fresh\n", path_.c_str(),
                 in.good() ? "holds no whole record" : "does not exist");
    started_fresh_ = true;
  }
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ICH_CHECK(fd_ >= 0, "cannot create ", path_, ": ", std::strerror(errno));
  write_all(fd_, journal_line(settings), path_);
  ICH_CHECK(::fdatasync(fd_) == 0, "cannot sync ", path_, ": ", std::strerror(errno));
}

Journal::~Journal() {
  if (fd_ >= 0) ::close(fd_);
}

void Journal::append(const std::vector<JournalRecord>& records) {
  if (records.empty()) return;
  // The outputs these records stand for first, on the journal's file system.
  ICH_CHECK(::syncfs(fd_) == 0, "cannot sync the file system of ", path_, ": ", std::strerror(errno));
  std::string text;
  for (const JournalRecord& r : records) text += journal_line(r);
  write_all(fd_, text, path_);
  ICH_CHECK(::fdatasync(fd_) == 0, "cannot sync ", path_, ": ", std::strerror(errno));
  records_.insert(records_.end(), records.begin(), records.end());
}

}  // namespace ich
