#include "journal.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

namespace hfvfs::sync {
namespace {

class JournalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("sync_journal_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir() const { return dir_.string(); }
  std::filesystem::path dir_;
};

TEST_F(JournalTest, EncodeDecodeRoundTripsAwkwardPaths) {
  for (std::string s : {std::string(""), std::string("a b"), std::string("100%"),
                        std::string("new\nline"), std::string("é/ü"), std::string("=x")}) {
    std::string enc = Journal::Encode(s);
    EXPECT_EQ(enc.find(' '), std::string::npos);
    EXPECT_EQ(enc.find('\n'), std::string::npos);
    std::string back;
    ASSERT_TRUE(Journal::Decode(enc, back)) << enc;
    EXPECT_EQ(back, s);
  }
  std::string out;
  EXPECT_FALSE(Journal::Decode("=%4", out));
  EXPECT_FALSE(Journal::Decode("nope", out));
}

TEST_F(JournalTest, LiveRecordsSurviveReopenAndRetiredOnesDoNot) {
  {
    auto j = Journal::Open(dir());
    ASSERT_TRUE(j.ok()) << j.error().message();
    JournalRecord a{
        JournalRecord::Op::kStaged, 0, 7, 0640, true, "etag 1", "dir/a b.txt", false, {}};
    JournalRecord b{JournalRecord::Op::kStaged, 0, 8, 0644, false, "", "b", false, {}};
    JournalRecord x;
    x.op = JournalRecord::Op::kRemove;
    x.path = "old";
    ASSERT_TRUE((*j)->Commit({&a, &b, &x}, {}).ok());
    EXPECT_GT(b.seq, a.seq);
    ASSERT_TRUE((*j)->Commit({}, {b.seq}).ok());
    EXPECT_EQ((*j)->Live().size(), 2u);
  }
  auto j = Journal::Open(dir());
  ASSERT_TRUE(j.ok());
  auto live = (*j)->Live();
  ASSERT_EQ(live.size(), 2u);
  EXPECT_EQ(live[0].op, JournalRecord::Op::kStaged);
  EXPECT_EQ(live[0].id, 7u);
  EXPECT_EQ(live[0].mode, 0640u);
  EXPECT_TRUE(live[0].base_exists);
  EXPECT_EQ(live[0].base_version, "etag 1");
  EXPECT_EQ(live[0].path, "dir/a b.txt");
  EXPECT_EQ(live[1].op, JournalRecord::Op::kRemove);
  EXPECT_EQ(live[1].path, "old");
  // New records never reuse a seq seen before.
  JournalRecord c{JournalRecord::Op::kStaged, 0, 9, 0644, false, "", "c", false, {}};
  ASSERT_TRUE((*j)->Commit({&c}, {}).ok());
  EXPECT_GT(c.seq, live[1].seq);
}

TEST_F(JournalTest, TornAndMalformedLinesAreIgnored) {
  {
    std::ofstream out(dir() + "/journal");
    out << "S 1 5 420 0 = =good\n";
    out << "garbage line\n";
    out << "S 2 6 420 0 = =torn";  // no newline: a crash mid-append
  }
  auto j = Journal::Open(dir());
  ASSERT_TRUE(j.ok());
  auto live = (*j)->Live();
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0].path, "good");
  // Open compacted the file: only the live record remains, and appends follow cleanly.
  JournalRecord r{JournalRecord::Op::kStaged, 0, 7, 0644, false, "", "next", false, {}};
  ASSERT_TRUE((*j)->Commit({&r}, {}).ok());
  auto again = Journal::Open(dir());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)->Live().size(), 2u);
}

TEST_F(JournalTest, SmallFileContentLivesInTheRecord) {
  std::string bytes = "line 1\nbinary \x01\x7f\xff 100% =";
  bytes += std::string(3, '\0');
  uint64_t seq;
  {
    auto j = Journal::Open(dir());
    ASSERT_TRUE(j.ok());
    JournalRecord r{JournalRecord::Op::kStaged, 0, 3, 0644, false, "", "small.txt", false, {}};
    r.has_content = true;
    r.content = bytes;
    ASSERT_TRUE((*j)->Commit({&r}, {}).ok());
    seq = r.seq;
    EXPECT_EQ((*j)->Content(seq), bytes);
    EXPECT_EQ((*j)->Content(seq + 100), std::nullopt);
  }
  auto j = Journal::Open(dir());  // reopened: read back, then compacted with the content
  ASSERT_TRUE(j.ok());
  auto live = (*j)->Live();
  ASSERT_EQ(live.size(), 1u);
  EXPECT_TRUE(live[0].has_content);
  EXPECT_EQ(live[0].content, bytes);
  EXPECT_EQ((*j)->Content(seq), bytes);
}

TEST_F(JournalTest, ConcurrentDurableCommitsShareFdatasyncs) {
  auto j = Journal::Open(dir());
  ASSERT_TRUE(j.ok());
  constexpr int kThreads = 8, kEach = 50;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        JournalRecord r{JournalRecord::Op::kStaged,
                        0,
                        static_cast<uint64_t>(t * 1000 + i),
                        0644,
                        false,
                        "",
                        "f" + std::to_string(t) + "_" + std::to_string(i),
                        false,
                        {}};
        if (!(*j)->Commit({&r}, {}).ok()) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ((*j)->Live().size(), static_cast<size_t>(kThreads * kEach));
  // Every commit waited for a sync, but not one sync each.
  EXPECT_GE((*j)->syncs(), 1u);
  EXPECT_LT((*j)->syncs(), static_cast<uint64_t>(kThreads * kEach));
}

TEST_F(JournalTest, ANonDurableCommitIsStillReadBackAfterReopen) {
  uint64_t a_seq;
  {
    auto j = Journal::Open(dir());
    ASSERT_TRUE(j.ok());
    JournalRecord a{JournalRecord::Op::kStaged, 0, 1, 0644, false, "", "a", false, {}};
    JournalRecord b{JournalRecord::Op::kStaged, 0, 2, 0644, false, "", "b", false, {}};
    ASSERT_TRUE((*j)->Commit({&a, &b}, {}).ok());
    a_seq = a.seq;
    uint64_t syncs = (*j)->syncs();
    ASSERT_TRUE((*j)->Commit({}, {a.seq}, /*durable=*/false).ok());
    EXPECT_EQ((*j)->syncs(), syncs);  // no fdatasync for it
  }
  auto j = Journal::Open(dir());  // the process "crashed": the page cache kept the write
  ASSERT_TRUE(j.ok());
  auto live = (*j)->Live();
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0].path, "b");
  EXPECT_NE(live[0].seq, a_seq);
}

}  // namespace
}  // namespace hfvfs::sync
