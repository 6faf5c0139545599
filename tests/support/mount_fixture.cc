#include "support/mount_fixture.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace hfvfs::testing {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string DecodeMountinfo(const std::string& field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      out += static_cast<char>((field[i + 1] - '0') * 64 + (field[i + 2] - '0') * 8 +
                               (field[i + 3] - '0'));
      i += 3;
    } else {
      out += field[i];
    }
  }
  return out;
}

void LazyUnmount(const std::string& dir) {
  if (umount2(dir.c_str(), MNT_DETACH) == 0) return;
  RunProcess({"fusermount3", "-u", "-z", "-q", dir}, {}, std::chrono::seconds(10));
}

// Waits for `pid` up to `timeout`; returns the status (128 + signal) or -1 if still running.
int WaitFor(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    int status = 0;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (r < 0) return -1;
    if (Clock::now() >= deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

// fork + exec with stdout/stderr to `output_fd` (or /dev/null when < 0).
pid_t Spawn(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
            int output_fd) {
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = fork();
  if (pid != 0) return pid;
  for (const auto& [key, value] : env) setenv(key.c_str(), value.c_str(), 1);
  int out = output_fd >= 0 ? output_fd : open("/dev/null", O_WRONLY);
  dup2(out, 1);
  dup2(out, 2);
  int in = open("/dev/null", O_RDONLY);
  dup2(in, 0);
  execvp(args[0], args.data());
  _exit(127);
}

}  // namespace

std::string HfvfsBinary() { return HFVFS_BINARY; }
std::string TestPluginDir() { return HFVFS_TEST_PLUGIN_DIR; }

bool IsMounted(const std::string& dir) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, devno, root, point;
    if (fields >> id >> parent >> devno >> root >> point && DecodeMountinfo(point) == dir)
      return true;
  }
  return false;
}

ProcessResult RunProcess(const std::vector<std::string>& argv,
                         const std::map<std::string, std::string>& env,
                         std::chrono::milliseconds timeout) {
  ProcessResult result;
  char path[] = "/tmp/hfvfs-run-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return result;
  pid_t pid = Spawn(argv, env, fd);
  close(fd);
  result.status = WaitFor(pid, timeout);
  if (result.status == -1) {
    kill(pid, SIGKILL);
    result.status = WaitFor(pid, std::chrono::seconds(5));
    result.output = "(killed after the timeout)\n";
  }
  result.output = ReadFile(path) + result.output;
  unlink(path);
  return result;
}

MountFixture::MountFixture(const std::string& spec_toml, MountFixtureOptions options)
    : options_(std::move(options)) {
  const char* tmp = getenv("TMPDIR");
  std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/hfvfs-mount-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) {
    error_ = "mkdtemp failed";
    return;
  }
  root_ = fs::canonical(tmpl).string();
  mountpoint_ = root_ + "/mnt";
  home_ = root_ + "/home";
  spec_path_ = root_ + "/spec.toml";
  output_path_ = root_ + "/daemon.out";
  fs::create_directories(mountpoint_);
  fs::create_directories(home_);
  fs::create_directories(scratch());
  std::ofstream(spec_path_) << spec_toml;

  std::map<std::string, std::string> env = options_.env;
  env["HFVFS_HOME"] = home_;
  std::string plugin_path = TestPluginDir();
  if (auto it = env.find("HFVFS_PLUGIN_PATH"); it != env.end() && !it->second.empty())
    plugin_path += ":" + it->second;
  env["HFVFS_PLUGIN_PATH"] = plugin_path;

  std::vector<std::string> argv = {HfvfsBinary(),  "mount",     spec_path_,
                                   "--mountpoint", mountpoint_, "-f"};
  argv.insert(argv.end(), options_.args.begin(), options_.args.end());
  int out = open(output_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  pid_ = Spawn(argv, env, out);
  if (out >= 0) close(out);

  const auto deadline = Clock::now() + options_.mount_timeout;
  while (!IsMounted(mountpoint_)) {
    int status = WaitFor(pid_, std::chrono::milliseconds(0));
    if (status != -1) {
      exit_status_ = status;
      pid_ = -1;
      error_ = "hfvfs mount exited with status " + std::to_string(status) +
               " before the mount was ready:\n" + log();
      return;
    }
    if (Clock::now() >= deadline) {
      error_ = "the mount did not appear within " + std::to_string(options_.mount_timeout.count()) +
               " ms:\n" + log();
      Stop();
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // The mount is in the table; the first request waits for FUSE INIT, so it is usable now.
  ok_ = true;
}

MountFixture::~MountFixture() {
  Stop();
  if (root_.empty()) return;
  if (IsMounted(mountpoint_)) return;  // never recurse into a live mount: it may be a source
  std::error_code ec;
  fs::remove_all(root_, ec);
}

std::string MountFixture::path(std::string_view relative) const {
  return mountpoint_ + "/" + std::string(relative);
}

std::string MountFixture::log() const {
  std::string out = "--- hfvfs output ---\n" + ReadFile(output_path_);
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(home_ + "/logs", ec))
    out += "--- " + entry.path().string() + " ---\n" + ReadFile(entry.path().string());
  return out;
}

int MountFixture::Stop(std::chrono::milliseconds* took) {
  const auto start = Clock::now();
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    exit_status_ = WaitFor(pid_, options_.stop_timeout);
    if (exit_status_ == -1) {
      kill(pid_, SIGKILL);
      exit_status_ = WaitFor(pid_, std::chrono::seconds(10));
    }
    pid_ = -1;
  }
  if (!mountpoint_.empty() && IsMounted(mountpoint_)) LazyUnmount(mountpoint_);
  ok_ = false;
  if (took) *took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  return exit_status_;
}

}  // namespace hfvfs::testing
