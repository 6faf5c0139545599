// End-to-end tests of the hub source through a real FUSE mount (`hfvfs mount -f`) against the
// Hub emulator: trees and bytes, range reads, revisions, subfolders, private repos and token
// rotation, a numpy reader mapping a safetensors file, and faults.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "support/hub_emulator_process.h"
#include "support/mount_fixture.h"

namespace hfvfs::testing {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using std::chrono::milliseconds;

std::string Slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

class HubE2eTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    fixtures_ = new std::string(HubEmulatorProcess::DefaultFixtures());
    manifest_ = new json(json::parse(Slurp(*fixtures_ + "/manifest.json")));
    emu_ = new HubEmulatorProcess();
    ASSERT_TRUE(emu_->Start(*fixtures_)) << emu_->error();
  }
  static void TearDownTestSuite() {
    delete emu_;
    emu_ = nullptr;
    delete manifest_;
    delete fixtures_;
  }
  void SetUp() override {
    ASSERT_NE(emu_, nullptr);
    emu_->Reset();
  }

  static std::string Spec(const std::string& repo, const std::string& extra = "") {
    return "[[layer]]\ntype = \"hub\"\nrepo = \"" + repo + "\"\nendpoint = \"" + emu_->endpoint() +
           "\"\n" + extra;
  }
  // The daemon never inherits a token from the test's environment unless the test says so.
  static MountFixtureOptions Env(const std::string& token = "") {
    MountFixtureOptions o;
    o.env["HF_TOKEN"] = token;
    return o;
  }
  static fs::path FilesDir(const std::string& key, const std::string& name = "main") {
    return (*manifest_)["repos"][key]["files_dir"][name].get<std::string>();
  }
  static std::string Token() { return (*manifest_)["tokens"]["reader"].get<std::string>(); }

  // Same names, kinds, sizes and bytes under `mnt` as under `want`.
  static void ExpectSameTree(const fs::path& mnt, const fs::path& want, bool bytes = true) {
    size_t count = 0;
    for (auto it = fs::recursive_directory_iterator(want); it != fs::recursive_directory_iterator();
         ++it) {
      fs::path rel = fs::relative(it->path(), want);
      fs::path got = mnt / rel;
      ++count;
      if (it->is_directory()) {
        EXPECT_TRUE(fs::is_directory(got)) << rel;
      } else {
        ASSERT_TRUE(fs::is_regular_file(got)) << rel;
        EXPECT_EQ(fs::file_size(got), it->file_size()) << rel;
        if (bytes) {
          EXPECT_EQ(Slurp(got), Slurp(it->path())) << rel;
        }
      }
    }
    size_t seen = 0;
    for (auto it = fs::recursive_directory_iterator(mnt); it != fs::recursive_directory_iterator();
         ++it) {
      ++seen;
    }
    EXPECT_EQ(seen, count) << "entries under " << mnt;
  }

  static inline HubEmulatorProcess* emu_ = nullptr;
  static inline std::string* fixtures_ = nullptr;
  static inline json* manifest_ = nullptr;
};

