// The CLI around mounts: daemon mode, stop, status, and failures reported by the parent.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <fcntl.h>

#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "support/mount_fixture.h"

namespace hfvfs::testing {
namespace {

namespace fs = std::filesystem;

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/hfvfs-cli-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    mnt_ = root_ + "/mnt";
    fs::create_directories(mnt_);
    env_ = {{"HFVFS_HOME", root_ + "/home"}, {"HFVFS_PLUGIN_PATH", TestPluginDir()}};
  }
  void TearDown() override {
    if (IsMounted(mnt_)) RunProcess({HfvfsBinary(), "stop", mnt_}, env_);
    if (!IsMounted(mnt_)) fs::remove_all(root_);
  }
  std::string WriteSpec(const std::string& text) {
    std::string path = root_ + "/spec.toml";
    std::ofstream(path) << text;
    return path;
  }
  ProcessResult Hfvfs(std::vector<std::string> args) {
    args.insert(args.begin(), HfvfsBinary());
    return RunProcess(args, env_);
  }

  std::string root_, mnt_;
  std::map<std::string, std::string> env_;
};

TEST_F(CliTest, DaemonMountsThenStatusAndStopWork) {
  std::string spec = WriteSpec("mountpoint = \"" + mnt_ + "\"\n[[layer]]\ntype = \"memsrc\"\n");
  ProcessResult mount = Hfvfs({"mount", spec});
  ASSERT_EQ(mount.status, 0) << mount.output;
  EXPECT_NE(mount.output.find("mounted memsrc on " + mnt_), std::string::npos) << mount.output;
  EXPECT_TRUE(IsMounted(mnt_)) << "the parent returns only once the mount is ready";

  ProcessResult status = Hfvfs({"status"});
  EXPECT_EQ(status.status, 0);
  EXPECT_NE(status.output.find(mnt_), std::string::npos) << status.output;
  EXPECT_NE(status.output.find("memsrc"), std::string::npos) << status.output;
  EXPECT_NE(status.output.find("bytes_read="), std::string::npos) << status.output;

  ProcessResult stop = Hfvfs({"stop", mnt_});
  EXPECT_EQ(stop.status, 0) << stop.output;
  EXPECT_FALSE(IsMounted(mnt_));
  EXPECT_NE(Hfvfs({"status"}).output.find("no hfvfs mounts"), std::string::npos);
  // No PID or status file is left behind.
  EXPECT_TRUE(fs::is_empty(root_ + "/home/run"));
}

TEST_F(CliTest, FailureBeforeReadyIsPrintedByTheParent) {
  std::string spec =
      WriteSpec("mountpoint = \"" + mnt_ + "\"\n[[layer]]\ntype = \"memsrc\"\nfail = true\n");
  ProcessResult mount = Hfvfs({"mount", spec});
  EXPECT_EQ(mount.status, 1) << mount.output;
  EXPECT_NE(mount.output.find("memsrc: asked to fail"), std::string::npos) << mount.output;
  EXPECT_NE(mount.output.find("nothing was mounted"), std::string::npos) << mount.output;
  EXPECT_FALSE(IsMounted(mnt_));
  EXPECT_TRUE(fs::is_empty(root_ + "/home/run")) << "no stray PID file";
}

TEST_F(CliTest, SpecErrorsNameTheFileAndLine) {
  std::string spec =
      WriteSpec("mountpoint = \"" + mnt_ + "\"\n[[layer]]\ntype = \"memsrc\"\ncolour = 3\n");
  ProcessResult mount = Hfvfs({"mount", spec});
  EXPECT_EQ(mount.status, 1);
  EXPECT_NE(mount.output.find("spec.toml:4"), std::string::npos) << mount.output;
  EXPECT_NE(mount.output.find("colour"), std::string::npos) << mount.output;
  EXPECT_FALSE(IsMounted(mnt_));
}

