// POSIX behaviour through a real FUSE mount, driven by ordinary tools and syscalls. Runs over
// every writable source listed in kSources.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "support/mount_fixture.h"

namespace hfvfs::testing {
namespace {

namespace fs = std::filesystem;

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void Spit(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

std::string RandomBytes(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string out(n, '\0');
  for (char& c : out) c = static_cast<char>(rng());
  return out;
}

// A source for the suite: how to write its spec, given a scratch folder.
struct Source {
  const char* name;
  std::string (*spec)(const std::string& scratch);
};

const Source kSources[] = {
    {"memfs", [](const std::string&) { return std::string("[[layer]]\ntype = \"memfs\"\n"); }},
    {"local",
     [](const std::string& dir) {
       return "[[layer]]\ntype = \"local\"\npath = \"" + dir + "\"\n";
     }},
};

class PosixTest : public ::testing::TestWithParam<Source> {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/hfvfs-src-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    source_dir_ = tmpl;
    mount_ = std::make_unique<MountFixture>(GetParam().spec(source_dir_));
    ASSERT_TRUE(mount_->ok()) << mount_->error();
  }
  void TearDown() override {
    mount_.reset();
    if (!source_dir_.empty()) fs::remove_all(source_dir_);
  }
  std::string P(std::string_view rel) const { return mount_->path(rel); }

  std::string source_dir_;  // for sources backed by a folder
  std::unique_ptr<MountFixture> mount_;
};

TEST_P(PosixTest, CopyATreeInAndDiffIt) {
  std::string src = mount_->scratch() + "/tree";
  fs::create_directories(src + "/a/b/c");
  Spit(src + "/top.txt", "top\n");
  Spit(src + "/a/one.bin", RandomBytes(3 << 20, 1));
  Spit(src + "/a/b/two.txt", std::string(100000, 'x'));
  Spit(src + "/a/b/c/empty", "");
  fs::create_symlink("../top.txt", src + "/a/link");
  ProcessResult cp = RunProcess({"cp", "-r", src, P("tree")});
  ASSERT_EQ(cp.status, 0) << cp.output;
  ProcessResult diff = RunProcess({"diff", "-r", "--no-dereference", src, P("tree")});
  EXPECT_EQ(diff.status, 0) << diff.output;
  ProcessResult ls = RunProcess({"ls", "-lR", P("tree")});
  EXPECT_EQ(ls.status, 0) << ls.output;
  EXPECT_NE(ls.output.find("one.bin"), std::string::npos);
  EXPECT_NE(ls.output.find("link -> ../top.txt"), std::string::npos) << ls.output;
}

TEST_P(PosixTest, DdWritesAndReadsLargeBlocks) {
  std::string data = RandomBytes(8 << 20, 2);
  Spit(mount_->scratch() + "/in.bin", data);
  ProcessResult w = RunProcess(
      {"dd", "if=" + mount_->scratch() + "/in.bin", "of=" + P("big.bin"), "bs=1M", "status=none"});
  ASSERT_EQ(w.status, 0) << w.output;
  ProcessResult r = RunProcess(
      {"dd", "if=" + P("big.bin"), "of=" + mount_->scratch() + "/out.bin", "bs=1M", "status=none"});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(Slurp(mount_->scratch() + "/out.bin"), data);
  struct stat st;
  ASSERT_EQ(stat(P("big.bin").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 8 << 20);
}

TEST_P(PosixTest, MmapReadsTheContent) {
  std::string data = RandomBytes(1 << 20, 3);
  Spit(P("mapped.bin"), data);
  int fd = open(P("mapped.bin").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  void* map = mmap(nullptr, data.size(), PROT_READ, MAP_PRIVATE, fd, 0);
  ASSERT_NE(map, MAP_FAILED) << std::strerror(errno);
  EXPECT_EQ(std::memcmp(map, data.data(), data.size()), 0);
  munmap(map, data.size());
  close(fd);
}

TEST_P(PosixTest, SharedMmapWritesReachTheFile) {
  Spit(P("shared.map"), std::string(8192, '.'));
  int fd = open(P("shared.map").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  char* map = static_cast<char*>(mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  ASSERT_NE(map, MAP_FAILED) << std::strerror(errno);
  std::memcpy(map + 4096, "mapped write", 12);
  ASSERT_EQ(msync(map, 8192, MS_SYNC), 0) << std::strerror(errno);
  munmap(map, 8192);
  close(fd);
  std::string back = Slurp(P("shared.map"));
  ASSERT_EQ(back.size(), 8192u);
  EXPECT_EQ(back.substr(4096, 12), "mapped write");
  EXPECT_EQ(back.substr(0, 4), "....");
}

TEST_P(PosixTest, WriteAppendAndTruncate) {
  Spit(P("f.txt"), "hello");
  int fd = open(P("f.txt").c_str(), O_WRONLY | O_APPEND);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, " world", 6), 6);
  ASSERT_EQ(close(fd), 0);
  EXPECT_EQ(Slurp(P("f.txt")), "hello world");

  ASSERT_EQ(truncate(P("f.txt").c_str(), 5), 0);
  EXPECT_EQ(Slurp(P("f.txt")), "hello");
  fd = open(P("f.txt").c_str(), O_RDWR);
  ASSERT_EQ(pwrite(fd, "J", 1, 0), 1);
  ASSERT_EQ(ftruncate(fd, 8), 0);
  struct stat st;
  ASSERT_EQ(fstat(fd, &st), 0);
  EXPECT_EQ(st.st_size, 8);
  close(fd);
  EXPECT_EQ(Slurp(P("f.txt")), std::string("Jello\0\0\0", 8));

  // O_TRUNC on open, and the shell's `echo > f` pattern.
  ProcessResult echo = RunProcess({"sh", "-c", "echo replaced > '" + P("f.txt") + "'"});
  EXPECT_EQ(echo.status, 0) << echo.output;
  EXPECT_EQ(Slurp(P("f.txt")), "replaced\n");

  ASSERT_EQ(chmod(P("f.txt").c_str(), 0600), 0);
  timespec times[2] = {{0, UTIME_OMIT}, {1'000'000, 0}};
  ASSERT_EQ(utimensat(AT_FDCWD, P("f.txt").c_str(), times, 0), 0);
  ASSERT_EQ(stat(P("f.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_mtim.tv_sec, 1'000'000);
}

TEST_P(PosixTest, RenameOverAnExistingFileAndNoReplace) {
  Spit(P("a"), "A");
  Spit(P("b"), "B");
  ASSERT_EQ(rename(P("a").c_str(), P("b").c_str()), 0);
  EXPECT_EQ(Slurp(P("b")), "A");
  EXPECT_FALSE(fs::exists(P("a")));

  Spit(P("c"), "C");
  long rc =
      syscall(SYS_renameat2, AT_FDCWD, P("c").c_str(), AT_FDCWD, P("b").c_str(), RENAME_NOREPLACE);
  EXPECT_EQ(rc, -1);
  EXPECT_EQ(errno, EEXIST);
  EXPECT_EQ(Slurp(P("b")), "A");
  rc = syscall(SYS_renameat2, AT_FDCWD, P("c").c_str(), AT_FDCWD, P("d").c_str(), RENAME_NOREPLACE);
  EXPECT_EQ(rc, 0) << std::strerror(errno);
  EXPECT_EQ(Slurp(P("d")), "C");

  // A folder moves with its content.
  fs::create_directories(P("dir/sub"));
  Spit(P("dir/sub/x"), "X");
  ASSERT_EQ(rename(P("dir").c_str(), P("moved").c_str()), 0);
  EXPECT_EQ(Slurp(P("moved/sub/x")), "X");
  EXPECT_FALSE(fs::exists(P("dir")));
}

TEST_P(PosixTest, UnlinkedOpenFileKeepsReading) {
  std::string data = RandomBytes(200000, 4);
  Spit(P("doomed"), data);
  int fd = open(P("doomed").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(unlink(P("doomed").c_str()), 0);
  EXPECT_FALSE(fs::exists(P("doomed")));
  std::string back(data.size(), '\0');
  EXPECT_EQ(pread(fd, back.data(), back.size(), 0), static_cast<ssize_t>(data.size()));
  EXPECT_EQ(back, data);
  struct stat st;
  EXPECT_EQ(fstat(fd, &st), 0);
  EXPECT_EQ(st.st_size, static_cast<off_t>(data.size()));
  close(fd);
}

TEST_P(PosixTest, FoldersSymlinksAndErrors) {
  ASSERT_EQ(mkdir(P("d").c_str(), 0755), 0);
  EXPECT_EQ(mkdir(P("d").c_str(), 0755), -1);
  EXPECT_EQ(errno, EEXIST);
  Spit(P("d/f"), "x");
  EXPECT_EQ(rmdir(P("d").c_str()), -1);
  EXPECT_EQ(errno, ENOTEMPTY);
  EXPECT_EQ(unlink(P("d").c_str()), -1);
  EXPECT_EQ(errno, EISDIR);
  ASSERT_EQ(symlink("d/f", P("l").c_str()), 0);
  char target[64] = {};
  EXPECT_EQ(readlink(P("l").c_str(), target, sizeof(target)), 3);
  EXPECT_STREQ(target, "d/f");
  EXPECT_EQ(Slurp(P("l")), "x") << "the kernel follows the link";
  ASSERT_EQ(unlink(P("l").c_str()), 0);
  ASSERT_EQ(unlink(P("d/f").c_str()), 0);
  ASSERT_EQ(rmdir(P("d").c_str()), 0);
  struct stat st;
  EXPECT_EQ(stat(P("d").c_str(), &st), -1);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_EQ(open(P("nowhere/x").c_str(), O_WRONLY | O_CREAT, 0644), -1);
  EXPECT_EQ(errno, ENOENT);
  Spit(P("excl"), "1");
  EXPECT_EQ(open(P("excl").c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644), -1);
  EXPECT_EQ(errno, EEXIST);
}

TEST_P(PosixTest, FlockBetweenTwoDescriptors) {
  Spit(P("lock"), "");
  int a = open(P("lock").c_str(), O_RDWR);
  int b = open(P("lock").c_str(), O_RDWR);
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  ASSERT_EQ(flock(a, LOCK_EX | LOCK_NB), 0) << std::strerror(errno);
  EXPECT_EQ(flock(b, LOCK_EX | LOCK_NB), -1);
  EXPECT_EQ(errno, EWOULDBLOCK);
  EXPECT_EQ(flock(b, LOCK_SH | LOCK_NB), -1);
  ASSERT_EQ(flock(a, LOCK_UN), 0);
  EXPECT_EQ(flock(b, LOCK_SH | LOCK_NB), 0);
  EXPECT_EQ(flock(a, LOCK_SH | LOCK_NB), 0) << "shared locks coexist";
  close(a);
  close(b);
}

TEST_P(PosixTest, FcntlRecordLocksBetweenProcesses) {
  Spit(P("records"), std::string(100, 'r'));
  int fd = open(P("records").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  struct flock lock {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  lock.l_start = 10;
  lock.l_len = 20;
  ASSERT_EQ(fcntl(fd, F_SETLK, &lock), 0) << std::strerror(errno);

  // Another process sees the lock on [10, 30) and can lock elsewhere.
  pid_t child = fork();
  if (child == 0) {
    int cfd = open(P("records").c_str(), O_RDWR);
    struct flock probe {};
    probe.l_type = F_WRLCK;
    probe.l_whence = SEEK_SET;
    probe.l_start = 15;
    probe.l_len = 1;
    if (fcntl(cfd, F_GETLK, &probe) != 0 || probe.l_type != F_WRLCK || probe.l_pid != getppid())
      _exit(1);
    if (fcntl(cfd, F_SETLK, &probe) != -1 || (errno != EAGAIN && errno != EACCES)) _exit(2);
    probe.l_start = 50;
    if (fcntl(cfd, F_SETLK, &probe) != 0) _exit(3);
    _exit(0);
  }
  int status = 0;
  waitpid(child, &status, 0);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: F_GETLK, 2: conflicting F_SETLK, 3: free range";

  // Open file description locks conflict between two descriptors of one process.
  lock.l_type = F_UNLCK;
  ASSERT_EQ(fcntl(fd, F_SETLK, &lock), 0);
  int other = open(P("records").c_str(), O_RDWR);
  struct flock ofd {};
  ofd.l_type = F_WRLCK;
  ofd.l_whence = SEEK_SET;
  ofd.l_len = 0;
  ASSERT_EQ(fcntl(other, F_OFD_SETLK, &ofd), 0) << std::strerror(errno);
  int third = open(P("records").c_str(), O_RDWR);
  EXPECT_EQ(fcntl(third, F_OFD_SETLK, &ofd), -1);
  close(third);
  close(other);
  close(fd);
}

TEST_P(PosixTest, StatfsReportsAFileSystem) {
  struct statvfs st;
  ASSERT_EQ(statvfs(mount_->mountpoint().c_str(), &st), 0);
  EXPECT_GT(st.f_blocks, 0u);
  EXPECT_GT(st.f_bsize, 0u);
  EXPECT_EQ(st.f_namemax, 255u);
  ProcessResult df = RunProcess({"df", "-h", mount_->mountpoint()});
  EXPECT_EQ(df.status, 0) << df.output;
  EXPECT_NE(df.output.find("hfvfs"), std::string::npos) << df.output;
}

TEST_P(PosixTest, ThirtyTwoConcurrentReadersOfOneFile) {
  std::string data = RandomBytes(4 << 20, 5);
  Spit(P("shared.bin"), data);
  std::atomic<int> bad{0};
  std::vector<std::thread> readers;
  for (int i = 0; i < 32; ++i)
    readers.emplace_back([&, i] {
      int fd = open(P("shared.bin").c_str(), O_RDONLY);
      if (fd < 0) {
        ++bad;
        return;
      }
      std::string back(data.size(), '\0');
      size_t done = 0;
      // Different block sizes and starting points per reader.
      size_t block = (64u << 10) * (1 + i % 4);
      while (done < back.size()) {
        ssize_t n = pread(fd, back.data() + done, std::min(block, back.size() - done),
                          static_cast<off_t>(done));
        if (n <= 0) break;
        done += static_cast<size_t>(n);
      }
      if (back != data) ++bad;
      close(fd);
    });
  for (auto& r : readers) r.join();
  EXPECT_EQ(bad.load(), 0);
}

INSTANTIATE_TEST_SUITE_P(Sources, PosixTest, ::testing::ValuesIn(kSources),
                         [](const auto& info) { return std::string(info.param.name); });

std::string Listing(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename());
  std::sort(names.begin(), names.end());
  std::string out;
  for (const std::string& name : names) out += name + " ";
  return out;
}

// Changes made below the mount (straight into the local folder) appear once the TTLs expire:
// listings, attributes, page cache and the kernel's readdir cache included.
TEST(ConsistencyTest, ChangesBelowTheMountAppearAfterTheTtl) {
  char tmpl[] = "/tmp/hfvfs-src-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string src = tmpl;
  Spit(src + "/a", "first");
  {
    MountFixture mount(
        "options = { attr_ttl = \"300ms\", negative_ttl = \"200ms\" }\n"
        "[[layer]]\ntype = \"local\"\npath = \"" +
        src + "\"\n");
    ASSERT_TRUE(mount.ok()) << mount.error();
    EXPECT_EQ(Listing(mount.mountpoint()), "a ");
    EXPECT_EQ(Slurp(mount.path("a")), "first");
    struct stat st;
    EXPECT_EQ(stat(mount.path("b").c_str(), &st), -1);

    Spit(src + "/b", "new file");
    Spit(src + "/a", "second version");
    std::this_thread::sleep_for(std::chrono::milliseconds(700));
    EXPECT_EQ(Listing(mount.mountpoint()), "a b ");
    EXPECT_EQ(Slurp(mount.path("b")), "new file");
    EXPECT_EQ(Slurp(mount.path("a")), "second version") << "stale pages were dropped";

    fs::remove(src + "/b");
    std::this_thread::sleep_for(std::chrono::milliseconds(700));
    EXPECT_EQ(Listing(mount.mountpoint()), "a ");
    EXPECT_EQ(stat(mount.path("b").c_str(), &st), -1);
    EXPECT_EQ(errno, ENOENT);
  }
  fs::remove_all(src);
}

TEST(ReadOnlyMountTest, WritesFailWithErofs) {
  MountFixture mount(
      "options = { read_only = true }\n[[layer]]\ntype = \"memfs\"\nhello = \"hi\"\n");
  ASSERT_TRUE(mount.ok()) << mount.error();
  EXPECT_EQ(Slurp(mount.path("hello.txt")), "hi");
  EXPECT_EQ(open(mount.path("new").c_str(), O_WRONLY | O_CREAT, 0644), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(open(mount.path("hello.txt").c_str(), O_WRONLY), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(mkdir(mount.path("d").c_str(), 0755), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(unlink(mount.path("hello.txt").c_str()), -1);
  EXPECT_EQ(errno, EROFS);
}

}  // namespace
}  // namespace hfvfs::testing
