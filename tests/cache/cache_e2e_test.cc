// The cache through real FUSE mounts of `hub` + `cache` over the Hub emulator: one fetch per
// chunk under 16 readers, the budget, a stopped source, warmth and corruption across a
// remount, and kill -9 during fills. Every case runs twice: with 1 MiB chunks (read ahead one
// chunk per lower read at first) and with the layer's defaults (4 MiB chunks read ahead in
// 8 MiB segments), which is what users get.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/hub_emulator_process.h"
#include "support/mount_fixture.h"

namespace hfvfs::testing {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kWeightsSize = 24 * kMiB;

// The fixtures of make_cache_fixtures.py, generated once per build folder.
std::string Fixtures() {
  const std::string dir = std::string(HFVFS_BINARY_DIR) + "/cache-fixtures";
  const std::string cmd = "/usr/bin/python3 '" + std::string(HFVFS_SOURCE_DIR) +
                          "/tests/cache/make_cache_fixtures.py' --out '" + dir + "'";
  if (std::system(cmd.c_str()) != 0) return "";
  return dir;
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The bytes of weights.bin as the emulator serves them.
const std::string& Expected() {
  static const std::string bytes = [] {
    for (const auto& e : fs::recursive_directory_iterator(Fixtures() + "/repos")) {
      if (e.path().filename() == "weights.bin") return Slurp(e.path().string());
    }
    return std::string();
  }();
  return bytes;
}

uint64_t DiskUsage(const std::string& dir) {
  uint64_t total = 0;
  struct stat st {};
  if (lstat(dir.c_str(), &st) == 0) total += static_cast<uint64_t>(st.st_blocks) * 512;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (lstat(it->path().c_str(), &st) == 0) total += static_cast<uint64_t>(st.st_blocks) * 512;
  }
  return total;
}

// Reads a whole file with 1 MiB reads; "" and errno in `err` on failure.
std::string ReadWhole(const std::string& path, int* err = nullptr) {
  int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) {
    if (err) *err = errno;
    return "";
  }
  std::string out;
  std::vector<char> buf(kMiB);
  for (;;) {
    ssize_t n = read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (err) *err = errno;
      close(fd);
      return "";
    }
    if (n == 0) break;
    out.append(buf.data(), static_cast<size_t>(n));
  }
  close(fd);
  return out;
}

// Start offsets of the CDN range requests in the emulator's log, with their counts.
std::map<uint64_t, int> CdnRangeStarts(const HubEmulatorProcess& emu) {
  const std::string stats = emu.Stats();
  std::map<uint64_t, int> starts;
  static const std::regex kEntry(
      R"re("port":\s*"cdn",\s*"method":\s*"GET"[^}]*"range":\s*"bytes=(\d+)-)re");
  for (auto it = std::sregex_iterator(stats.begin(), stats.end(), kEntry);
       it != std::sregex_iterator(); ++it) {
    starts[std::stoull((*it)[1].str())]++;
  }
  return starts;
}

// One run of the suite: the spec's chunk_size ("" = the layer's default) and its bytes.
struct ChunkCase {
  const char* name;
  const char* chunk_size;
  uint64_t chunk_bytes;
  uint64_t small_budget;  // max_size of the budget test: above the least the layer takes
};

void PrintTo(const ChunkCase& c, std::ostream* os) { *os << c.name; }

class CacheE2eTest : public ::testing::TestWithParam<ChunkCase> {
 protected:
  void SetUp() override {
    ASSERT_FALSE(Expected().empty()) << "fixtures missing";
    ASSERT_EQ(Expected().size(), kWeightsSize);
    ASSERT_TRUE(emu_.Start(Fixtures())) << emu_.error();
    char pattern[] = "/tmp/hfvfs-cache-e2e-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    cache_dir_ = std::string(pattern) + "/cache";
  }
  void TearDown() override {
    emu_.Stop();
    std::error_code ec;
    fs::remove_all(fs::path(cache_dir_).parent_path(), ec);
  }