TEST_F(CliTest, NonEmptyOrMissingMountpointIsRefused) {
  std::ofstream(mnt_ + "/occupied") << "x";
  std::string spec = WriteSpec("mountpoint = \"" + mnt_ + "\"\n[[layer]]\ntype = \"memsrc\"\n");
  ProcessResult mount = Hfvfs({"mount", spec});
  EXPECT_EQ(mount.status, 1);
  EXPECT_NE(mount.output.find("is not empty"), std::string::npos) << mount.output;
  ProcessResult missing = Hfvfs({"mount", spec, "--mountpoint", root_ + "/nowhere"});
  EXPECT_EQ(missing.status, 1);
  EXPECT_NE(missing.output.find("does not exist"), std::string::npos) << missing.output;
}

TEST_F(CliTest, VersionHelpAndUsageErrors) {
  ProcessResult version = Hfvfs({"--version"});
  EXPECT_EQ(version.status, 0);
  EXPECT_NE(version.output.find("hfvfs 0."), std::string::npos) << version.output;
  ProcessResult help = Hfvfs({"--help"});
  EXPECT_EQ(help.status, 0);
  EXPECT_NE(help.output.find("hfvfs stop DIR"), std::string::npos);
  EXPECT_EQ(Hfvfs({"frobnicate"}).status, 2);
  EXPECT_EQ(Hfvfs({"mount"}).status, 2);
  ProcessResult stop = Hfvfs({"stop", mnt_});
  EXPECT_EQ(stop.status, 1);
  EXPECT_NE(stop.output.find("no hfvfs mount there"), std::string::npos) << stop.output;
}

// Writes a file named slow* through the mount (memfs delays reads of those) and starts a
// thread blocked reading it. Returns the thread; `result` gets read()'s return value.
std::thread StartBlockedReader(const std::string& file, std::atomic<ssize_t>& result,
                               std::atomic<bool>& done) {
  std::ofstream(file) << "slow content";
  return std::thread([file, &result, &done] {
    int fd = open(file.c_str(), O_RDONLY);
    char buf[64];
    result = fd < 0 ? -2 : read(fd, buf, sizeof(buf));
    if (fd >= 0) close(fd);
    done = true;
  });
}

TEST(StopTest, ForegroundStopFinishesWhileAReadIsInFlight) {
  MountFixture mount("[[layer]]\ntype = \"memfs\"\nslow_read = \"120s\"\n");
  ASSERT_TRUE(mount.ok()) << mount.error();
  std::atomic<ssize_t> result{0};
  std::atomic<bool> done{false};
  std::thread reader = StartBlockedReader(mount.path("slow.bin"), result, done);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_FALSE(done) << "the read should be stuck in the layer";
  std::chrono::milliseconds took{};
  EXPECT_EQ(mount.Stop(&took), 0) << mount.log();
  EXPECT_LT(took.count(), 10'000) << "stop must not wait for the stuck read";
  reader.join();
  EXPECT_EQ(result.load(), -1) << "the stuck read fails once the daemon is gone";
  EXPECT_FALSE(IsMounted(mount.mountpoint()));
  EXPECT_NE(mount.log().find("exiting anyway"), std::string::npos) << mount.log();
}

// Reads four slow files at once (each read sleeps 1 s in memfs) and returns how long the last
// took; every read must return the file's bytes.
std::chrono::milliseconds ReadFourSlowFilesAtOnce(const MountFixture& mount) {
  for (int i = 0; i < 4; ++i) std::ofstream(mount.path("slow" + std::to_string(i))) << "slow " << i;
  std::vector<std::thread> readers;
  std::atomic<int> right{0};
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 4; ++i) {
    readers.emplace_back([&, i] {
      std::ifstream in(mount.path("slow" + std::to_string(i)));
      std::stringstream text;
      text << in.rdbuf();
      if (text.str() == "slow " + std::to_string(i)) ++right;
    });
  }
  for (std::thread& t : readers) t.join();
  EXPECT_EQ(right.load(), 4);
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               start);
}

