// File: hub_emulator_process.h
//
// Starts tests/support/hub_emulator.py for a C++ test and stops it by PID. Header-only so any
// test binary can include it (add ${HFVFS_SOURCE_DIR}/tests/support to its include path).
//
//   HubEmulatorProcess emu;
//   ASSERT_TRUE(emu.Start(HubEmulatorProcess::DefaultFixtures())) << emu.error();
//   std::string endpoint = emu.endpoint();   // http://127.0.0.1:<port>
//   emu.Control("POST", "/_emulator/faults", R"({"kind":"status","status":500,"times":2})");
//   emu.Stop();                              // also done by the destructor
//
// The fixtures folder comes from $HFVFS_HUB_FIXTURES (set by ctest), else
// <build>/hub-fixtures; it is generated with make_hub_fixtures.py when missing.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace hfvfs::testing {

class HubEmulatorProcess {
 public:
  HubEmulatorProcess() = default;
  HubEmulatorProcess(const HubEmulatorProcess&) = delete;
  HubEmulatorProcess& operator=(const HubEmulatorProcess&) = delete;
  ~HubEmulatorProcess() { Stop(); }

  static std::string SourceDir() {
#ifdef HFVFS_SOURCE_DIR
    return HFVFS_SOURCE_DIR;
#else
    return ".";
#endif
  }

  // $HFVFS_HUB_FIXTURES, else <build>/hub-fixtures, generated when missing.
  static std::string DefaultFixtures() {
    const char* env = std::getenv("HFVFS_HUB_FIXTURES");
    std::string dir;
    if (env && *env) {
      dir = env;
    } else {
#ifdef HFVFS_BINARY_DIR
      dir = std::string(HFVFS_BINARY_DIR) + "/hub-fixtures";
#else
      dir = "hub-fixtures";
#endif
    }
    struct stat st {};
    if (::stat((dir + "/manifest.json").c_str(), &st) != 0) {
      std::string cmd = "/usr/bin/python3 '" + SourceDir() +
                        "/tests/support/make_hub_fixtures.py' --out '" + dir + "' >/dev/null";
      if (std::system(cmd.c_str()) != 0) return "";
    }
    return dir;
  }

  // Spawns the emulator and waits for its ready line. Extra arguments are passed through.
  bool Start(const std::string& fixtures, const std::vector<std::string>& extra = {}) {
    if (fixtures.empty()) {
      error_ = "no fixtures folder";
      return false;
    }
    std::vector<std::string> args = {"--fixtures", fixtures};
    args.insert(args.end(), extra.begin(), extra.end());
    return StartScript(SourceDir() + "/tests/support/hub_emulator.py", args);
  }

  // Spawns another Python test server that prints the same ready line ({"port": P, ...}).
  bool StartScript(const std::string& script, const std::vector<std::string>& script_args) {
    int fds[2];
    if (pipe(fds) != 0) {
      error_ = "pipe failed";
      return false;
    }
    std::vector<std::string> args = {"/usr/bin/python3", script};
    args.insert(args.end(), script_args.begin(), script_args.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    posix_spawn_file_actions_addclose(&actions, fds[1]);
    int rc = posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    if (rc != 0) {
      close(fds[0]);
      pid_ = -1;
      error_ = "posix_spawn failed";
      return false;
    }
    std::string line;
    char c;
    while (read(fds[0], &c, 1) == 1 && c != '\n') line += c;
    close(fds[0]);
    port_ = JsonInt(line, "\"port\"");
    cdn_port_ = JsonInt(line, "\"cdn_port\"");
    if (port_ <= 0) {
      error_ = "the emulator did not print its ready line: " + line;
      Stop();
      return false;
    }
    return true;
  }

  void Stop() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int status = 0;
      for (int i = 0; i < 100; ++i) {
        if (waitpid(pid_, &status, WNOHANG) == pid_) {
          pid_ = -1;
          return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      pid_ = -1;
    }
  }

  // Calls the control API with curl(1); returns the body ("" on failure).
  std::string Control(const std::string& method, const std::string& path,
                      const std::string& json_body = "") const {
    std::string cmd =
        "curl -s -X " + method + " 'http://127.0.0.1:" + std::to_string(port_) + path + "'";
    if (!json_body.empty()) {
      cmd += " -H 'Content-Type: application/json' --data-binary '" + json_body + "'";
    }
    std::string out;
    if (FILE* p = popen(cmd.c_str(), "r")) {
      char buf[4096];
      size_t n;
      while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
      pclose(p);
    }
    return out;
  }
  void Reset() const { Control("POST", "/_emulator/reset"); }
  std::string Stats() const { return Control("GET", "/_emulator/stats"); }

  int port() const { return port_; }
  int cdn_port() const { return cdn_port_; }
  pid_t pid() const { return pid_; }
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }
  const std::string& error() const { return error_; }

 private:
  static int JsonInt(const std::string& text, const std::string& key) {
    size_t p = text.find(key);
    if (p == std::string::npos) return -1;
    p = text.find(':', p);
    if (p == std::string::npos) return -1;
    return std::atoi(text.c_str() + p + 1);
  }

  pid_t pid_ = -1;
  int port_ = -1;
  int cdn_port_ = -1;
  std::string error_;
};

}  // namespace hfvfs::testing