  // The stack with this run's chunk size.
  std::string Spec(const std::string& max_size) const {
    const std::string chunk_size = GetParam().chunk_size;
    return "[[layer]]\ntype = \"hub\"\nrepo = \"hfvfs-test/cache-e2e\"\nendpoint = \"" +
           emu_.endpoint() + "\"\n\n[[layer]]\ntype = \"cache\"\ndir = \"" + cache_dir_ +
           "\"\nmax_size = \"" + max_size + "\"\n" +
           (chunk_size.empty() ? "" : "chunk_size = \"" + chunk_size + "\"\n");
  }
  uint64_t Chunk() const { return GetParam().chunk_bytes; }

  // 16 threads read the cold file at once through a mount of `spec`: every byte is right and
  // each chunk (of `chunk` bytes) was asked of the CDN once.
  void SixteenReadersFetchEachChunkOnce(const std::string& spec, uint64_t chunk) {
    MountFixture mount(spec);
    ASSERT_TRUE(mount.ok()) << mount.error();
    std::vector<std::thread> readers;
    std::atomic<int> good{0};
    for (int i = 0; i < 16; ++i) {
      readers.emplace_back([&] {
        if (ReadWhole(mount.path("weights.bin")) == Expected()) good++;
      });
    }
    for (auto& t : readers) t.join();
    EXPECT_EQ(good, 16);
    const auto starts = CdnRangeStarts(emu_);
    ASSERT_FALSE(starts.empty());
    for (const auto& [offset, count] : starts) {
      EXPECT_EQ(offset % chunk, 0u) << "a request not at a chunk start: " << offset;
      EXPECT_EQ(count, 1) << "chunk at " << offset << " fetched " << count << " times";
    }
    EXPECT_LE(starts.size(), kWeightsSize / chunk);
  }

  HubEmulatorProcess emu_;
  std::string cache_dir_;
};

TEST_P(CacheE2eTest, SixteenReadersOfAColdFileCauseOneFetchPerChunk) {
  SixteenReadersFetchEachChunkOnce(Spec("64MiB"), Chunk());
}

// A small budget (the layer takes no less than 4 chunks + 2 MiB) and at least three times it
// read through the mount: the 24 MiB file once with 1 MiB chunks (budget 8 MiB), three times
// with 4 MiB chunks (budget 20 MiB; each pass evicts what the one before cached).
TEST_P(CacheE2eTest, BudgetHoldsAfterReadingThreeTimesMaxSize) {
  const uint64_t budget = GetParam().small_budget;
  MountFixture mount(Spec(std::to_string(budget / kMiB) + "MiB"));
  ASSERT_TRUE(mount.ok()) << mount.error();
  uint64_t read = 0;
  while (read < 3 * budget) {
    ASSERT_TRUE(ReadWhole(mount.path("weights.bin")) == Expected()) << "after " << read;
    read += kWeightsSize;
    EXPECT_LE(DiskUsage(cache_dir_), budget) << "after reading " << read << " bytes";
  }
  EXPECT_GT(DiskUsage(cache_dir_), budget / 2);
}

TEST_P(CacheE2eTest, AStoppedSourceServesCachedRangesAndEioForTheRest) {
  MountFixture mount(Spec("64MiB"));
  ASSERT_TRUE(mount.ok()) << mount.error();
  const std::string path = mount.path("weights.bin");
  int fd = open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM), 0);  // no kernel readahead
  std::vector<char> buf(kMiB);
  ASSERT_EQ(pread(fd, buf.data(), buf.size(), 0), static_cast<ssize_t>(kMiB));
  std::this_thread::sleep_for(std::chrono::seconds(1));  // read-ahead settles
  emu_.Stop();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // fills in flight fail
  // A chunk the cache does not hold (the cache's read-ahead after one read covers a segment
  // at most): chunk files are named <key>.<index>.
  std::set<uint64_t> cached;
  for (const auto& e : fs::recursive_directory_iterator(cache_dir_ + "/chunks")) {
    const std::string name = e.path().filename().string();
    const size_t dot = name.rfind('.');
    if (e.is_regular_file() && dot != std::string::npos) {
      cached.insert(std::stoull(name.substr(dot + 1)));
    }
  }
  EXPECT_TRUE(cached.count(0)) << "the chunk read is cached";
  uint64_t absent = kWeightsSize / Chunk() - 1;
  while (absent > 0 && cached.count(absent)) --absent;
  ASSERT_GT(absent, 0u) << "every chunk was cached; nothing left to fail";
  // Drop the kernel's pages, so the reads below reach the daemon.
  ASSERT_EQ(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
  std::fill(buf.begin(), buf.end(), 0);
  ASSERT_EQ(pread(fd, buf.data(), buf.size(), 0), static_cast<ssize_t>(kMiB));
  EXPECT_EQ(std::string(buf.data(), kMiB), Expected().substr(0, kMiB));
  EXPECT_EQ(pread(fd, buf.data(), 4096, absent * Chunk()), -1) << "chunk " << absent;
  EXPECT_EQ(errno, EIO);
  close(fd);
}

