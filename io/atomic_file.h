// atomic_file.h: write a file so that it appears whole or not at all.
//
// Bytes go to "<path>.tmp.<pid>"; commit() flushes, fsyncs and renames it
// over <path> (then fsyncs the directory). If the writer is destroyed
// without commit() (an exception, a full disk), the temporary file is
// removed and <path> is untouched. Every failure names the path and errno.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace ich {

class AtomicFile {
 public:
  // durable: fsync the data and the directory on commit (checkpoints, weights,
  // tables). Bulk outputs (one image per slice) pass false: they are still
  // never visible half-written, and a power cut loses at most the last ones.
  explicit AtomicFile(std::string path, bool durable = true);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  void write(const void* data, size_t n);
  void commit();

 private:
  std::string path_, tmp_;
  int fd_ = -1;
  bool durable_ = true;
};

// Convenience: the whole content at once.
void write_file_atomic(const std::string& path, const std::string& content, bool durable = true);

// Makes <path> a second name of the finished file <existing> (a hard link),
// atomically and durably: "<path>.tmp.<pid>" is linked, renamed over <path>,
// the directory fsynced. Safe because every writer here replaces a file by
// rename, never in place: rewriting one name later leaves the other's bytes
// as they were. Returns false, changing nothing, where the file system has
// no hard links or the two names are on different ones (the caller then
// writes a copy); throws, naming both, on any other failure.
bool link_atomic(const std::string& existing, const std::string& path);

// The name AtomicFile and link_atomic write under: "<path>.tmp.<pid>".
// commit_written_file: for a file another library wrote by path under a
// temporary name tmp (DCMTK's saveFile), what AtomicFile::commit does: fsync,
// rename to path, the folder fsynced; throws, naming the path, when tmp is
// missing or cannot be flushed or renamed (it is removed then).
std::string temporary_name(const std::string& path);
void commit_written_file(const std::string& tmp, const std::string& path);

// A process killed (kill -9, a power cut) between creating "<name>.tmp.<pid>"
// and renaming it leaves that file behind; <name> itself is untouched. Removes
// from the folder dir (not below it) every such leftover whose <name> is one
// of `names`, where an entry beginning with a dot is an ending (".ckpt":
// any checkpoint) and any other the whole name ("log.csv"): what a run that
// writes those names calls at its start. A leftover whose process is still
// running (another run writing into the same folder) is left alone. Returns
// how many it removed.
int remove_atomic_leftovers(const std::string& dir, const std::vector<std::string>& names);

}  // namespace ich
