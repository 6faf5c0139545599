// `local` + `sync` through a real FUSE mount (hfvfs mount -f as a child process).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include "support/mount_fixture.h"
#include "sync_e2e_util.h"

namespace hfvfs::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

// Replaces a backing file atomically (temp + rename), as a remote writer would.
void Replace(const std::string& path, const std::string& data) {
  Spit(path + ".tmp~", data);
  fs::rename(path + ".tmp~", path);
}

// A backing folder and a staging folder that outlive any one mount (a remount finds both).
class SyncMountTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = fs::temp_directory_path() /
            ("sync_e2e_" + std::to_string(getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(base_);
    fs::create_directories(backing());
    fs::create_directories(staging());
  }
  void TearDown() override { fs::remove_all(base_); }

  std::string backing() const { return (base_ / "backing").string(); }
  std::string staging() const { return (base_ / "staging").string(); }
  std::string backing(const std::string& rel) const { return backing() + "/" + rel; }

  std::string Spec(const std::string& sync_keys) const {
    return "[[layer]]\ntype = \"local\"\npath = \"" + backing() +
           "\"\n\n[[layer]]\ntype = \"sync\"\nstaging_dir = \"" + staging() +
           "\"\nstaging_name = \"e2e\"\n" + sync_keys;
  }

  fs::path base_;
};

