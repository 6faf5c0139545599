// File: s3_test_server.h
//
// The loopback S3 server (OpenStack Swift + s3api, tests/support/swift_s3.py) as GoogleTest
// tests see it. Header-only; needs HFVFS_SOURCE_DIR (hfvfs_add_test defines it).
//
//   const hfvfs::testing::S3TestServer& s3 = hfvfs::testing::S3TestServer::Get();
//   if (!s3.ok()) FAIL() << s3.error;
//   ... s3.endpoint, s3.access_key, s3.secret_key, s3.region ...
//
// Under ctest, the fixture `swift_s3` (tests/s3_server/CMakeLists.txt) starts one server for
// all tests and exports HFVFS_S3_SERVER_STATE, the path of its state.json. A test binary run by
// hand (no such variable, or a server that no longer answers) starts a private server in a
// temporary folder on first use and stops it, by PID, when the process exits.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>

namespace hfvfs::testing {

struct S3TestServer {
  std::string endpoint;  // http://127.0.0.1:<port>
  std::string access_key;
  std::string secret_key;
  std::string region;
  std::string storage_domain;  // virtual-host base: <bucket>.<storage_domain>:<port>
  std::string alt_access_key;  // a second account (its buckets are not the first one's)
  std::string alt_secret_key;
  std::string dir;    // the server's folder (config, data, logs)
  std::string state;  // its state.json
  int port = 0;
  int pid = 0;         // the supervisor; stopping it stops the server
  bool owned = false;  // started by this process (stopped at exit)
  std::string error;   // why the server is unusable, when it is

  bool ok() const { return error.empty(); }

  static std::string Launcher() {
    return std::string(HFVFS_SOURCE_DIR) + "/tests/support/swift_s3.py";
  }

  // Runs the launcher with `args`; returns its exit status and stdout.
  static int RunLauncher(const std::string& args, std::string* out = nullptr) {
    std::string cmd = "/usr/bin/python3 " + Launcher() + " " + args + " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) return -1;
    char buf[4096];
    std::string text;
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) text.append(buf, n);
    int rc = pclose(p);
    if (out) *out = text;
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  }

  // Fault injection: the S3 endpoint stops answering (connection refused) / comes back on the
  // same port with the same data.
  bool StopProxy() const { return RunLauncher("proxy-stop --dir '" + dir + "'") == 0; }
  bool StartProxy() const { return RunLauncher("proxy-start --dir '" + dir + "'") == 0; }

