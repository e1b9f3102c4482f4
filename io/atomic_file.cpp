#include "io/atomic_file.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "engine/error.h"

namespace ich {

namespace {

// Makes a rename into path's folder durable.
void sync_parent_dir(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

// Removes the temporary file and throws "<what>: <errno's text>".
[[noreturn]] void drop(const std::string& tmp, const std::string& what, int e) {
  ::unlink(tmp.c_str());
  throw Error(what + ": " + std::strerror(e));
}

// tmp renamed over path (tmp removed when that fails); the folder fsynced
// when durable.
void rename_into_place(const std::string& tmp, const std::string& path, bool durable) {
  if (::rename(tmp.c_str(), path.c_str()) != 0) drop(tmp, "cannot rename " + tmp + " to " + path, errno);
  if (durable) sync_parent_dir(path);
}

}  // namespace

AtomicFile::AtomicFile(std::string path, bool durable) : path_(std::move(path)), durable_(durable) {
  tmp_ = temporary_name(path_);
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ICH_CHECK(fd_ >= 0, "cannot create ", tmp_, " (for ", path_, "): ", std::strerror(errno));
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(tmp_.c_str());
  }
}

void AtomicFile::write(const void* data, size_t n) {
  ICH_CHECK(fd_ >= 0, "write to ", path_, " after commit");
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd_, p, n);
    if (w < 0 && errno == EINTR) continue;
    ICH_CHECK(w > 0, "cannot write ", path_, ": ", std::strerror(errno));
    p += w;
    n -= size_t(w);
  }
}

void AtomicFile::commit() {
  ICH_CHECK(fd_ >= 0, "commit of ", path_, " twice");
  ICH_CHECK(!durable_ || ::fsync(fd_) == 0, "cannot flush ", path_, ": ", std::strerror(errno));
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) drop(tmp_, "cannot close " + path_, errno);
  rename_into_place(tmp_, path_, durable_);
}

void write_file_atomic(const std::string& path, const std::string& content, bool durable) {
  AtomicFile f(path, durable);
  f.write(content.data(), content.size());
  f.commit();
}

std::string temporary_name(const std::string& path) { return path + ".tmp." + std::to_string(::getpid()); }

void commit_written_file(const std::string& tmp, const std::string& path) {
  const int fd = ::open(tmp.c_str(), O_RDONLY | O_CLOEXEC);
  ICH_CHECK(fd >= 0, "cannot open ", tmp, " (for ", path, "): ", std::strerror(errno));
  const bool flushed = ::fsync(fd) == 0;
  const int e = errno;
  ::close(fd);
  if (!flushed) drop(tmp, "cannot flush " + path, e);
  rename_into_place(tmp, path, true);
}

int remove_atomic_leftovers(const std::string& dir, const std::vector<std::string>& names) {
  int removed = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const std::string file = e.path().filename().string();
    const size_t t = file.rfind(".tmp.");
    if (t == std::string::npos || t + 5 == file.size() || !e.is_regular_file()) continue;
    if (file.find_first_not_of("0123456789", t + 5) != std::string::npos) continue;
    // a process of that id still running may be writing it (another run in
    // the same folder): left alone
    const long pid = std::strtol(file.c_str() + t + 5, nullptr, 10);
    if (pid > 0 && (::kill(pid_t(pid), 0) == 0 || errno == EPERM)) continue;
    const std::string name = file.substr(0, t);
    for (const std::string& x : names) {
      const bool ours = x.rfind('.', 0) == 0
                            ? name.size() > x.size() && name.compare(name.size() - x.size(), x.size(), x) == 0
                            : name == x;
      if (ours) {
        std::filesystem::remove(e.path());
        ++removed;
        break;
      }
    }
  }
  return removed;
}

bool link_atomic(const std::string& existing, const std::string& path) {
  const std::string tmp = temporary_name(path);
  ::unlink(tmp.c_str());  // a leftover of a killed run with this pid
  if (::link(existing.c_str(), tmp.c_str()) != 0) {
    const int e = errno;
    if (e == EXDEV || e == EPERM || e == ENOTSUP || e == EOPNOTSUPP || e == EMLINK || e == ENOSYS) return false;
    throw Error(detail::cat("cannot link ", existing, " as ", path, ": ", std::strerror(e)));
  }
  rename_into_place(tmp, path, true);
  return true;
}

}  // namespace ich
