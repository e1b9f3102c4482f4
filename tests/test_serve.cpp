// ich-serve's state machine without a network (serve/study_book.h): how
// received instances are filed, what a restart makes of each phase, when
// associations are refused, and the state file's round trip. The network,
// the PACS and the SR are tested end to end (tests/serve_e2e.py).
#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "engine/error.h"
#include "serve/study_book.h"

namespace ich {
namespace {

namespace fs = std::filesystem;

struct ServeBook : ::testing::Test {
  std::string work = ::testing::TempDir() + "/serve_book_" + std::to_string(::getpid()) + "_" +
                     ::testing::UnitTest::GetInstance()->current_test_info()->name();
  int counter = 0;
  void SetUp() override { fs::remove_all(work); }
  void TearDown() override { fs::remove_all(work); }
  BookOptions options(int max_pending = 8) {
    BookOptions o;
    o.work = work;
    o.stable_ms = 50;
    o.max_pending = max_pending;
    o.min_free_mb = 0;
    return o;
  }
  // A received instance as the receiver leaves it: a file in incoming/.
  std::string instance(const std::string& study, const std::string& sop) {
    DcmFileFormat ff;
    DcmDataset& d = *ff.getDataset();
    d.putAndInsertString(DCM_SOPClassUID, UID_CTImageStorage);
    d.putAndInsertString(DCM_SOPInstanceUID, sop.c_str());
    d.putAndInsertString(DCM_StudyInstanceUID, study.c_str());
    const std::string p = work + "/incoming/t" + std::to_string(counter++) + ".part";
    fs::create_directories(work + "/incoming");
    EXPECT_TRUE(ff.saveFile(p.c_str(), EXS_LittleEndianExplicit).good());
    return p;
  }
  std::string junk() {
    const std::string p = work + "/incoming/j" + std::to_string(counter++) + ".part";
    std::ofstream(p) << "not a DICOM data set at all, just words";
    return p;
  }
  std::vector<std::string> jsonl() {
    std::ifstream in(work + "/results.jsonl");
    std::vector<std::string> lines;
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    return lines;
  }
};

TEST_F(ServeBook, FilesInstancesByStudyInArrivalOrderAndIgnoresResends) {
  StudyBook book(options());
  AssociationLog log;
  EXPECT_EQ(book.store(instance("1.2.3", "1.2.3.1"), "1.2.3.1", log), 0);
  EXPECT_EQ(book.store(instance("1.2.4", "1.2.4.1"), "1.2.4.1", log), 0);
  EXPECT_EQ(book.store(instance("1.2.3", "1.2.3.2"), "1.2.3.2", log), 0);
  EXPECT_EQ(book.store(instance("1.2.3", "1.2.3.2"), "1.2.3.2", log), 0);  // a resend
  EXPECT_TRUE(fs::exists(work + "/studies/1.2.3/instances/1.2.3.2.dcm"));
  EXPECT_TRUE(fs::is_empty(work + "/incoming"));
  // What the association's audit records will say: instances per study and SOP class (the resend too: it was sent).
  ASSERT_EQ(log.received.size(), 2u);
  EXPECT_EQ(log.received.at("1.2.3").sop_classes.at(UID_CTImageStorage), 3);
  EXPECT_EQ(log.received.at("1.2.4").sop_classes.at(UID_CTImageStorage), 1);
  const StudyState a = load_study_state(book.dir("1.2.3")), b = load_study_state(book.dir("1.2.4"));
  EXPECT_EQ(a.instances, 2);
  EXPECT_LT(a.seq, b.seq);
  usleep(100 * 1000);
  book.mark_stable(now_ms());
  const auto first = book.claim(StudyPhase::stable, now_ms());
  ASSERT_TRUE(first);
  EXPECT_EQ(first->study_uid, "1.2.3");  // arrival order
  const auto second = book.claim(StudyPhase::stable, now_ms());
  ASSERT_TRUE(second);
  EXPECT_EQ(second->study_uid, "1.2.4");
  EXPECT_FALSE(book.claim(StudyPhase::stable, now_ms()));  // both held
}

TEST_F(ServeBook, UnreadableInstancesAreRefusedKeptAndReportedInTheirAssociationsStudy) {
  StudyBook book(options());
  AssociationLog log;
  log.calling_aet = "SENDER";
  EXPECT_EQ(book.store(junk(), "9.9.1", log), 0xC000);  // before any readable one: held by the association
  EXPECT_EQ(log.unattributed.size(), 1u);
  EXPECT_EQ(book.store(instance("1.2.3", "1.2.3.1"), "1.2.3.1", log), 0);
  EXPECT_EQ(book.store(junk(), "9.9.2", log), 0xC000);
  const StudyState s = load_study_state(book.dir("1.2.3"));
  ASSERT_EQ(s.rejected.size(), 2u);
  EXPECT_NE(s.rejected[0].find("9.9.1"), std::string::npos);
  EXPECT_NE(s.rejected[1].find("9.9.2"), std::string::npos);
  EXPECT_EQ(std::distance(fs::directory_iterator(work + "/rejected"), fs::directory_iterator()), 2);
  // An association with nothing readable at all: one results.jsonl line.
  AssociationLog lone;
  EXPECT_EQ(book.store(junk(), "9.9.3", lone), 0xC000);
  book.association_ended(lone);
  const auto lines = jsonl();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("\"event\":\"unattributed\""), std::string::npos);
  EXPECT_NE(lines[0].find("9.9.3"), std::string::npos);
}

TEST_F(ServeBook, RefusesAssociationsWhileMaxPendingStudiesWait) {
  StudyBook book(options(2));
  AssociationLog log;
  EXPECT_EQ(book.refuse_association(), "");
  book.store(instance("1.2.3", "1.2.3.1"), "1.2.3.1", log);
  EXPECT_EQ(book.refuse_association(), "");
  book.store(instance("1.2.4", "1.2.4.1"), "1.2.4.1", log);
  EXPECT_NE(book.refuse_association().find("--max-pending 2"), std::string::npos);
  usleep(100 * 1000);
  book.mark_stable(now_ms());
  const auto s = book.claim(StudyPhase::stable, now_ms());
  book.modify(s->study_uid, [](StudyState& t) { t.phase = StudyPhase::processed; });
  book.release(s->study_uid);
  EXPECT_EQ(book.refuse_association(), "");  // processed studies no longer count
}

TEST_F(ServeBook, ARestartGoesOnFromEachPhaseAndWritesEachResultLineOnce) {
  {
    StudyBook book(options());
    AssociationLog log;
    for (const char* st : {"1.1", "1.2", "1.3", "1.4"}) book.store(instance(st, std::string(st) + ".1"), "", log);
    usleep(100 * 1000);
    book.mark_stable(now_ms());
    // 1.1 stays stable (killed while processing); 1.2 processed, not sent;
    // 1.3 sent, killed before its line; 1.4 sent with its line.
    book.modify("1.2", [](StudyState& t) { t.phase = StudyPhase::processed; t.next_send_ms = now_ms() + 3600000; });
    for (const char* st : {"1.3", "1.4"})
      book.modify(st, [&](StudyState& t) {
        t.phase = StudyPhase::sent;
        t.result_json = "{\"study_uid\":\"" + std::string(st) + "\",\"round\":1,\"x\":1}";
      });
    book.append_jsonl("{\"study_uid\":\"1.4\",\"round\":1,\"x\":1}");
    book.modify("1.4", [](StudyState& t) { t.jsonl_written = true; });
    fs::create_directories(work + "/incoming");
    std::ofstream(work + "/incoming/half.part") << "half an instance";
  }
  StudyBook again(options());
  EXPECT_FALSE(fs::exists(work + "/incoming/half.part"));  // never acknowledged: the sender sends it again
  const auto lines = jsonl();
  ASSERT_EQ(lines.size(), 2u);  // 1.4's once, 1.3's added
  EXPECT_NE(lines[1].find("\"1.3\""), std::string::npos);
  EXPECT_TRUE(load_study_state(again.dir("1.3")).jsonl_written);
  const auto p = again.claim(StudyPhase::processed, now_ms());  // due at once after a restart
  ASSERT_TRUE(p);
  EXPECT_EQ(p->study_uid, "1.2");
  const auto s = again.claim(StudyPhase::stable, now_ms());
  ASSERT_TRUE(s);
  EXPECT_EQ(s->study_uid, "1.1");
  StudyBook third(options());  // a second restart adds no line
  EXPECT_EQ(jsonl().size(), 2u);
}

TEST_F(ServeBook, NewInstancesReopenASentStudyAsANewRoundButNotOneInHand) {
  StudyBook book(options());
  AssociationLog log;
  book.store(instance("1.2.3", "1.2.3.1"), "", log);
  usleep(100 * 1000);
  book.mark_stable(now_ms());
  const auto s = book.claim(StudyPhase::stable, now_ms());
  book.store(instance("1.2.3", "1.2.3.2"), "", log);  // arrives while it is processed
  EXPECT_EQ(load_study_state(book.dir("1.2.3")).phase, StudyPhase::stable);
  EXPECT_TRUE(load_study_state(book.dir("1.2.3")).reopen);
  book.modify("1.2.3", [](StudyState& t) { t.phase = StudyPhase::sent; });
  book.release("1.2.3");  // then it reopens
  StudyState t = load_study_state(book.dir("1.2.3"));
  EXPECT_EQ(t.phase, StudyPhase::receiving);
  EXPECT_EQ(t.round, 2);
  EXPECT_EQ(t.instances, 2);
  book.store(instance("1.2.3", "1.2.3.2"), "", log);  // a resend of one it has: no new round
  EXPECT_EQ(load_study_state(book.dir("1.2.3")).round, 2);
}

TEST(ServeState, RoundTripsAndRejectsBrokenFiles) {
  const std::string dir = ::testing::TempDir() + "/serve_state_" + std::to_string(::getpid());
  fs::create_directories(dir);
  StudyState s;
  s.study_uid = "1.2.840.1";
  s.phase = StudyPhase::processed;
  s.seq = 7;
  s.round = 2;
  s.rejected = {"a: line\nbreak", "b"};
  s.result_json = "{\"x\":1}";
  save_study_state(dir, s);
  const StudyState t = load_study_state(dir);
  EXPECT_EQ(t.phase, StudyPhase::processed);
  EXPECT_EQ(t.seq, 7);
  EXPECT_EQ(t.round, 2);
  EXPECT_EQ(t.rejected, (std::vector<std::string>{"a: line break", "b"}));
  EXPECT_EQ(t.result_json, s.result_json);
  std::ofstream(dir + "/state") << "study_uid 1.2\nphase sent\n";  // no end line: cut short
  EXPECT_THROW(load_study_state(dir), Error);
  std::ofstream(dir + "/state") << "study_uid 1.2\nseq x\nend\n";
  try {
    load_study_state(dir);
    FAIL() << "a bad number was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("state:2"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(usable_uid("ID_3f1c0a9be"));  // RSNA's de-identified UIDs are files too
  EXPECT_FALSE(usable_uid(".."));
  EXPECT_FALSE(usable_uid("1.2/../3"));
  EXPECT_FALSE(usable_uid(std::string(65, '1')));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace ich