  // A bucket name unique to this process and `tag` (S3 rules: 3-63 lower-case chars).
  static std::string UniqueBucket(const std::string& tag) {
    std::string name = "t" + std::to_string(getpid()) + "-" + tag;
    for (char& c : name) {
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) c = '-';
    }
    return name.substr(0, 63);
  }

  // Runs tests/support/s3_boto3.py (boto3, the independent client) against this server and
  // returns its stdout (one JSON document), or "ERROR: ..." when it failed.
  std::string Boto3(const std::string& args) const {
    std::string out;
    std::string cmd = "/usr/bin/python3 " + std::string(HFVFS_SOURCE_DIR) +
                      "/tests/support/s3_boto3.py '" + state + "' " + args + " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) return "ERROR: popen";
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    int rc = pclose(p);
    if (!WIFEXITED(rc) || WEXITSTATUS(rc) != 0) return "ERROR: " + out;
    return out;
  }

  static const S3TestServer& Get() {
    static S3TestServer* server = [] {
      auto* s = new S3TestServer;
      const char* env = std::getenv("HFVFS_S3_SERVER_STATE");
      if (env && *env && s->Load(env) && RunLauncher("status --dir '" + s->dir + "'") == 0) {
        return s;
      }
      *s = S3TestServer{};
      char tmpl[] = "/tmp/hfvfs-swift-XXXXXX";
      if (!mkdtemp(tmpl)) {
        s->error = "mkdtemp failed";
        return s;
      }
      std::string out;
      if (S3TestServer::RunLauncher(
              std::string("start --watch-pid ") + std::to_string(getpid()) + " --dir " + tmpl,
              &out) != 0) {
        s->error = "could not start the S3 test server: " + out;
        return s;
      }
      if (!s->Load(std::string(tmpl) + "/state.json")) {
        s->error = "S3 test server started but its state.json is unreadable";
        return s;
      }
      s->owned = true;
      std::atexit([] {
        const S3TestServer& me = Get();
        if (me.owned) {
          RunLauncher("stop --dir '" + me.dir + "'");
          std::error_code ec;
          std::filesystem::remove_all(me.dir, ec);
        }
      });
      return s;
    }();
    return *server;
  }

 public:
  // A flat JSON object of strings and ints is all state.json holds at the top level.
  static std::string Field(const std::string& json, const std::string& key) {
    std::string needle = "\"" + key + "\":";
    size_t at = json.find(needle);
    if (at == std::string::npos) return {};
    at += needle.size();
    while (at < json.size() && json[at] == ' ') ++at;
    if (at < json.size() && json[at] == '"') {
      size_t end = json.find('"', at + 1);
      return end == std::string::npos ? std::string() : json.substr(at + 1, end - at - 1);
    }
    size_t end = json.find_first_of(",}\n", at);
    return json.substr(at, end - at);
  }

  bool Load(const std::string& path) {
    std::ifstream in(path);
    if (!in) return false;
    std::stringstream ss;
    ss << in.rdbuf();
    std::string json = ss.str();
    state = path;
    endpoint = Field(json, "endpoint");
    access_key = Field(json, "access_key");
    secret_key = Field(json, "secret_key");
    region = Field(json, "region");
    storage_domain = Field(json, "storage_domain");
    alt_access_key = Field(json, "alt_access_key");
    alt_secret_key = Field(json, "alt_secret_key");
    dir = Field(json, "dir");
    std::string pid_text = Field(json, "pid");
    pid = pid_text.empty() ? 0 : std::atoi(pid_text.c_str());
    size_t colon = endpoint.rfind(':');
    port = colon == std::string::npos ? 0 : std::atoi(endpoint.c_str() + colon + 1);
    return !endpoint.empty() && pid > 0 && port > 0;
  }
};

// A server of the caller's own, for tests that stop and start it (fault injection would
// disturb the shared one). Stopped by PID when the returned object is destroyed.
class PrivateS3Server {
 public:
  PrivateS3Server() {
    char tmpl[] = "/tmp/hfvfs-swift-XXXXXX";
    if (!mkdtemp(tmpl)) {
      server_.error = "mkdtemp failed";
      return;
    }
    server_.dir = tmpl;
    std::string out;
    if (S3TestServer::RunLauncher(
            std::string("start --watch-pid ") + std::to_string(getpid()) + " --dir " + tmpl,
            &out) != 0) {
      server_.error = "could not start the S3 test server: " + out;
    } else if (!server_.Load(std::string(tmpl) + "/state.json")) {
      server_.error = "S3 test server started but its state.json is unreadable";
    }
  }
  ~PrivateS3Server() {
    S3TestServer::RunLauncher("stop --dir '" + server_.dir + "'");
    std::error_code ec;
    std::filesystem::remove_all(server_.dir, ec);
  }
  PrivateS3Server(const PrivateS3Server&) = delete;
  PrivateS3Server& operator=(const PrivateS3Server&) = delete;
  const S3TestServer& server() const { return server_; }

 private:
  S3TestServer server_;
};

// A fixture `Base` (with a virtual `const S3TestServer& server() const`) whose tests run on a
// server of their own, started once per test suite: for tests that stop the S3 endpoint, so
// tests running meanwhile on the shared server never meet it stopped.
template <class Base>
class OnPrivateS3Server : public Base {
 protected:
  static void SetUpTestSuite() { private_ = new PrivateS3Server(); }
  static void TearDownTestSuite() {
    delete private_;
    private_ = nullptr;
  }
  const S3TestServer& server() const override { return private_->server(); }

 private:
  static inline PrivateS3Server* private_ = nullptr;
};

}  // namespace hfvfs::testing
