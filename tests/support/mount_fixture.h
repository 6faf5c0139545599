// File: mount_fixture.h
//
// A real FUSE mount for end-to-end tests: writes the spec you give into a fresh temporary
// folder, runs the built `hfvfs mount -f` on an empty mountpoint as a child process, waits until
// the mount is live, and stops it (SIGTERM by PID, bounded) when destroyed.
//
//   #include "support/mount_fixture.h"
//   hfvfs::testing::MountFixture mount(R"(
//     [[layer]]
//     type = "local"
//     path = "/tmp/src"
//   )");
//   ASSERT_TRUE(mount.ok()) << mount.error();
//   std::ifstream in(mount.path("hello.txt"));
//
// The spec text must not set `mountpoint` (the fixture passes --mountpoint). The daemon runs
// with HFVFS_HOME inside the temporary folder, so its log and run files never touch ~/.hfvfs,
// and with HFVFS_PLUGIN_PATH set to the kernel's test plugins (memsrc, ...) followed by any
// folders you add; the build's own plugins are always found.
//
// Link `hfvfs_test_support`; make your test depend on the plugins it mounts
// (add_dependencies(my_test hfvfs_plugin_local)).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace hfvfs::testing {

struct MountFixtureOptions {
  // Extra environment for the daemon (tokens, endpoints, HFVFS_PLUGIN_PATH additions).
  std::map<std::string, std::string> env;
  // Extra arguments for `hfvfs mount` (e.g. "-v" for debug logs).
  std::vector<std::string> args;
  // How long to wait for the mount to appear.
  std::chrono::milliseconds mount_timeout{20'000};
  // How long Stop() waits for the daemon after SIGTERM before killing it.
  std::chrono::milliseconds stop_timeout{60'000};
};

class MountFixture {
 public:
  explicit MountFixture(const std::string& spec_toml, MountFixtureOptions options = {});
  ~MountFixture();
  MountFixture(const MountFixture&) = delete;
  MountFixture& operator=(const MountFixture&) = delete;

  // Whether the mount is live; error() says why not (the daemon's output and log included).
  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }

  const std::string& mountpoint() const { return mountpoint_; }
  // mountpoint() + "/" + relative.
  std::string path(std::string_view relative) const;
  // The temporary folder holding the spec, the mountpoint and the hfvfs home; free for the
  // test's own files (e.g. a `local` source under scratch()).
  const std::string& root() const { return root_; }
  std::string scratch() const { return root_ + "/scratch"; }
  const std::string& home() const { return home_; }
  const std::string& spec_path() const { return spec_path_; }
  pid_t pid() const { return pid_; }

  // What the daemon printed plus its log file, for failure messages.
  std::string log() const;

  // Sends SIGTERM and waits for the daemon (bounded by options.stop_timeout, then SIGKILL and
  // a lazy unmount). Returns the exit status (128 + signal when killed); `took` receives how
  // long the daemon needed. Safe to call twice; the destructor calls it.
  int Stop(std::chrono::milliseconds* took = nullptr);

 private:
  MountFixtureOptions options_;
  std::string root_, mountpoint_, home_, spec_path_, output_path_;
  pid_t pid_ = -1;
  bool ok_ = false;
  int exit_status_ = -1;
  std::string error_;
};

// The `hfvfs` binary of this build.
std::string HfvfsBinary();

// The kernel's test plugins folder (memsrc, upper, ...).
std::string TestPluginDir();

// Whether `dir` is currently a mount point (from /proc/self/mountinfo).
bool IsMounted(const std::string& dir);

struct ProcessResult {
  int status = -1;     // exit status, or 128 + signal
  std::string output;  // stdout and stderr, interleaved
};
// Runs argv[0] (searched in PATH) with `env` added to the environment, waits for it (killed
// after `timeout`).
ProcessResult RunProcess(const std::vector<std::string>& argv,
                         const std::map<std::string, std::string>& env = {},
                         std::chrono::milliseconds timeout = std::chrono::seconds(60));

}  // namespace hfvfs::testing