TEST_P(CacheE2eTest, WarmAfterRemountAndACorruptedChunkIsRefetched) {
  {
    MountFixture mount(Spec("64MiB"));
    ASSERT_TRUE(mount.ok()) << mount.error();
    ASSERT_TRUE(ReadWhole(mount.path("weights.bin")) == Expected());
    ASSERT_EQ(mount.Stop(), 0) << mount.log();
  }
  // Damage one chunk's data (past its 4 KiB header) on disk.
  std::string victim;
  for (const auto& e : fs::recursive_directory_iterator(cache_dir_ + "/chunks")) {
    if (e.is_regular_file() && e.file_size() > kMiB) {
      victim = e.path().string();
      break;
    }
  }
  ASSERT_FALSE(victim.empty());
  {
    std::fstream f(victim, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(4096 + 1000);
    f.put('\x5a');
    f.seekp(4096 + 1001);
    f.put('\xa5');
  }
  emu_.Control("POST", "/_emulator/reset");
  MountFixture mount(Spec("64MiB"));
  ASSERT_TRUE(mount.ok()) << mount.error();
  EXPECT_TRUE(ReadWhole(mount.path("weights.bin")) == Expected());
  const auto starts = CdnRangeStarts(emu_);
  EXPECT_EQ(starts.size(), 1u) << "only the damaged chunk comes from the source";
}

TEST_P(CacheE2eTest, KillDuringFillsLeavesAConsistentCache) {
  emu_.Control("POST", "/_emulator/faults",
               R"({"path_glob": "/lfs/*", "kind": "delay", "delay_ms": 150, "times": 0})");
  {
    MountFixture mount(Spec("64MiB"));
    ASSERT_TRUE(mount.ok()) << mount.error();
    std::thread reader([&] { (void)ReadWhole(mount.path("weights.bin")); });
    std::this_thread::sleep_for(std::chrono::milliseconds(1200));
    ASSERT_EQ(kill(mount.pid(), SIGKILL), 0);
    reader.join();
    mount.Stop();
  }
  emu_.Control("DELETE", "/_emulator/faults");
  MountFixture mount(Spec("64MiB"));
  ASSERT_TRUE(mount.ok()) << mount.error();
  EXPECT_TRUE(ReadWhole(mount.path("weights.bin")) == Expected());
  EXPECT_TRUE(fs::is_empty(cache_dir_ + "/tmp"));
  EXPECT_LE(DiskUsage(cache_dir_), 64 * kMiB);
}

TEST_P(CacheE2eTest, ASecondMountOfTheSameCacheFolderIsRefused) {
  MountFixture first(Spec("64MiB"));
  ASSERT_TRUE(first.ok()) << first.error();
  MountFixture second(Spec("64MiB"));
  EXPECT_FALSE(second.ok());
  EXPECT_NE(second.error().find("in use by another hfvfs mount"), std::string::npos)
      << second.error();
  EXPECT_TRUE(ReadWhole(first.path("notes.txt")) == "cached through hfvfs\n");
}

INSTANTIATE_TEST_SUITE_P(Chunks, CacheE2eTest,
                         ::testing::Values(ChunkCase{"Chunks1MiB", "1MiB", kMiB, 8 * kMiB},
                                           ChunkCase{"DefaultChunks", "", 4 * kMiB, 20 * kMiB}),
                         [](const ::testing::TestParamInfo<ChunkCase>& info) {
                           return std::string(info.param.name);
                         });

}  // namespace
}  // namespace hfvfs::testing