TEST_F(HubE2eTest, LsAndCmpOfEveryFile) {
  MountFixture mount(Spec("hfvfs-test/tiny-model"), Env());
  ASSERT_TRUE(mount.ok()) << mount.error();
  ExpectSameTree(mount.mountpoint(), FilesDir("model/hfvfs-test/tiny-model"));
  ProcessResult ls = RunProcess({"ls", "-lR", mount.mountpoint()});
  EXPECT_EQ(ls.status, 0) << ls.output;
  EXPECT_NE(ls.output.find("with space #1.txt"), std::string::npos) << ls.output;
  for (const char* f :
       {"config.json", "model.safetensors", "onnx/model.onnx", "dir with space/a+b=c%.txt"}) {
    ProcessResult cmp =
        RunProcess({"cmp", mount.path(f), (FilesDir("model/hfvfs-test/tiny-model") / f).string()});
    EXPECT_EQ(cmp.status, 0) << f << ": " << cmp.output;
  }
  // Read-only.
  EXPECT_EQ(open(mount.path("new.txt").c_str(), O_WRONLY | O_CREAT, 0644), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(open(mount.path("config.json").c_str(), O_WRONLY), -1);
  EXPECT_EQ(errno, EROFS);
}

TEST_F(HubE2eTest, RangeReadsAtOddOffsets) {
  MountFixture mount(Spec("hfvfs-test/tiny-model"), Env());
  ASSERT_TRUE(mount.ok()) << mount.error();
  std::string want = Slurp(FilesDir("model/hfvfs-test/tiny-model") / "onnx/model.onnx");
  int fd = open(mount.path("onnx/model.onnx").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  for (off_t off : {65535L, 1L, 40000L, 4097L, 0L, 65000L}) {
    char buf[999];
    ssize_t n = pread(fd, buf, sizeof buf, off);
    size_t expect = std::min<size_t>(sizeof buf, want.size() - off);
    ASSERT_EQ(n, static_cast<ssize_t>(expect)) << off;
    EXPECT_EQ(std::string(buf, n), want.substr(off, expect)) << off;
  }
  close(fd);
  ProcessResult dd = RunProcess({"dd", "if=" + mount.path("model.safetensors"), "bs=1", "count=8",
                                 "status=none", "of=/dev/null"});
  EXPECT_EQ(dd.status, 0) << dd.output;
}

TEST_F(HubE2eTest, NumpyMapsTheSafetensorsFileAndChecksEveryTensor) {
  MountFixture mount(Spec("hfvfs-test/tiny-model"), Env());
  ASSERT_TRUE(mount.ok()) << mount.error();
  const char* script = R"(
import json, mmap, struct, sys
import numpy as np
DT = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
def tensors(path):
    f = open(path, "rb")
    m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    (n,) = struct.unpack("<Q", m[:8])
    header = json.loads(m[8:8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(m[8 + n + a:8 + n + b], dtype=DT[t["dtype"]]).reshape(t["shape"])
    return header, out
hm, tm = tensors(sys.argv[1])
hf, tf = tensors(sys.argv[2])
assert hm == hf, "headers differ"
assert tm.keys() == tf.keys() and tm, "tensor names differ"
for k in tm:
    assert np.array_equal(tm[k], tf[k]), k
print("ok", len(tm))
)";
  ProcessResult py =
      RunProcess({"/usr/bin/python3", "-c", script, mount.path("model.safetensors"),
                  (FilesDir("model/hfvfs-test/tiny-model") / "model.safetensors").string()});
  EXPECT_EQ(py.status, 0) << py.output;
  EXPECT_NE(py.output.find("ok 4"), std::string::npos) << py.output;
}

TEST_F(HubE2eTest, SubfolderMount) {
  MountFixture mount(Spec("hfvfs-test/tiny-model", "subfolder = \"onnx\"\n"), Env());
  ASSERT_TRUE(mount.ok()) << mount.error();
  ExpectSameTree(mount.mountpoint(), FilesDir("model/hfvfs-test/tiny-model") / "onnx");
}

TEST_F(HubE2eTest, EveryRevisionForm) {
  const json& repo = (*manifest_)["repos"]["model/hfvfs-test/tiny-model"];
  std::pair<std::string, std::string> cases[] = {
      {"v1.0", "v1"},
      {"refs/pr/1", "pr1"},
      {repo["commits"]["main"].get<std::string>(), "main"},
      {"feature/x", "v1"}};
  for (const auto& [revision, name] : cases) {
    SCOPED_TRACE(revision);
    MountFixture mount(Spec("hfvfs-test/tiny-model", "revision = \"" + revision + "\"\n"), Env());
    ASSERT_TRUE(mount.ok()) << mount.error();
    ExpectSameTree(mount.mountpoint(), FilesDir("model/hfvfs-test/tiny-model", name));
  }
  MountFixture missing(Spec("hfvfs-test/tiny-model", "revision = \"nope\"\n"), Env());
  EXPECT_FALSE(missing.ok());
  EXPECT_NE(missing.error().find("RevisionNotFound"), std::string::npos) << missing.error();
}

TEST_F(HubE2eTest, PrivateRepoWithAndWithoutToken) {
  MountFixture anonymous(Spec("hfvfs-test/private-model"), Env());
  EXPECT_FALSE(anonymous.ok());
  EXPECT_NE(anonymous.error().find("401"), std::string::npos) << anonymous.error();

  MountFixture mount(Spec("hfvfs-test/private-model"), Env(Token()));
  ASSERT_TRUE(mount.ok()) << mount.error();
  ExpectSameTree(mount.mountpoint(), FilesDir("model/hfvfs-test/private-model"));
  json stats = json::parse(emu_->Stats());
  EXPECT_GT(stats["requests"]["cdn"].get<int>(), 0);
  EXPECT_TRUE(stats["cdn_authorization"].empty()) << stats["cdn_authorization"].dump();
  // The token never reaches the log.
  EXPECT_EQ(mount.log().find(Token()), std::string::npos);
}

TEST_F(HubE2eTest, TokenFileRotationWhileMounted) {
  std::string token_file =
      fs::temp_directory_path() / ("hfvfs-e2e-token-" + std::to_string(getpid()));
  std::ofstream(token_file) << Token() << "\n";
  MountFixture rotated(Spec("hfvfs-test/private-model", "token_file = \"" + token_file + "\"\n"),
                       Env());
  ASSERT_TRUE(rotated.ok()) << rotated.error();
  struct stat st;
  ASSERT_EQ(stat(rotated.path("config.json").c_str(), &st), 0);
  // A revoked token: new reads are refused...
  std::this_thread::sleep_for(milliseconds(20));
  std::ofstream(token_file, std::ios::trunc) << "hf_revoked_000000000000000000000000\n";
  int fd = open(rotated.path("config.json").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  char buf[16];
  EXPECT_EQ(pread(fd, buf, sizeof buf, 0), -1);
  EXPECT_EQ(errno, EACCES);
  // ...and served again once the file holds a valid token, without remounting.
  std::this_thread::sleep_for(milliseconds(20));
  std::ofstream(token_file, std::ios::trunc) << Token() << "\n";
  EXPECT_GT(pread(fd, buf, sizeof buf, 0), 0);
  close(fd);
  unlink(token_file.c_str());
}

TEST_F(HubE2eTest, DatasetOfTenThousandFiles) {
  MountFixture mount(Spec("datasets/hfvfs-test/many-files"), Env());
  ASSERT_TRUE(mount.ok()) << mount.error();
  auto t0 = std::chrono::steady_clock::now();
  ProcessResult find = RunProcess({"find", mount.mountpoint(), "-type", "f"});
  auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_EQ(find.status, 0);
  EXPECT_EQ(std::count(find.output.begin(), find.output.end(), '\n'), 10000);
  EXPECT_LT(took, std::chrono::seconds(30));
  ExpectSameTree(mount.mountpoint(), FilesDir("dataset/hfvfs-test/many-files"), false);
}

TEST_F(HubE2eTest, UnderACacheARemountReadsNothingFromTheHub) {
  std::string cache_dir =
      fs::temp_directory_path() / ("hfvfs-e2e-hub-cache-" + std::to_string(getpid()));
  std::string spec = Spec("hfvfs-test/tiny-model") + "\n[[layer]]\ntype = \"cache\"\ndir = \"" +
                     cache_dir + "\"\nmax_size = \"64MiB\"\n";
  fs::path want = FilesDir("model/hfvfs-test/tiny-model");
  {
    MountFixture mount(spec, Env());
    ASSERT_TRUE(mount.ok()) << mount.error();
    ExpectSameTree(mount.mountpoint(), want);
  }
  emu_->Reset();
  {
    MountFixture mount(spec, Env());
    ASSERT_TRUE(mount.ok()) << mount.error();
    ExpectSameTree(mount.mountpoint(), want);
  }
  // Same commit, same versions: every byte came from the cache.
  json stats = json::parse(emu_->Stats());
  EXPECT_EQ(stats["requests"]["cdn"].get<int>(), 0) << stats["by_path"].dump();
  EXPECT_EQ(stats["by_kind"].value("hub resolve", 0), 0) << stats["by_path"].dump();
  fs::remove_all(cache_dir);
}

TEST_F(HubE2eTest, RateLimitedTwiceThenTheReadSucceeds) {
  MountFixture mount(Spec("hfvfs-test/tiny-model"), Env());
  ASSERT_TRUE(mount.ok()) << mount.error();
  emu_->Control(
      "POST", "/_emulator/faults",
      R"({"path_glob":"*/resolve/*/tokenizer.json","kind":"ratelimit","ratelimit_t":1,"times":2})");
  auto t0 = std::chrono::steady_clock::now();
  std::string got = Slurp(mount.path("tokenizer.json"));
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(got, Slurp(FilesDir("model/hfvfs-test/tiny-model") / "tokenizer.json"));
  EXPECT_GE(took, milliseconds(1900));
  json stats = json::parse(emu_->Stats());
  EXPECT_EQ(stats["status"]["hub 429"].get<int>(), 2);
}

TEST_F(HubE2eTest, TruncatedBodyGivesTheRightBytes) {
  MountFixture mount(Spec("hfvfs-test/tiny-model"), Env());
  ASSERT_TRUE(mount.ok()) << mount.error();
  emu_->Control(
      "POST", "/_emulator/faults",
      R"([{"path_glob":"/lfs/*","kind":"truncate","after_bytes":5000,"times":2,"port":"cdn"},
                    {"path_glob":"*/resolve/*/tokenizer.json","kind":"drop","after_bytes":50,"times":1}])");
  EXPECT_EQ(Slurp(mount.path("onnx/model.onnx")),
            Slurp(FilesDir("model/hfvfs-test/tiny-model") / "onnx/model.onnx"));
  EXPECT_EQ(Slurp(mount.path("tokenizer.json")),
            Slurp(FilesDir("model/hfvfs-test/tiny-model") / "tokenizer.json"));
  json stats = json::parse(emu_->Stats());
  EXPECT_GE(stats["faults_fired"].size(), 1u) << stats["faults_fired"].dump();
}

TEST_F(HubE2eTest, FiveServerErrorsAreEioAndTheMountKeepsServing) {
  MountFixture mount(Spec("hfvfs-test/tiny-model"), Env());
  ASSERT_TRUE(mount.ok()) << mount.error();
  // The layer gives up after 1 + max_retries = 4 attempts (five 500s are EIO there: see
  // hub_layer_test). Linux then re-issues the failed readahead as one synchronous read, which
  // makes 4 more attempts, so through FUSE the server keeps failing for the app to see EIO.
  emu_->Control(
      "POST", "/_emulator/faults",
      R"({"path_glob":"*/resolve/*/config.json","kind":"status","status":500,"times":0})");
  int fd = open(mount.path("config.json").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  char buf[64];
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(pread(fd, buf, sizeof buf, 0), -1);
  EXPECT_EQ(errno, EIO);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(20));
  close(fd);
  json stats = json::parse(emu_->Stats());
  EXPECT_LE(stats["status"]["hub 500"].get<int>(), 8);  // bounded: two reads of 4 attempts
  EXPECT_EQ(Slurp(mount.path("README.md")),
            Slurp(FilesDir("model/hfvfs-test/tiny-model") / "README.md"));
}

}  // namespace
}  // namespace hfvfs::testing
