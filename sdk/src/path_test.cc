#include "hfvfs/path.h"

#include <gtest/gtest.h>

namespace hfvfs {
namespace {

TEST(Path, JoinParentBase) {
  EXPECT_EQ(JoinPath("", "a"), "a");
  EXPECT_EQ(JoinPath("a/b", "c"), "a/b/c");
  EXPECT_EQ(ParentPath("a/b/c"), "a/b");
  EXPECT_EQ(ParentPath("c"), "");
  EXPECT_EQ(BaseName("a/b/c"), "c");
  EXPECT_EQ(BaseName("c"), "c");
  EXPECT_EQ(SplitPath("a/b/c"), (std::vector<std::string_view>{"a", "b", "c"}));
  EXPECT_TRUE(SplitPath("").empty());
}

TEST(Path, IsUnderMatchesWholeComponents) {
  EXPECT_TRUE(IsUnder("a/b", "a"));
  EXPECT_TRUE(IsUnder("a", "a"));
  EXPECT_TRUE(IsUnder("a", ""));
  EXPECT_FALSE(IsUnder("ab", "a"));  // the raw-prefix bug class
  EXPECT_FALSE(IsUnder("sessions.json", "sessions.jso"));
}

TEST(Path, Normalize) {
  EXPECT_EQ(*NormalizePath("/a//b/./c/"), "a/b/c");
  EXPECT_EQ(*NormalizePath("/"), "");
  EXPECT_EQ(NormalizePath("a/../b").code(), EINVAL);
}

TEST(Path, CheckName) {
  EXPECT_TRUE(CheckName("x.json").ok());
  EXPECT_FALSE(CheckName("").ok());
  EXPECT_FALSE(CheckName("..").ok());
  EXPECT_FALSE(CheckName("a/b").ok());
}

}  // namespace
}  // namespace hfvfs