// `[options] max_threads` bounds how many requests the daemon serves at once: with one thread
// four blocked reads take their turns; with the default they wait together.
TEST(MaxThreadsTest, BoundsTheRequestsServedAtOnce) {
  const std::string layer = "[[layer]]\ntype = \"memfs\"\nslow_read = \"1s\"\n";
  {
    MountFixture one("[options]\nmax_threads = 1\n" + layer);
    ASSERT_TRUE(one.ok()) << one.error();
    EXPECT_GE(ReadFourSlowFilesAtOnce(one).count(), 3900);
    EXPECT_NE(one.log().find("threads 1"), std::string::npos) << one.log();
  }
  MountFixture many(layer);
  ASSERT_TRUE(many.ok()) << many.error();
  EXPECT_LT(ReadFourSlowFilesAtOnce(many).count(), 3000);
  EXPECT_NE(many.log().find("threads 16"), std::string::npos) << many.log();
}

TEST(StopTest, SignalDuringASlowStartEndsTheDaemonWithoutMounting) {
  MountFixtureOptions options;
  options.mount_timeout = std::chrono::milliseconds(500);  // then the fixture sends SIGTERM
  auto start = std::chrono::steady_clock::now();
  MountFixture mount("[[layer]]\ntype = \"memfs\"\nstart_delay = \"60s\"\n", options);
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_FALSE(mount.ok());
  EXPECT_LT(took, std::chrono::seconds(10)) << "the stop did not wait for start()";
  EXPECT_EQ(mount.Stop(), 1);
  EXPECT_FALSE(IsMounted(mount.mountpoint()));
  EXPECT_NE(mount.log().find("before the mount was ready"), std::string::npos) << mount.log();
}

TEST_F(CliTest, StopCommandFinishesWhileAReadIsInFlight) {
  std::string spec = WriteSpec("mountpoint = \"" + mnt_ +
                               "\"\n[[layer]]\ntype = \"memfs\"\nslow_read = \"120s\"\n");
  ProcessResult mount = Hfvfs({"mount", spec});
  ASSERT_EQ(mount.status, 0) << mount.output;
  std::atomic<ssize_t> result{0};
  std::atomic<bool> done{false};
  std::thread reader = StartBlockedReader(mnt_ + "/slow.bin", result, done);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_FALSE(done);
  auto start = std::chrono::steady_clock::now();
  ProcessResult stop = Hfvfs({"stop", mnt_});
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(stop.status, 0) << stop.output;
  EXPECT_LT(took, std::chrono::seconds(10));
  reader.join();
  EXPECT_EQ(result.load(), -1);
  EXPECT_FALSE(IsMounted(mnt_));
}

TEST_F(CliTest, StatusShowsCountersOfTheStack) {
  std::string spec =
      WriteSpec("mountpoint = \"" + mnt_ + "\"\n[[layer]]\ntype = \"memfs\"\nhello = \"12345\"\n");
  ASSERT_EQ(Hfvfs({"mount", spec}).status, 0);
  {
    std::ifstream in(mnt_ + "/hello.txt");
    std::stringstream text;
    text << in.rdbuf();
    EXPECT_EQ(text.str(), "12345");
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(1300));  // status is rewritten every 1 s
  ProcessResult status = Hfvfs({"status"});
  EXPECT_NE(status.output.find("bytes_read=5 "), std::string::npos) << status.output;
  EXPECT_NE(status.output.find("1. memfs 0.0.1"), std::string::npos) << status.output;
  EXPECT_EQ(Hfvfs({"stop", mnt_}).status, 0);
}