TEST_F(SyncMountTest, RandomWritesReachTheBackingFolderAfterTheDebounce) {
  MountFixture mount(Spec("flush_debounce = \"200ms\"\npoll_interval = \"0\"\n"));
  ASSERT_TRUE(mount.ok()) << mount.error();
  int fd = open(mount.path("data.bin").c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_GE(fd, 0) << strerror(errno);
  std::string want(1 << 20, '\0');
  size_t end = 0;
  std::mt19937 rng(7);
  for (int i = 0; i < 200; ++i) {
    size_t off = rng() % (want.size() - 4096);
    std::string block(4096, static_cast<char>('a' + i % 26));
    ASSERT_TRUE(PwriteAll(fd, block, static_cast<off_t>(off)));
    want.replace(off, block.size(), block);
    end = std::max(end, off + block.size());
  }
  want.resize(end);
  ASSERT_EQ(close(fd), 0);
  EXPECT_TRUE(Slurp(mount.path("data.bin")) == want);
  ASSERT_TRUE(WaitFor([&] { return Slurp(backing("data.bin")) == want; }, 10s)) << mount.log();
  // Appends, truncation and rename of a dirty file, through ordinary syscalls.
  {
    std::ofstream app(mount.path("data.bin"), std::ios::app | std::ios::binary);
    app << "tail";
  }
  ASSERT_EQ(truncate(mount.path("data.bin").c_str(), 1000), 0);
  ASSERT_EQ(rename(mount.path("data.bin").c_str(), mount.path("moved.bin").c_str()), 0);
  ASSERT_TRUE(WaitFor([&] { return Slurp(backing("moved.bin")) == want.substr(0, 1000); }, 10s))
      << mount.log();
  EXPECT_FALSE(fs::exists(backing("data.bin")));
  EXPECT_EQ(mount.Stop(), 0) << mount.log();
}

TEST_F(SyncMountTest, KillNineAfterCloseThenRemountUploads) {
  const std::string want = "accepted by close()\n" + std::string(100000, 'k');
  {
    // Uploads are an hour away: the data is only in staging when the daemon dies.
    MountFixture mount(
        Spec("flush_debounce = \"1h\"\nflush_max_window = \"2h\"\n"
             "poll_interval = \"0\"\n"));
    ASSERT_TRUE(mount.ok()) << mount.error();
    int fd = open(mount.path("precious.txt").c_str(), O_WRONLY | O_CREAT, 0600);
    ASSERT_GE(fd, 0) << strerror(errno);
    ASSERT_TRUE(PwriteAll(fd, want, 0));
    ASSERT_EQ(close(fd), 0);
    ASSERT_EQ(kill(mount.pid(), SIGKILL), 0);
    EXPECT_EQ(mount.Stop(), 128 + SIGKILL);
  }
  EXPECT_FALSE(fs::exists(backing("precious.txt")));
  MountFixture again(
      Spec("flush_debounce = \"1h\"\nflush_max_window = \"2h\"\n"
           "poll_interval = \"0\"\n"));
  ASSERT_TRUE(again.ok()) << again.error();
  // Served from the replayed staging copy, and uploaded at once (replayed files are due).
  EXPECT_TRUE(Slurp(again.path("precious.txt")) == want);
  ASSERT_TRUE(WaitFor([&] { return Slurp(backing("precious.txt")) == want; }, 10s)) << again.log();
  struct stat st;
  ASSERT_EQ(stat(backing("precious.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_NE(again.log().find("replaying 1 staged file"), std::string::npos) << again.log();
  EXPECT_EQ(again.Stop(), 0);
}

TEST_F(SyncMountTest, StopUploadsWhatIsPendingWithinTheBound) {
  MountFixture mount(
      Spec("flush_debounce = \"1h\"\nflush_max_window = \"2h\"\n"
           "poll_interval = \"0\"\nshutdown_timeout = \"20s\"\n"));
  ASSERT_TRUE(mount.ok()) << mount.error();
  for (int i = 0; i < 20; ++i) Spit(mount.path("f" + std::to_string(i)), std::to_string(i));
  EXPECT_FALSE(fs::exists(backing("f0")));
  std::chrono::milliseconds took{};
  EXPECT_EQ(mount.Stop(&took), 0) << mount.log();
  EXPECT_LT(took, 25s);
  for (int i = 0; i < 20; ++i)
    EXPECT_EQ(Slurp(backing("f" + std::to_string(i))), std::to_string(i));
}

TEST_F(SyncMountTest, RemoteChangesShowAfterAPoll) {
  Spit(backing("cfg.json"), "{\"v\": 1}");
  MountFixture mount(Spec("poll_interval = \"300ms\"\nmetadata_ttl = \"0\"\n"));
  ASSERT_TRUE(mount.ok()) << mount.error();
  // The mount lists the folder and reads the file: both are now in the kernel's caches.
  ProcessResult ls = RunProcess({"ls", mount.mountpoint()});
  ASSERT_EQ(ls.status, 0);
  EXPECT_EQ(Slurp(mount.path("cfg.json")), "{\"v\": 1}");
  Replace(backing("cfg.json"), "{\"v\": 2, \"longer\": true}");
  Spit(backing("added.txt"), "new");
  EXPECT_TRUE(
      WaitFor([&] { return Slurp(mount.path("cfg.json")) == "{\"v\": 2, \"longer\": true}"; }, 5s))
      << mount.log();
  EXPECT_TRUE(WaitFor(
      [&] {
        ProcessResult l = RunProcess({"ls", mount.mountpoint()});
        return l.output.find("added.txt") != std::string::npos;
      },
      5s));
  fs::remove(backing("added.txt"));
  EXPECT_TRUE(WaitFor(
      [&] {
        struct stat st;
        return stat(mount.path("added.txt").c_str(), &st) != 0 && errno == ENOENT;
      },
      5s));
  EXPECT_EQ(mount.Stop(), 0) << mount.log();
}

TEST_F(SyncMountTest, AReaderHoldingAFileThatChangesNeitherHangsNorSeesTornContent) {
  const size_t size = 4 << 20;
  Spit(backing("weights.bin"), std::string(size, 'a'));
  MountFixture mount(Spec("poll_interval = \"100ms\"\nmetadata_ttl = \"0\"\n"));
  ASSERT_TRUE(mount.ok()) << mount.error();
  ASSERT_EQ(RunProcess({"ls", mount.mountpoint()}).status, 0);
  int fd = open(mount.path("weights.bin").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  std::string buf(size, '\0');
  ASSERT_EQ(pread(fd, buf.data(), size, 0), static_cast<ssize_t>(size));
  // The remote replaces the file several times while the reader keeps reading.
  std::atomic<bool> done{false};
  std::thread remote([&] {
    for (int i = 0; i < 10 && !done; ++i) {
      Replace(backing("weights.bin"), std::string(size, static_cast<char>('b' + i % 2)));
      std::this_thread::sleep_for(150ms);
    }
  });
  auto end = std::chrono::steady_clock::now() + 2s;
  int reads = 0;
  while (std::chrono::steady_clock::now() < end) {
    ssize_t n = pread(fd, buf.data(), size, 0);
    ASSERT_GT(n, 0);
    // Every byte the same: one version, never a mix.
    EXPECT_EQ(buf.find_first_not_of(buf[0], 0), std::string::npos) << "torn read " << reads;
    ++reads;
  }
  done = true;
  remote.join();
  close(fd);
  EXPECT_GT(reads, 5);
  // A new open sees the last version within the poll interval (plus the kernel's turnaround).
  std::string last = Slurp(backing("weights.bin"));
  EXPECT_TRUE(WaitFor([&] { return Slurp(mount.path("weights.bin")) == last; }, 5s));
  EXPECT_EQ(mount.Stop(), 0) << mount.log();
}

TEST_F(SyncMountTest, StatusShowsTheLastErrorAsAMessage) {
  fs::create_directories(backing("d"));
  MountFixture mount(
      Spec("flush_debounce = \"300ms\"\npoll_interval = \"0\"\n"
           "shutdown_timeout = \"1s\"\nmetadata_ttl = \"0\"\n"));
  ASSERT_TRUE(mount.ok()) << mount.error();
  Spit(mount.path("d/f.txt"), "cannot land");
  fs::remove_all(backing("d"));  // before the upload: its folder is gone below
  std::map<std::string, std::string> env{{"HFVFS_HOME", mount.home()}};
  ProcessResult status;
  EXPECT_TRUE(WaitFor(
      [&] {
        status = RunProcess({HfvfsBinary(), "status"}, env);
        return status.output.find("sync: upload 'd/f.txt'") != std::string::npos;
      },
      10s))
      << status.output << mount.log();
  EXPECT_NE(status.output.find("last error ("), std::string::npos) << status.output;
  EXPECT_NE(status.output.find("errno 2 "), std::string::npos) << status.output;
  mount.Stop();
}

// A seeded, repeatable model test through the mount: random writes, truncates, reads, renames,
// unlinks, close/reopen and fsync on a few files, compared with an in-memory model (no mmap).
TEST_F(SyncMountTest, RandomizedOperationsMatchAModelThroughTheMount) {
  MountFixture mount(
      Spec("flush_debounce = \"20ms\"\nflush_max_window = \"100ms\"\n"
           "poll_interval = \"0\"\n"));
  ASSERT_TRUE(mount.ok()) << mount.error();
  const std::vector<std::string> names = {"m0", "m1", "m2"};
  std::map<std::string, std::string> model = RunModel(mount.mountpoint(), 20261130, 20000, names);
  std::chrono::milliseconds took{};
  EXPECT_EQ(mount.Stop(&took), 0) << mount.log();
  // Everything reached the backing folder by the end of the stop.
  for (const std::string& n : names) {
    if (model.count(n)) {
      EXPECT_TRUE(Slurp(backing(n)) == model[n]) << n;
    } else {
      EXPECT_FALSE(fs::exists(backing(n))) << n;
    }
  }
}

}  // namespace
}  // namespace hfvfs::testing
