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

// The kernel replies to a read from the pieces a layer lends (File::read_lent): many pieces,
// empty ones among them, make the same bytes as one buffer; a layer that reports success
// without lending anything gets EIO for that read, and the mount keeps serving.
TEST(MemsrcMountTest, LentPiecesMakeTheReplyAndALayerThatLendsNothingGetsEio) {
  std::string text;
  for (int i = 0; text.size() < 300000; ++i) text += "line " + std::to_string(i) + "; ";
  MountFixture pieces("[[layer]]\ntype = \"memsrc\"\nlend = \"pieces\"\ntext = \"" + text + "\"\n");
  ASSERT_TRUE(pieces.ok()) << pieces.error();
  EXPECT_TRUE(Slurp(pieces.path("hello.txt")) == text) << "bytes differ through lent pieces";
  int fd = open(pieces.path("hello.txt").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  std::string tail(5000, '\0');
  EXPECT_EQ(pread(fd, tail.data(), tail.size(), 123457), 5000);
  EXPECT_EQ(tail, text.substr(123457, 5000));
  close(fd);
  EXPECT_EQ(pieces.Stop(), 0) << pieces.log();

  MountFixture nothing("[[layer]]\ntype = \"memsrc\"\nlend = \"nothing\"\n");
  ASSERT_TRUE(nothing.ok()) << nothing.error();
  fd = open(nothing.path("hello.txt").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  char buf[16];
  errno = 0;
  EXPECT_EQ(read(fd, buf, sizeof buf), -1);
  EXPECT_EQ(errno, EIO);
  close(fd);
  struct stat st;
  EXPECT_EQ(stat(nothing.path("hello.txt").c_str(), &st), 0) << "the mount stopped serving";
  EXPECT_EQ(nothing.Stop(), 0) << nothing.log();
}

}  // namespace
}  // namespace hfvfs::testing
