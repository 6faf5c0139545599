// The CLI around mounts: daemon mode, stop, status, and failures reported by the parent.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

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

}  // namespace
}  // namespace hfvfs::testing
