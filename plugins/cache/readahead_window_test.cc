#include "readahead_window.h"

#include <gtest/gtest.h>

namespace hfvfs::cache {
namespace {

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;

ReadaheadOptions Options() {
  ReadaheadOptions o;
  o.min = 1 * kMiB;
  o.max = 16 * kMiB;
  o.backward_tolerance = 1 * kMiB;
  o.forward_tolerance = 1 * kMiB;
  return o;
}

TEST(ReadaheadWindowTest, SequentialReadsStartNearOneMiBAndDoubleUpToTheCap) {
  ReadaheadWindow w(Options());
  EXPECT_EQ(w.OnRead(0, 128 * kKiB), 1 * kMiB);
  EXPECT_EQ(w.OnRead(128 * kKiB, 128 * kKiB), 2 * kMiB);
  EXPECT_EQ(w.OnRead(256 * kKiB, 128 * kKiB), 4 * kMiB);
  EXPECT_EQ(w.OnRead(384 * kKiB, 128 * kKiB), 8 * kMiB);
  EXPECT_EQ(w.OnRead(512 * kKiB, 128 * kKiB), 16 * kMiB);
  EXPECT_EQ(w.OnRead(640 * kKiB, 128 * kKiB), 16 * kMiB);
  EXPECT_TRUE(w.sequential());
}

TEST(ReadaheadWindowTest, SmallSkipsAndOutOfOrderReadsKeepTheWindow) {
  ReadaheadWindow w(Options());
  uint64_t pos = 0;
  for (int i = 0; i < 4; ++i, pos += 128 * kKiB) w.OnRead(pos, 128 * kKiB);
  EXPECT_EQ(w.window(), 8 * kMiB);
  // The kernel's parallel read-ahead delivers a read slightly behind the last one.
  EXPECT_EQ(w.OnRead(pos - 256 * kKiB, 128 * kKiB), 16 * kMiB);
  // A forward skip inside the window (a reader that jumps over a header).
  EXPECT_EQ(w.OnRead(pos + 4 * kMiB, 128 * kKiB), 16 * kMiB);
  // A backward skip of 1 MiB from the end of the last read is tolerated too; 1 MiB + 4 KiB is
  // not.
  const uint64_t end = pos + 4 * kMiB + 128 * kKiB;
  EXPECT_EQ(w.OnRead(end - 1 * kMiB, 64 * kKiB), 16 * kMiB);
  EXPECT_EQ(w.OnRead(end - 1 * kMiB - 4 * kKiB, 4 * kKiB), 0u);
}

TEST(ReadaheadWindowTest, RandomAccessResetsAndFetchesOnlyWhatIsAsked) {
  ReadaheadWindow w(Options());
  w.OnRead(0, 128 * kKiB);
  w.OnRead(128 * kKiB, 128 * kKiB);
  EXPECT_EQ(w.OnRead(900 * kMiB, 4 * kKiB), 0u);
  EXPECT_FALSE(w.sequential());
  EXPECT_EQ(w.OnRead(100 * kMiB, 4 * kKiB), 0u);
  EXPECT_EQ(w.OnRead(3 * kMiB, 4 * kKiB), 0u);
  // Reading on from there is sequential again, from the minimum.
  EXPECT_EQ(w.OnRead(3 * kMiB + 4 * kKiB, 128 * kKiB), 1 * kMiB);
  EXPECT_EQ(w.OnRead(3 * kMiB + 132 * kKiB, 128 * kKiB), 2 * kMiB);
}

TEST(ReadaheadWindowTest, AFirstReadAwayFromTheStartIsRandom) {
  ReadaheadWindow w(Options());
  EXPECT_EQ(w.OnRead(10 * kMiB, 4 * kKiB), 0u);
  EXPECT_EQ(w.OnRead(10 * kMiB + 4 * kKiB, 4 * kKiB), 1 * kMiB);
}

TEST(ReadaheadWindowTest, AForwardSkipBeyondTheWindowIsRandom) {
  ReadaheadWindow w(Options());
  w.OnRead(0, 128 * kKiB);  // window 1 MiB
  EXPECT_EQ(w.OnRead(128 * kKiB + 3 * kMiB, 128 * kKiB), 0u);
}

TEST(ReadaheadWindowTest, SixteenKernelReadsOfOneMiBInAnyOrderStaySequential) {
  // The defaults, as a stack with a cache gets them, and the kernel's 16 MiB readahead: the
  // read of the first chunk (fetching it takes longest) reports last.
  ReadaheadWindow w(ReadaheadOptions{});
  const uint64_t order[] = {5, 1, 2, 3, 4, 7, 6, 8, 9, 12, 10, 11, 13, 15, 14, 0};
  for (uint64_t i : order) EXPECT_GT(w.OnRead(i * kMiB, kMiB), 0u) << "read at " << i << " MiB";
  EXPECT_EQ(w.window(), 64 * kMiB);
  // A seek far away is still random.
  EXPECT_EQ(w.OnRead(500 * kMiB, 4 * kKiB), 0u);
}

TEST(ReadaheadWindowTest, MinAboveMaxIsClamped) {
  ReadaheadOptions o = Options();
  o.min = 32 * kMiB;
  o.max = 4 * kMiB;
  ReadaheadWindow w(o);
  EXPECT_EQ(w.OnRead(0, 4096), 4 * kMiB);
}

}  // namespace
}  // namespace hfvfs::cache