// A layer that reports changes from inside its write requests (as a sync layer does): the
// notifications are queued and sent by the host's thread, so neither the writer nor a
// concurrent reader deadlocks on the kernel's inode or page locks.
TEST_F(CliTest, InvalidationsFromInsideRequestsDoNotDeadlock) {
  std::string spec = WriteSpec("mountpoint = \"" + mnt_ +
                               "\"\n[[layer]]\ntype = \"memfs\"\ninvalidate_on_write = true\n");
  ASSERT_EQ(Hfvfs({"mount", spec}).status, 0);
  const std::string file = mnt_ + "/busy.bin";
  std::atomic<bool> stop{false};
  std::atomic<int> reads{0};
  {
    int fd = open(file.c_str(), O_RDWR | O_CREAT, 0644);
    ASSERT_GE(fd, 0);
    std::thread reader([&] {
      int rfd = open(file.c_str(), O_RDONLY);
      char buf[4096];
      while (!stop) {
        if (pread(rfd, buf, sizeof(buf), 0) >= 0) ++reads;
      }
      close(rfd);
    });
    std::string block(4096, 'z');
    auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < 500; ++i) {
      block[0] = static_cast<char>('a' + i % 26);
      ASSERT_EQ(pwrite(fd, block.data(), block.size(), static_cast<off_t>(i % 16) * 4096), 4096);
    }
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));
    stop = true;
    reader.join();
    close(fd);
  }
  EXPECT_GT(reads.load(), 0);
  struct stat st;
  ASSERT_EQ(stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 16 * 4096);
  std::this_thread::sleep_for(std::chrono::milliseconds(1300));
  ProcessResult status = Hfvfs({"status"});
  EXPECT_NE(status.output.find("queued=500"), std::string::npos) << status.output;
  EXPECT_EQ(Hfvfs({"stop", mnt_}).status, 0);
}

TEST_F(CliTest, StopIsBoundedWhenTheStackOverrunsItsShutdown) {
  std::string spec = WriteSpec("mountpoint = \"" + mnt_ +
                               "\"\noptions = { stop_timeout = \"1s\" }\n[[layer]]\n"
                               "type = \"memfs\"\nshutdown_delay = \"60s\"\n");
  ASSERT_EQ(Hfvfs({"mount", spec}).status, 0);
  auto start = std::chrono::steady_clock::now();
  ProcessResult stop = Hfvfs({"stop", mnt_});
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(stop.status, 0) << stop.output;
  EXPECT_LT(took, std::chrono::seconds(8)) << "1 s stop_timeout + 1 s slack + exit grace";
  EXPECT_FALSE(IsMounted(mnt_));
  std::string log;
  for (const auto& entry : fs::directory_iterator(root_ + "/home/logs")) {
    std::ifstream in(entry.path());
    std::stringstream text;
    text << in.rdbuf();
    log += text.str();
  }
  EXPECT_NE(log.find("did not finish its shutdown within 1000 ms"), std::string::npos) << log;
}

TEST_F(CliTest, KilledDaemonIsCleanedUpByStopAndTheFolderMountsAgain) {
  std::string spec = WriteSpec("mountpoint = \"" + mnt_ + "\"\n[[layer]]\ntype = \"memfs\"\n");
  ASSERT_EQ(Hfvfs({"mount", spec}).status, 0);
  ProcessResult again = Hfvfs({"mount", spec});
  EXPECT_EQ(again.status, 1);
  EXPECT_NE(again.output.find("already a mount point"), std::string::npos) << again.output;

  pid_t pid = 0;
  for (const auto& entry : fs::directory_iterator(root_ + "/home/run")) {
    if (entry.path().extension() != ".pid") continue;
    std::ifstream in(entry.path());
    std::string line;
    std::getline(in, line);
    pid = std::stoi(line.substr(line.find('=') + 1));
  }
  ASSERT_GT(pid, 0);
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  for (int i = 0; i < 100 && kill(pid, 0) == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_TRUE(IsMounted(mnt_)) << "a dead FUSE mount stays in the table";
  EXPECT_NE(Hfvfs({"status"}).output.find("stale"), std::string::npos);

  // `status` removed the stale run files; `stop` still unmounts the dead mount.
  ProcessResult stop = Hfvfs({"stop", mnt_});
  EXPECT_EQ(stop.status, 0) << stop.output;
  EXPECT_FALSE(IsMounted(mnt_));
  ASSERT_EQ(Hfvfs({"mount", spec}).status, 0);
  EXPECT_EQ(Hfvfs({"stop", mnt_}).status, 0);
}

}  // namespace
}  // namespace hfvfs::testing
