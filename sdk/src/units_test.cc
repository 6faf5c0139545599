#include "hfvfs/units.h"

#include <gtest/gtest.h>

namespace hfvfs {
namespace {

TEST(ParseSize, AcceptsBinaryAndDecimalUnits) {
  EXPECT_EQ(*ParseSize("10GiB"), 10ull << 30);
  EXPECT_EQ(*ParseSize("512MiB"), 512ull << 20);
  EXPECT_EQ(*ParseSize("64kib"), 64ull << 10);
  EXPECT_EQ(*ParseSize("100MB"), 100'000'000ull);
  EXPECT_EQ(*ParseSize("1.5GiB"), 3ull << 29);
  EXPECT_EQ(*ParseSize("4096"), 4096u);
  EXPECT_EQ(*ParseSize(" 7B "), 7u);
  EXPECT_EQ(*ParseSize("2G"), 2ull << 30);
}

TEST(ParseSize, RejectsGarbageWithTheAcceptedForms) {
  for (const char* bad : {"", "ten", "10 parsecs", "GiB", "-5", "1e400GiB"}) {
    Result<uint64_t> r = ParseSize(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.code(), EINVAL);
    EXPECT_NE(r.error().message().find("10GiB"), std::string::npos);
  }
}

TEST(ParseDuration, AcceptsUnits) {
  using std::chrono::milliseconds;
  EXPECT_EQ(*ParseDuration("30s"), milliseconds(30'000));
  EXPECT_EQ(*ParseDuration("500ms"), milliseconds(500));
  EXPECT_EQ(*ParseDuration("2m"), milliseconds(120'000));
  EXPECT_EQ(*ParseDuration("1h"), milliseconds(3'600'000));
  EXPECT_EQ(*ParseDuration("1.5s"), milliseconds(1500));
  EXPECT_EQ(*ParseDuration("0"), milliseconds(0));
  EXPECT_EQ(*ParseDuration("7"), milliseconds(7000));
}

TEST(ParseDuration, RejectsGarbage) {
  for (const char* bad : {"", "soon", "5 fortnights", "s"}) {
    EXPECT_EQ(ParseDuration(bad).code(), EINVAL) << bad;
  }
}

TEST(ExpandPath, ExpandsHomeAndRelative) {
  setenv("HOME", "/home/u", 1);
  EXPECT_EQ(ExpandPath("~/.cache/x"), "/home/u/.cache/x");
  EXPECT_EQ(ExpandPath("~"), "/home/u");
  EXPECT_EQ(ExpandPath("$HOME/a"), "/home/u/a");
  EXPECT_EQ(ExpandPath("rel/dir", "/specs"), "/specs/rel/dir");
  EXPECT_EQ(ExpandPath("/abs", "/specs"), "/abs");
  EXPECT_EQ(ExpandPath("~user/x"), "~user/x");
}

TEST(FormatSize, IsReadable) {
  EXPECT_EQ(FormatSize(12), "12 B");
  EXPECT_EQ(FormatSize(3ull << 29), "1.5 GiB");
}

}  // namespace
}  // namespace hfvfs
