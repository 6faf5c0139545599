#include "extent_set.h"

#include <gtest/gtest.h>

#include <cstdint>

namespace hfvfs::sync {
namespace {

TEST(ExtentSetTest, AddMergesTouchingAndOverlappingRanges) {
  ExtentSet s;
  EXPECT_FALSE(s.Covers(0, 1));
  EXPECT_TRUE(s.Covers(5, 5));  // empty range
  s.Add(10, 20);
  s.Add(30, 40);
  EXPECT_EQ(s.count(), 2u);
  EXPECT_TRUE(s.Covers(10, 20));
  EXPECT_FALSE(s.Covers(10, 21));
  EXPECT_FALSE(s.Covers(15, 35));
  s.Add(20, 30);  // touches both: one extent
  EXPECT_EQ(s.count(), 1u);
  EXPECT_TRUE(s.Covers(10, 40));
  s.Add(5, 12);
  s.Add(38, 50);
  EXPECT_EQ(s.count(), 1u);
  EXPECT_TRUE(s.Covers(5, 50));
  s.Add(0, 100);  // swallows everything
  EXPECT_EQ(s.count(), 1u);
  EXPECT_TRUE(s.Covers(0, 100));
  s.Add(200, UINT64_MAX);
  EXPECT_TRUE(s.Covers(300, UINT64_MAX));
  EXPECT_FALSE(s.Covers(0, UINT64_MAX));
}

TEST(ExtentSetTest, FirstGapFindsTheMissingBytesInOrder) {
  ExtentSet s;
  EXPECT_EQ(s.FirstGap(0, 10), (std::pair<uint64_t, uint64_t>{0, 10}));
  s.Add(0, 4);
  s.Add(6, 8);
  EXPECT_EQ(s.FirstGap(0, 10), (std::pair<uint64_t, uint64_t>{4, 6}));
  EXPECT_EQ(s.FirstGap(5, 10), (std::pair<uint64_t, uint64_t>{5, 6}));
  EXPECT_EQ(s.FirstGap(6, 10), (std::pair<uint64_t, uint64_t>{8, 10}));
  EXPECT_EQ(s.FirstGap(1, 3), (std::pair<uint64_t, uint64_t>{3, 3}));  // covered: {end, end}
  s.Add(4, 6);
  s.Add(8, 10);
  EXPECT_EQ(s.FirstGap(0, 10), (std::pair<uint64_t, uint64_t>{10, 10}));
}

}  // namespace
}  // namespace hfvfs::sync
