// Reads through a real mount of the in-memory test source (memsrc).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "support/mount_fixture.h"

namespace hfvfs::testing {
namespace {

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(MemsrcMountTest, CatLsAndStatSeeTheSourceFile) {
  MountFixture mount(R"(
[[layer]]
type = "memsrc"
text = "hello through FUSE\n"
)");
  ASSERT_TRUE(mount.ok()) << mount.error();
  EXPECT_EQ(Slurp(mount.path("hello.txt")), "hello through FUSE\n");

  struct stat st;
  ASSERT_EQ(stat(mount.path("hello.txt").c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_size, 19);

  ProcessResult ls = RunProcess({"ls", "-l", mount.mountpoint()});
  EXPECT_EQ(ls.status, 0) << ls.output;
  EXPECT_NE(ls.output.find("hello.txt"), std::string::npos) << ls.output;

  EXPECT_EQ(stat(mount.path("missing").c_str(), &st), -1);
  EXPECT_EQ(errno, ENOENT);

  // memsrc is read-only: writes are refused with EROFS.
  int fd = open(mount.path("new.txt").c_str(), O_WRONLY | O_CREAT, 0644);
  EXPECT_EQ(fd, -1);
  EXPECT_EQ(errno, EROFS);

  std::chrono::milliseconds took{};
  EXPECT_EQ(mount.Stop(&took), 0) << mount.log();
  EXPECT_FALSE(IsMounted(mount.mountpoint()));
}

}  // namespace
}  // namespace hfvfs::testing
