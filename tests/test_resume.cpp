// --resume for retry loops (one command line for a first run and every
// retry): the resume journal of ich-window and ich-predict (io/journal.h)
// and the checkpoint ich-train and ich-train-seq continue from
// (train/checkpoint.h). Killed runs end to end: tests/kill_window.sh,
// tests/kill_resume.sh.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <vector>

#include "io/atomic_file.h"
#include "io/journal.h"
#include "train/checkpoint.h"

namespace ich {
namespace {

namespace fs = std::filesystem;

struct Resume : ::testing::Test {
  std::string dir = ::testing::TempDir() + "/resume_" + std::to_string(::getpid()) + "_" +
                    ::testing::UnitTest::GetInstance()->current_test_info()->name();
  void SetUp() override {
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  void TearDown() override { fs::remove_all(dir); }
  std::string error_of(const std::function<void()>& f) {
    try {
      f();
    } catch (const std::exception& e) {
      return e.what();
    }
    return "";
  }
};

const JournalRecord kSettings{"ich-window 2", "input=/data/a", "size=96"};

TEST_F(Resume, AJournalThatIsNotThereStartsFreshAndIsReadBackNextTime) {
  const std::string path = dir + "/run.journal";
  {
    Journal j(path, kSettings, /*resume=*/true);
    EXPECT_TRUE(j.started_fresh());
    EXPECT_TRUE(j.records().empty());
    j.append({{"one", "a"}, {"two", "b"}});
  }
  Journal again(path, kSettings, true);
  EXPECT_FALSE(again.started_fresh());
  ASSERT_EQ(again.records().size(), 2u);
  EXPECT_EQ(again.records()[1][0], "two");
}

TEST_F(Resume, AJournalKilledInsideItsSettingsLineStartsFresh) {
  const std::string path = dir + "/run.journal";
  const std::string line = journal_line(kSettings);
  for (size_t cut : {size_t(0), size_t(5), line.size() - 1}) {  // empty, torn, all but the newline
    std::ofstream(path, std::ios::binary | std::ios::trunc) << line.substr(0, cut);
    Journal j(path, kSettings, true);
    EXPECT_TRUE(j.started_fresh()) << cut;
    EXPECT_TRUE(j.records().empty());
  }
}

TEST_F(Resume, AnotherRunsJournalIsRefusedNamingWhatDiffers) {
  const std::string path = dir + "/run.journal";
  { Journal j(path, kSettings, false); }
  const std::string err = error_of([&] { Journal j(path, {"ich-window 2", "input=/data/b", "size=96"}, true); });
  EXPECT_NE(err.find("belongs to another run (input=/data/a there, input=/data/b here)"), std::string::npos) << err;
  EXPECT_EQ(err.find("size="), std::string::npos) << "names only what differs: " << err;
}

TEST_F(Resume, TheCheckpointToContinueFrom) {
  const std::string run = dir + "/run", last = run + "/last.ckpt";
  EXPECT_EQ(resume_point(last, run), "");  // no folder yet: nothing to resume
  fs::create_directories(run);
  std::ofstream(run + "/log.csv") << "epoch\n";  // not a checkpoint
  EXPECT_EQ(resume_point(last, run), "");
  for (const char* n : {"epoch2.ckpt", "epoch10.ckpt", "epoch9.ckpt"}) std::ofstream(run + "/" + n) << "x";
  EXPECT_EQ(resume_point(last, run), run + "/epoch10.ckpt");  // by number, not by name
  std::ofstream(last) << "x";
  EXPECT_EQ(resume_point(last, run), last);
  const std::string other = dir + "/other";
  fs::create_directories(other);
  std::ofstream(other + "/best.ckpt") << "x";
  const std::string err = error_of([&] { resume_point(other + "/last.ckpt", other); });
  EXPECT_NE(err.find("holds only best.ckpt"), std::string::npos) << err;
}

// ich-train's epoch end: last.ckpt and best.ckpt are hard links to
// epochN.ckpt; every later write replaces a name by rename, so the others
// keep their bytes.
TEST_F(Resume, ASecondNameSharesTheBytesUntilEitherIsRewritten) {
  const std::string epoch = dir + "/epoch1.ckpt", last = dir + "/last.ckpt";
  const auto read = [](const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
  };
  write_file_atomic(epoch, "epoch one");
  write_file_atomic(last, "older last");
  ASSERT_TRUE(link_atomic(epoch, last));  // replaces the older file
  EXPECT_EQ(fs::hard_link_count(epoch), 2u);
  EXPECT_TRUE(fs::equivalent(epoch, last));
  EXPECT_EQ(read(last), "epoch one");
  write_file_atomic(last, "a later step");  // a mid-epoch last.ckpt
  EXPECT_EQ(read(epoch), "epoch one");
  EXPECT_EQ(fs::hard_link_count(epoch), 1u);
  for (const auto& e : fs::directory_iterator(dir))
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path();
  const std::string err = error_of([&] { link_atomic(dir + "/missing.ckpt", dir + "/best.ckpt"); });
  EXPECT_NE(err.find("missing.ckpt"), std::string::npos) << err;
  EXPECT_NE(err.find("best.ckpt"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(dir + "/best.ckpt"));
}

// A file another library wrote under temporary_name() gets its name whole
// (the older file replaced, no temporary left); a missing one is an error
// naming the path, and the older file stays.
TEST_F(Resume, AFileWrittenByAnotherLibraryIsCommittedUnderItsName) {
  const std::string path = dir + "/result.dcm", tmp = temporary_name(path);
  EXPECT_NE(tmp, path);
  EXPECT_EQ(tmp.rfind(path + ".tmp.", 0), 0u);
  write_file_atomic(path, "older");
  std::ofstream(tmp) << "whole";
  commit_written_file(tmp, path);
  std::ifstream f(path);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(f), {}), "whole");
  EXPECT_FALSE(fs::exists(tmp));
  const std::string err = error_of([&] { commit_written_file(tmp, path); });
  EXPECT_NE(err.find("result.dcm"), std::string::npos) << err;
  EXPECT_TRUE(fs::exists(path));
}

// A kill between creating "<name>.tmp.<pid>" and its rename leaves that file;
// a run starting in the folder removes those of the names it writes, and
// nothing else (the finished files, another program's files that merely
// look alike, subfolders, a file a running process is writing).
TEST_F(Resume, LeftoversOfKilledWritesAreRemovedAndNothingElse) {
  const pid_t child = ::fork();  // a process that has ended: its id for the killed run's files
  if (child == 0) std::_Exit(0);
  ASSERT_GT(child, 0);
  ASSERT_EQ(::waitpid(child, nullptr, 0), child);
  const std::string dead = std::to_string(child);
  const std::vector<std::string> leftovers{"last.ckpt.tmp." + dead, "epoch3.ckpt.tmp." + dead, "log.csv.tmp." + dead};
  const std::vector<std::string> kept{"last.ckpt",       "log.csv",          "notes.txt.tmp.12", "log.csv.tmp.",
                                      "log.csv.tmp.12a", "best.ckpt.tmp.x1", "my.ckpt.bak",      ".ckpt.tmp.5",
                                      "mylog.csv.tmp.7"};
  for (const auto& n : leftovers) std::ofstream(dir + "/" + n) << "half";
  for (const auto& n : kept) std::ofstream(dir + "/" + n) << "whole";
  fs::create_directories(dir + "/epoch1.ckpt.tmp.3");  // a folder, not a leftover file
  // a process still running (this one) may be writing its own: left alone
  const std::string live = "last.ckpt.tmp." + std::to_string(::getpid());
  std::ofstream(dir + "/" + live) << "being written";
  EXPECT_EQ(remove_atomic_leftovers(dir, {".ckpt", "log.csv"}), 3);
  for (const auto& n : leftovers) EXPECT_FALSE(fs::exists(dir + "/" + n)) << n;
  for (const auto& n : kept) EXPECT_TRUE(fs::exists(dir + "/" + n)) << n;
  EXPECT_TRUE(fs::is_directory(dir + "/epoch1.ckpt.tmp.3"));
  EXPECT_TRUE(fs::exists(dir + "/" + live));
  EXPECT_EQ(remove_atomic_leftovers(dir, {".ckpt", "log.csv"}), 0);
}

}  // namespace
}  // namespace ich
