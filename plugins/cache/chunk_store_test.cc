#include "chunk_store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "fake_lower_layer.h"
#include "test_dir.h"

namespace hfvfs::cache {
namespace {

using testing::DiskUsage;
using testing::PatternBytes;
using testing::TestDir;

constexpr uint64_t kChunk = 256 << 10;

// One fake file's chunks, with a fetch that counts calls.
struct FakeContent {
  std::string path = "models/weights.bin";
  std::string version = "v1";
  std::string bytes;
  std::atomic<int> fetches{0};
  std::atomic<int> delay_ms{0};
  std::atomic<bool> fail{false};

  explicit FakeContent(size_t size, uint32_t seed = 1) : bytes(PatternBytes(size, seed)) {}

  ChunkRef Ref(uint64_t index) const {
    ChunkRef ref;
    ref.id = ChunkId{MakeFileKey(path, version, kChunk), index};
    ref.length = std::min<uint64_t>(kChunk, bytes.size() - index * kChunk);
    ref.chunk_size = kChunk;
    ref.path = path;
    ref.version = version;
    return ref;
  }
  ChunkStore::Fetch Fetch(uint64_t index) {
    return [this, index](std::span<std::byte> out) -> Status {
      fetches++;
      if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms.load()));
      if (fail) return Err(EIO, "fake fetch failed");
      std::memcpy(out.data(), bytes.data() + index * kChunk, out.size());
      return Ok();
    };
  }
  // Reads [offset, offset+n) of chunk `index` through the store and checks the bytes.
  ::testing::AssertionResult ReadAndCheck(ChunkStore& store, uint64_t index, uint64_t offset,
                                          size_t n) {
    std::vector<std::byte> out(n);
    auto r = store.Read(Ref(index), offset, out, Fetch(index));
    if (!r) return ::testing::AssertionFailure() << r.error().message();
    if (*r != n) return ::testing::AssertionFailure() << "short: " << *r;
    if (std::memcmp(out.data(), bytes.data() + index * kChunk + offset, n) != 0) {
      return ::testing::AssertionFailure() << "wrong bytes";
    }
    return ::testing::AssertionSuccess();
  }
};

ChunkStoreOptions Options(const std::string& dir, uint64_t max_bytes = 64 << 20) {
  ChunkStoreOptions o;
  o.dir = dir;
  o.max_bytes = max_bytes;
  o.stage_cached_pages = true;  // chunks just written are in the page cache
  return o;
}

void FlipByte(const std::string& file, uint64_t offset) {
  int fd = ::open(file.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  char c = 0;
  ASSERT_EQ(::pread(fd, &c, 1, static_cast<off_t>(offset)), 1);
  c = static_cast<char>(c ^ 0x5A);
  ASSERT_EQ(::pwrite(fd, &c, 1, static_cast<off_t>(offset)), 1);
  ::close(fd);
}

// Writes back and drops the page cache of a file (clean pages only, hence the sync first).
void EvictPages(const std::string& file) {
  int fd = ::open(file.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::fdatasync(fd), 0);
  ASSERT_EQ(::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
  ::close(fd);
}

// Pages of `file` in the page cache, or -1 when the kernel cannot tell (cachestat, Linux 6.5).
int64_t PagesInCache(const std::string& file) {
  int fd = ::open(file.c_str(), O_RDONLY);
  if (fd < 0) return -1;
  uint64_t range[2] = {0, 0};
  uint64_t stat[5] = {};
  const long r = ::syscall(451, fd, range, stat, 0);
  ::close(fd);
  return r == 0 ? static_cast<int64_t>(stat[0]) : -1;
}

// True if files in `dir` can be read with O_DIRECT (not tmpfs).
bool DirectIoWorksIn(const std::string& dir) {
  const std::string probe = dir + "/direct-probe";
  std::ofstream(probe) << std::string(4096, 'x');
  int fd = ::open(probe.c_str(), O_RDONLY | O_DIRECT);
  bool works = false;
  if (fd >= 0) {
    void* buf = std::aligned_alloc(4096, 4096);
    works = ::pread(fd, buf, 4096, 0) == 4096;
    std::free(buf);
    ::close(fd);
  }
  ::unlink(probe.c_str());
  return works;
}

// A buffer of `n` bytes at `misalign` bytes past a 4 KiB boundary.
struct AlignedBytes {
  explicit AlignedBytes(size_t n, size_t misalign = 0)
      : base(static_cast<std::byte*>(std::aligned_alloc(4096, n + 4096))),
        size(n),
        offset(misalign) {}
  ~AlignedBytes() { std::free(base); }
  AlignedBytes(const AlignedBytes&) = delete;
  AlignedBytes& operator=(const AlignedBytes&) = delete;
  std::span<std::byte> span() { return {base + offset, size}; }
  std::byte* base;
  size_t size;
  size_t offset;
};

// Caches chunk 0 of `content` in `dir` (store closed again), then flips a byte near the end of
// its data: the header is untouched, so only the block checksum can tell. Returns the file.
std::string CacheThenCorruptChunkZero(const std::string& dir, FakeContent& content) {
  std::string chunk_file;
  {
    auto store = ChunkStore::Open(Options(dir));
    EXPECT_TRUE(store);
    if (!store) return chunk_file;
    EXPECT_TRUE(content.ReadAndCheck(**store, 0, 0, kChunk));
    chunk_file = (*store)->ChunkPath(content.Ref(0).id);
  }
  FlipByte(chunk_file, std::filesystem::file_size(chunk_file) - 10);
  return chunk_file;
}

TEST(ChunkStoreTest, MissThenHitFetchesOnce) {
  TestDir dir;
  auto store = ChunkStore::Open(Options(dir.path()));
  ASSERT_TRUE(store) << store.error().message();
  FakeContent content(3 * kChunk + 1000);
  EXPECT_TRUE(content.ReadAndCheck(**store, 1, 100, 5000));
  EXPECT_TRUE(content.ReadAndCheck(**store, 1, 0, kChunk));
  EXPECT_TRUE(content.ReadAndCheck(**store, 3, 10, 990));  // the short last chunk
  EXPECT_EQ(content.fetches, 2);
  EXPECT_EQ((*store)->counters().misses, 2);
  EXPECT_EQ((*store)->counters().hits, 1);
  EXPECT_EQ((*store)->chunk_count(), 2u);
  EXPECT_TRUE(std::filesystem::exists((*store)->ChunkPath(content.Ref(1).id)));
}

TEST(ChunkStoreTest, ReadOutsideTheChunkIsRefused) {
  TestDir dir;
  auto store = ChunkStore::Open(Options(dir.path()));
  ASSERT_TRUE(store);
  FakeContent content(kChunk);
  std::vector<std::byte> out(10);
  auto r = (*store)->Read(content.Ref(0), kChunk - 5, out, content.Fetch(0));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.code(), EINVAL);
  EXPECT_EQ(content.fetches, 0);
}

TEST(ChunkStoreTest, ConcurrentReadersOfOneChunkCauseOneFetch) {
  TestDir dir;
  auto store = ChunkStore::Open(Options(dir.path()));
  ASSERT_TRUE(store);
  FakeContent content(2 * kChunk);
  content.delay_ms = 100;
  std::vector<std::thread> readers;
  std::atomic<int> good{0};
  for (int i = 0; i < 16; ++i) {
    readers.emplace_back([&, i] {
      if (content.ReadAndCheck(**store, 1, static_cast<uint64_t>(i) * 4096, 4096)) good++;
    });
  }
  for (auto& t : readers) t.join();
  EXPECT_EQ(good, 16);
  EXPECT_EQ(content.fetches, 1);
  EXPECT_EQ((*store)->counters().misses, 1);
  EXPECT_GE((*store)->counters().fill_waits, 1);
}

// Readers that take lent bytes get the fill's buffer (the downloader's and every waiter's) and
// their own buffer untouched; once the chunk is on disk the bytes land in their buffer. A lent
// buffer stays valid while held, even after its chunk is dropped and refetched.
TEST(ChunkStoreTest, LentReadsShareTheFillBufferAndKeepItAlive) {
  TestDir dir;
  auto store = ChunkStore::Open(Options(dir.path()));
  ASSERT_TRUE(store);
  FakeContent content(2 * kChunk);
  content.delay_ms = 100;
  const std::byte kUntouched{0x5A};
  std::vector<LentBytes> lent(8);
  std::vector<std::vector<std::byte>> outs(8, std::vector<std::byte>(4096, kUntouched));
  std::vector<std::thread> readers;
  for (size_t i = 0; i < lent.size(); ++i) {
    readers.emplace_back([&, i] {
      auto r = (*store)->Read(content.Ref(1), i * 4096, outs[i], content.Fetch(1), &lent[i]);
      EXPECT_TRUE(r) << r.error().message();
    });
  }
  for (auto& t : readers) t.join();
  EXPECT_EQ(content.fetches, 1);
  for (size_t i = 0; i < lent.size(); ++i) {
    ASSERT_EQ(lent[i].bytes.size(), 4096u) << "reader " << i << " got no lent bytes";
    EXPECT_NE(lent[i].owner, nullptr);
    EXPECT_EQ(std::memcmp(lent[i].bytes.data(), content.bytes.data() + kChunk + i * 4096, 4096), 0)
        << "reader " << i;
    EXPECT_EQ(outs[i][0], kUntouched) << "reader " << i << ": its buffer was written";
    EXPECT_EQ(outs[i][4095], kUntouched) << "reader " << i << ": its buffer was written";
  }
  // Same buffer for all: lent from one fill, not copied per reader.
  EXPECT_EQ(lent[0].owner, lent[7].owner);
  (*store)->WaitForWrites();
  // On disk now: read into the caller's buffer, nothing lent.
  LentBytes from_disk;
  std::vector<std::byte> out(4096);
  auto r = (*store)->Read(content.Ref(1), 8192, out, content.Fetch(1), &from_disk);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_TRUE(from_disk.bytes.empty());
  EXPECT_EQ(std::memcmp(out.data(), content.bytes.data() + kChunk + 8192, 4096), 0);
  // Dropped and fetched again (a new buffer) while the first is still lent.
  (*store)->InvalidatePath(content.path);
  content.delay_ms = 0;
  EXPECT_TRUE(content.ReadAndCheck(**store, 1, 0, kChunk));
  EXPECT_EQ(content.fetches, 2);
  EXPECT_EQ(std::memcmp(lent[3].bytes.data(), content.bytes.data() + kChunk + 3 * 4096, 4096), 0);
}

TEST(ChunkStoreTest, FailedFetchWakesWaitersWithTheErrorAndIsRetriedLater) {
  TestDir dir;
  auto store = ChunkStore::Open(Options(dir.path()));
  ASSERT_TRUE(store);
  FakeContent content(kChunk);
  content.delay_ms = 100;
  content.fail = true;
  std::vector<std::thread> readers;
  std::atomic<int> eio{0};
  for (int i = 0; i < 8; ++i) {
    readers.emplace_back([&] {
      std::vector<std::byte> out(100);
      auto r = (*store)->Read(content.Ref(0), 0, out, content.Fetch(0));
      if (!r && r.code() == EIO) eio++;
    });
  }
  for (auto& t : readers) t.join();
  EXPECT_EQ(eio, 8);
  EXPECT_EQ(content.fetches, 1);
  EXPECT_FALSE((*store)->Contains(content.Ref(0).id));
  content.fail = false;
  content.delay_ms = 0;
  EXPECT_TRUE(content.ReadAndCheck(**store, 0, 0, 100));
  EXPECT_EQ(content.fetches, 2);
}

TEST(ChunkStoreTest, BudgetHoldsAsDuCountsItAndEvictsLeastRecentlyUsed) {
  TestDir dir;
  const uint64_t budget = 3 << 20;
  auto store = ChunkStore::Open(Options(dir.path(), budget));
  ASSERT_TRUE(store);
  FakeContent content(64 * kChunk);  // 16 MiB through a 3 MiB cache
  for (uint64_t i = 0; i < 64; ++i) {
    ASSERT_TRUE(content.ReadAndCheck(**store, i, 0, 4096));
    // Chunk 0 is kept warm: it must survive every eviction.
    ASSERT_TRUE(content.ReadAndCheck(**store, 0, 4096, 4096));
    ASSERT_LE((*store)->used_bytes(), budget);
    ASSERT_LE(DiskUsage(dir.path()), budget) << "after chunk " << i;
  }
  EXPECT_GT((*store)->counters().evictions, 40);
  EXPECT_TRUE((*store)->Contains(content.Ref(0).id));
  EXPECT_FALSE((*store)->Contains(content.Ref(1).id));
  EXPECT_TRUE((*store)->Contains(content.Ref(63).id));
  EXPECT_EQ(content.fetches, 64);
}

TEST(ChunkStoreTest, WarmAfterReopen) {
  TestDir dir;
  FakeContent content(4 * kChunk);
  {
    auto store = ChunkStore::Open(Options(dir.path()));
    ASSERT_TRUE(store);
    for (uint64_t i = 0; i < 4; ++i) ASSERT_TRUE(content.ReadAndCheck(**store, i, 0, kChunk));
  }
  const uint64_t used_before = DiskUsage(dir.path());
  auto store = ChunkStore::Open(Options(dir.path()));
  ASSERT_TRUE(store);
  EXPECT_EQ((*store)->chunk_count(), 4u);
  EXPECT_EQ((*store)->used_bytes(), used_before);
  for (uint64_t i = 0; i < 4; ++i) EXPECT_TRUE(content.ReadAndCheck(**store, i, 7, kChunk - 7));
  EXPECT_EQ(content.fetches, 4);  // none since the reopen
  EXPECT_EQ((*store)->counters().hits, 4);
}

TEST(ChunkStoreTest, ReopenWithASmallerBudgetEvicts) {
  TestDir dir;
  FakeContent content(16 * kChunk);
  {
    auto store = ChunkStore::Open(Options(dir.path()));
    ASSERT_TRUE(store);
    for (uint64_t i = 0; i < 16; ++i) ASSERT_TRUE(content.ReadAndCheck(**store, i, 0, 10));
  }
  auto store = ChunkStore::Open(Options(dir.path(), 1 << 20));
  ASSERT_TRUE(store);
  EXPECT_LE(DiskUsage(dir.path()), uint64_t{1} << 20);
  EXPECT_LT((*store)->chunk_count(), 16u);
}

TEST(ChunkStoreTest, CrashLeftoversAndTornChunksAreDiscardedAtOpen) {
  TestDir dir;
  FakeContent content(3 * kChunk);
  std::string torn_path;
  {
    auto store = ChunkStore::Open(Options(dir.path()));
    ASSERT_TRUE(store);
    for (uint64_t i = 0; i < 3; ++i) ASSERT_TRUE(content.ReadAndCheck(**store, i, 0, 10));
    torn_path = (*store)->ChunkPath(content.Ref(1).id);
  }
  // A fill interrupted before its rename, and a chunk cut short (as a crash of the machine
  // without fsync could leave it).
  std::ofstream(dir.path() + "/tmp/123-4.tmp") << "half a chunk";
  std::filesystem::resize_file(torn_path, std::filesystem::file_size(torn_path) / 2);
  std::ofstream(dir.path() + "/chunks/zz-not-a-chunk") << "junk";

  auto store = ChunkStore::Open(Options(dir.path()));
  ASSERT_TRUE(store);
  EXPECT_TRUE(std::filesystem::is_empty(dir.path() + "/tmp"));
  EXPECT_FALSE(std::filesystem::exists(torn_path));
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/chunks/zz-not-a-chunk"));
  EXPECT_EQ((*store)->chunk_count(), 2u);
  EXPECT_GE((*store)->counters().corrupt_chunks, 1);
  EXPECT_TRUE(content.ReadAndCheck(**store, 1, 0, kChunk));
  EXPECT_EQ(content.fetches, 4);  // the torn one, again
  EXPECT_EQ(DiskUsage(dir.path()), (*store)->used_bytes());
}

TEST(ChunkStoreTest, CorruptedDataIsDetectedAfterReopenAndRefetched) {
  TestDir dir;
  FakeContent content(kChunk);
  const std::string chunk_file = CacheThenCorruptChunkZero(dir.path(), content);
  auto store = ChunkStore::Open(Options(dir.path()));
  ASSERT_TRUE(store);
  EXPECT_EQ((*store)->chunk_count(), 1u);
  EXPECT_TRUE(content.ReadAndCheck(**store, 0, 0, 4096));  // an intact block: served
  EXPECT_EQ(content.fetches, 1);
  EXPECT_TRUE(content.ReadAndCheck(**store, 0, kChunk - 100, 100));  // the bad block
  EXPECT_EQ(content.fetches, 2);
  EXPECT_EQ((*store)->counters().corrupt_chunks, 1);
  EXPECT_TRUE(content.ReadAndCheck(**store, 0, kChunk - 100, 100));
  EXPECT_EQ(content.fetches, 2);
}

TEST(ChunkStoreTest, CorruptionWhileOpenIsDetectedWhenTheFileChanges) {
  TestDir dir;
  auto store = ChunkStore::Open(Options(dir.path()));
  ASSERT_TRUE(store);
  FakeContent content(kChunk);
  ASSERT_TRUE(content.ReadAndCheck(**store, 0, 0, kChunk));
  ASSERT_TRUE(content.ReadAndCheck(**store, 0, 0, kChunk));  // records the file identity
  const std::string chunk_file = (*store)->ChunkPath(content.Ref(0).id);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  FlipByte(chunk_file, 4096 + 10);  // first data byte block (header is one 4 KiB page)
  struct timespec later[2] = {{0, UTIME_OMIT}, {::time(nullptr) + 5, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, chunk_file.c_str(), later, 0), 0);
  EXPECT_TRUE(content.ReadAndCheck(**store, 0, 0, 100));
  EXPECT_EQ(content.fetches, 2);
  EXPECT_EQ((*store)->counters().corrupt_chunks, 1);
}

TEST(ChunkStoreTest, ASecondOpenOfTheFolderIsRefused) {
  TestDir dir;
  auto first = ChunkStore::Open(Options(dir.path()));
  ASSERT_TRUE(first);
  auto second = ChunkStore::Open(Options(dir.path()));
  ASSERT_FALSE(second);
  EXPECT_EQ(second.code(), EBUSY);
  EXPECT_NE(second.error().message().find(std::to_string(::getpid())), std::string::npos)
      << second.error().message();
  EXPECT_NE(second.error().message().find(dir.path()), std::string::npos);
}

TEST(ChunkStoreTest, AnUnusableFolderDegradesToFetchingEveryTime) {
  TestDir dir;
  std::ofstream(dir.path() + "/file") << "x";
  auto store = ChunkStore::Open(Options(dir.path() + "/file/cache"));
  ASSERT_TRUE(store) << store.error().message();
  EXPECT_TRUE((*store)->degraded());
  FakeContent content(kChunk);
  EXPECT_TRUE(content.ReadAndCheck(**store, 0, 0, 100));
  EXPECT_TRUE(content.ReadAndCheck(**store, 0, 0, 100));
  EXPECT_EQ(content.fetches, 2);
  EXPECT_EQ((*store)->chunk_count(), 0u);
}

TEST(ChunkStoreTest, FillErrorsOfTheFolderDegradeToTheLowerLayer) {
  TestDir dir;
  auto store = ChunkStore::Open(Options(dir.path()));
  ASSERT_TRUE(store);
  // The tmp folder disappears (as a full or failing disk would refuse writes there).
  std::filesystem::remove_all(dir.path() + "/tmp");
  FakeContent content(2 * kChunk);
  EXPECT_TRUE(content.ReadAndCheck(**store, 0, 0, 100));
  EXPECT_TRUE(content.ReadAndCheck(**store, 1, 0, 100));
  EXPECT_EQ((*store)->counters().disk_errors, 2);
  EXPECT_EQ((*store)->chunk_count(), 0u);
  EXPECT_GE((*store)->used_bytes(), DiskUsage(dir.path()));  // never undercounts
}

TEST(ChunkStoreTest, NewVersionIsANewKeyAndInvalidationDropsEveryVersion) {
  TestDir dir;
  auto store = ChunkStore::Open(Options(dir.path()));
  ASSERT_TRUE(store);
  FakeContent v1(kChunk, 1);
  FakeContent v2(kChunk, 2);
  v2.version = "v2";
  ASSERT_TRUE(v1.ReadAndCheck(**store, 0, 0, 100));
  ASSERT_TRUE(v2.ReadAndCheck(**store, 0, 0, 100));  // not v1's bytes
  EXPECT_EQ(v2.fetches, 1);
  EXPECT_EQ((*store)->chunk_count(), 2u);
  FakeContent other(kChunk, 3);
  other.path = "models/weights.bin.other";
  ASSERT_TRUE(other.ReadAndCheck(**store, 0, 0, 100));
  (*store)->InvalidatePath("models/weights.bin");
  EXPECT_EQ((*store)->chunk_count(), 1u);
  EXPECT_TRUE((*store)->Contains(other.Ref(0).id));
  (*store)->InvalidateTree("models");
  EXPECT_EQ((*store)->chunk_count(), 0u);
  EXPECT_EQ(DiskUsage(dir.path()), (*store)->used_bytes());
}

TEST(ChunkStoreTest, InvalidationSurvivesAReopen) {
  TestDir dir;
  FakeContent content(kChunk);
  {
    auto store = ChunkStore::Open(Options(dir.path()));
    ASSERT_TRUE(store);
    ASSERT_TRUE(content.ReadAndCheck(**store, 0, 0, 10));
  }
  auto store = ChunkStore::Open(Options(dir.path()));
  ASSERT_TRUE(store);
  (*store)->InvalidatePath(content.path);  // known from the header after the restart
  EXPECT_EQ((*store)->chunk_count(), 0u);
}

TEST(ChunkStoreTest, PrefetchedChunksEvictedUnreadCountAsWaste) {
  TestDir dir;
  auto store = ChunkStore::Open(Options(dir.path(), 2 << 20));
  ASSERT_TRUE(store);
  FakeContent content(32 * kChunk);
  ASSERT_TRUE((*store)->Prefetch(content.Ref(0), content.Fetch(0)));
  (*store)->WaitForWrites();
  ASSERT_TRUE((*store)->Prefetch(content.Ref(0), content.Fetch(0)));  // already there
  EXPECT_EQ(content.fetches, 1);
  ASSERT_TRUE(content.ReadAndCheck(**store, 0, 0, 10));  // read: not waste
  for (uint64_t i = 1; i < 32; ++i) {
    ASSERT_TRUE((*store)->Prefetch(content.Ref(i), content.Fetch(i)));
  }
  (*store)->WaitForWrites();  // read-ahead fills are written (and evict) on the writer thread
  EXPECT_GT((*store)->counters().evictions, 0);
  EXPECT_EQ((*store)->counters().readahead_waste,
            static_cast<int64_t>(((*store)->counters().evictions - 1) * kChunk));
  EXPECT_EQ((*store)->counters().prefetches, 32);
}

TEST(ChunkStoreTest, StagedChunksAreServedFromMemoryUntilReadToTheEnd) {
  TestDir dir;
  FakeContent content(3 * kChunk + 5000);
  {
    auto store = ChunkStore::Open(Options(dir.path()));
    ASSERT_TRUE(store);
    for (uint64_t i = 0; i < 4; ++i) ASSERT_TRUE(content.ReadAndCheck(**store, i, 0, 10));
  }
  auto store = ChunkStore::Open(Options(dir.path()));  // remount: nothing verified yet
  ASSERT_TRUE(store);
  ChunkStore& s = **store;
  FakeContent other(kChunk);
  other.path = "other.bin";
  EXPECT_FALSE(s.Stage(other.Ref(0)));  // not cached: nothing staged
  ASSERT_TRUE(s.Stage(content.Ref(1)));
  ASSERT_TRUE(s.Stage(content.Ref(3)));  // the short last chunk
  EXPECT_TRUE(s.Stage(content.Ref(1)));  // already staged
  EXPECT_EQ(s.staged_bytes(), kChunk + 5000);
  EXPECT_EQ(s.counters().staged, 2);
  // The staged copy answers even if the file goes away (it was verified when read).
  const std::string file1 = s.ChunkPath(content.Ref(1).id);
  ASSERT_EQ(::truncate(file1.c_str(), 0), 0);
  EXPECT_TRUE(content.ReadAndCheck(s, 1, 100, 4096));
  EXPECT_EQ(s.staged_bytes(), kChunk + 5000);
  EXPECT_TRUE(content.ReadAndCheck(s, 1, kChunk - 4096, 4096));  // the end: dropped
  EXPECT_EQ(s.staged_bytes(), 5000u);
  EXPECT_TRUE(content.ReadAndCheck(s, 3, 0, 5000));
  EXPECT_EQ(s.staged_bytes(), 0u);
  EXPECT_EQ(content.fetches, 4);
  EXPECT_EQ(s.counters().staged_unread, 0);
  EXPECT_EQ(s.counters().corrupt_chunks, 0);
}

TEST(ChunkStoreTest, StagingDetectsCorruptionAndTheChunkIsRefetched) {
  TestDir dir;
  FakeContent content(2 * kChunk);
  auto store = ChunkStore::Open(Options(dir.path()));
  ASSERT_TRUE(store);
  ChunkStore& s = **store;
  ASSERT_TRUE(content.ReadAndCheck(s, 1, 0, 10));
  const std::string file = s.ChunkPath(content.Ref(1).id);
  FlipByte(file, std::filesystem::file_size(file) - 10);
  EXPECT_FALSE(s.Stage(content.Ref(1)));
  EXPECT_EQ(s.counters().corrupt_chunks, 1);
  EXPECT_FALSE(s.Contains(content.Ref(1).id));
  EXPECT_EQ(s.staged_bytes(), 0u);
  EXPECT_TRUE(content.ReadAndCheck(s, 1, kChunk - 100, 100));
  EXPECT_EQ(content.fetches, 2);
}

TEST(ChunkStoreTest, TheStageBudgetHoldsAndInvalidationDropsStagedCopies) {
  TestDir dir;
  ChunkStoreOptions options = Options(dir.path());
  options.stage_max_bytes = 2 * kChunk;
  auto store = ChunkStore::Open(options);
  ASSERT_TRUE(store);
  ChunkStore& s = **store;
  FakeContent content(4 * kChunk);
  for (uint64_t i = 0; i < 4; ++i) ASSERT_TRUE(content.ReadAndCheck(s, i, 0, 10));
  EXPECT_TRUE(s.Stage(content.Ref(0)));
  EXPECT_TRUE(s.Stage(content.Ref(1)));
  EXPECT_FALSE(s.Stage(content.Ref(2)));  // full, and the staged ones are fresh
  EXPECT_EQ(s.staged_bytes(), 2 * kChunk);
  s.InvalidatePath(content.path);
  EXPECT_EQ(s.staged_bytes(), 0u);
  EXPECT_EQ(s.counters().staged_unread, 2);
  EXPECT_EQ(s.chunk_count(), 0u);
}

TEST(ChunkStoreTest, ReadersOfAChunkBeingStagedWaitForIt) {
  TestDir dir;
  FakeContent content(kChunk);
  auto store = ChunkStore::Open(Options(dir.path()));
  ASSERT_TRUE(store);
  ChunkStore& s = **store;
  ASSERT_TRUE(content.ReadAndCheck(s, 0, 0, 10));
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  threads.emplace_back([&] { s.Stage(content.Ref(0)); });
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      if (content.ReadAndCheck(s, 0, static_cast<uint64_t>(i) * 8192, 8192)) good++;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(good, 8);
  EXPECT_EQ(content.fetches, 1);
}

TEST(ChunkStoreTest, ChunksInThePageCacheAreLeftToTheReader) {
  TestDir dir;
  ChunkStoreOptions options = Options(dir.path());
  options.stage_cached_pages = false;
  auto store = ChunkStore::Open(options);
  ASSERT_TRUE(store);
  FakeContent content(kChunk);
  ASSERT_TRUE(content.ReadAndCheck(**store, 0, 0, 10));  // just written: in the page cache
  // cachestat(2) (Linux 6.5) tells; an older kernel cannot, and the chunk is staged.
  int fd = ::open((*store)->ChunkPath(content.Ref(0).id).c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  uint64_t range[2] = {0, 0};
  uint64_t stat[5] = {};
  const bool kernel_tells = ::syscall(451, fd, range, stat, 0) == 0;
  ::close(fd);
  EXPECT_EQ((*store)->Stage(content.Ref(0)), !kernel_tells);
  EXPECT_EQ((*store)->counters().staged, kernel_tells ? 0 : 1);
  EXPECT_TRUE(content.ReadAndCheck(**store, 0, 0, kChunk));
}

TEST(ChunkStoreTest, ReusedBuffersNeverLeakBytesOfEarlierFetches) {
  TestDir dir;
  ChunkStoreOptions options = Options(dir.path());
  options.buffer_pool_bytes = 8 * kChunk;
  FakeContent first(6 * kChunk, 3);
  // A short last chunk (over half a chunk) reuses a chunk-sized mapping.
  FakeContent second(5 * kChunk + kChunk / 2 + 777, 4);
  second.path = "other/file.bin";
  {
    auto store = ChunkStore::Open(options);
    ASSERT_TRUE(store);
    std::vector<ChunkRef> refs;
    for (uint64_t i = 0; i < 6; ++i) refs.push_back(first.Ref(i));
    ASSERT_TRUE((*store)->PrefetchRun(refs, [&](uint64_t index, std::span<std::byte> out) {
      std::memcpy(out.data(), first.bytes.data() + index * kChunk, out.size());
      return Ok();
    }));
    (*store)->WaitForWrites();
    for (uint64_t i = 0; i < 6; ++i)
      ASSERT_TRUE((*store)->Prefetch(second.Ref(i), second.Fetch(i)));
    (*store)->WaitForWrites();
    for (uint64_t i = 0; i < 6; ++i) EXPECT_TRUE(first.ReadAndCheck(**store, i, 0, kChunk));
    for (uint64_t i = 0; i < 6; ++i) {
      EXPECT_TRUE(second.ReadAndCheck(**store, i, 0, second.Ref(i).length)) << i;
    }
  }
  auto store = ChunkStore::Open(options);  // what reached the disk is right too
  ASSERT_TRUE(store);
  for (uint64_t i = 0; i < 6; ++i) {
    EXPECT_TRUE(second.ReadAndCheck(**store, i, 0, second.Ref(i).length)) << i;
    EXPECT_TRUE(first.ReadAndCheck(**store, i, 0, kChunk)) << i;
  }
  EXPECT_EQ(second.fetches, 6);
  EXPECT_EQ((*store)->counters().corrupt_chunks, 0);
}

}  // namespace
}  // namespace hfvfs::cache

namespace hfvfs::cache {
namespace {

using testing::TestDir;

TEST(ChunkStoreTest, LargeAlignedReadsOfChunksNotInThePageCacheBypassIt) {
  TestDir dir;
  const bool direct_io = DirectIoWorksIn(dir.path());
  auto store = ChunkStore::Open(Options(dir.path()));
  ASSERT_TRUE(store);
  FakeContent content(2 * kChunk);
  ASSERT_TRUE(content.ReadAndCheck(**store, 0, 0, 10));  // fetched and written
  ASSERT_TRUE(content.ReadAndCheck(**store, 1, 0, 10));
  const std::string file0 = (*store)->ChunkPath(content.Ref(0).id);

  // Just written, so in the page cache: read from there, never with O_DIRECT.
  AlignedBytes aligned(kChunk);
  ASSERT_TRUE((*store)->Read(content.Ref(0), 0, aligned.span(), content.Fetch(0)));
  EXPECT_EQ((*store)->counters().direct_reads, 0);

  EvictPages(file0);
  std::memset(aligned.base, 0, kChunk);
  auto n = (*store)->Read(content.Ref(0), 0, aligned.span(), content.Fetch(0));
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, kChunk);
  EXPECT_EQ(std::memcmp(aligned.base, content.bytes.data(), kChunk), 0);
  EXPECT_EQ((*store)->counters().direct_reads, direct_io ? 1 : 0);
  if (direct_io && PagesInCache(file0) >= 0) {
    EXPECT_EQ(PagesInCache(file0), 0);  // and it stayed out of the page cache
  }

  // A buffer that O_DIRECT cannot take (not 512-byte aligned) or a small read: page cache.
  EvictPages(file0);
  AlignedBytes misaligned(kChunk, 8);
  ASSERT_TRUE((*store)->Read(content.Ref(0), 0, misaligned.span(), content.Fetch(0)));
  EXPECT_EQ(std::memcmp(misaligned.span().data(), content.bytes.data(), kChunk), 0);
  EvictPages(file0);
  AlignedBytes small(4096);
  ASSERT_TRUE((*store)->Read(content.Ref(0), 8192, small.span(), content.Fetch(0)));
  EXPECT_EQ(std::memcmp(small.base, content.bytes.data() + 8192, 4096), 0);
  EXPECT_EQ((*store)->counters().direct_reads, direct_io ? 1 : 0);
  EXPECT_EQ(content.fetches, 2);  // every read above was served from the cache
}

TEST(ChunkStoreTest, ASmallReadOfAChunkNotInThePageCacheReadsItsWholeBlockAround) {
  TestDir dir;
  auto store = ChunkStore::Open(Options(dir.path()));
  ASSERT_TRUE(store);
  FakeContent content(kChunk);
  ASSERT_TRUE(content.ReadAndCheck(**store, 0, 0, kChunk));  // written and verified
  const std::string file = (*store)->ChunkPath(content.Ref(0).id);
  EvictPages(file);
  if (PagesInCache(file) != 0) {  // no cachestat (or tmpfs): only correctness can be checked
    EXPECT_TRUE(content.ReadAndCheck(**store, 0, 70000, 4096));
    return;
  }
  EXPECT_TRUE(content.ReadAndCheck(**store, 0, 70000, 4096));  // in block 1 (64 KiB blocks)
  const int64_t block_pages = (64 << 10) / 4096;
  int64_t pages = 0;
  for (int i = 0; i < 200 && pages < block_pages; ++i) {
    pages = PagesInCache(file);
    if (pages < block_pages) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_GE(pages, block_pages);
  EXPECT_EQ(content.fetches, 1);
}

TEST(ChunkStoreTest, DirectReadsCanBeTurnedOff) {
  TestDir dir;
  ChunkStoreOptions options = Options(dir.path());
  options.direct_read_min = 0;
  auto store = ChunkStore::Open(options);
  ASSERT_TRUE(store);
  FakeContent content(kChunk);
  ASSERT_TRUE(content.ReadAndCheck(**store, 0, 0, 10));
  EvictPages((*store)->ChunkPath(content.Ref(0).id));
  AlignedBytes aligned(kChunk);
  ASSERT_TRUE((*store)->Read(content.Ref(0), 0, aligned.span(), content.Fetch(0)));
  EXPECT_EQ(std::memcmp(aligned.base, content.bytes.data(), kChunk), 0);
  EXPECT_EQ((*store)->counters().direct_reads, 0);
}

TEST(ChunkStoreTest, DirectReadsVerifyChecksumsAndRefetchACorruptChunk) {
  TestDir dir;
  FakeContent content(kChunk);
  const std::string chunk_file = CacheThenCorruptChunkZero(dir.path(), content);
  EvictPages(chunk_file);
  auto store = ChunkStore::Open(Options(dir.path()));
  ASSERT_TRUE(store);
  AlignedBytes aligned(kChunk);
  auto n = (*store)->Read(content.Ref(0), 0, aligned.span(), content.Fetch(0));
  ASSERT_TRUE(n);
  EXPECT_EQ(std::memcmp(aligned.base, content.bytes.data(), kChunk), 0);
  EXPECT_EQ((*store)->counters().corrupt_chunks, 1);
  EXPECT_EQ(content.fetches, 2);
}

TEST(ChunkStoreTest, ReadAheadOfCachedChunksIsNotAdvisedWhileReadsGoDirect) {
  TestDir dir;
  if (PagesInCache(dir.path()) < 0 || !DirectIoWorksIn(dir.path())) {
    // Without cachestat or O_DIRECT only correctness can be checked.
    auto store = ChunkStore::Open(Options(dir.path()));
    ASSERT_TRUE(store);
    FakeContent content(kChunk);
    ASSERT_TRUE(content.ReadAndCheck(**store, 0, 0, kChunk));
    (*store)->Advise(content.Ref(0).id);
    EXPECT_TRUE(content.ReadAndCheck(**store, 0, 0, kChunk));
    return;
  }
  auto store = ChunkStore::Open(Options(dir.path()));
  ASSERT_TRUE(store);
  FakeContent content(2 * kChunk);
  ASSERT_TRUE(content.ReadAndCheck(**store, 0, 0, 10));
  ASSERT_TRUE(content.ReadAndCheck(**store, 1, 0, 10));
  const std::string file0 = (*store)->ChunkPath(content.Ref(0).id);
  EvictPages(file0);
  (*store)->Advise(content.Ref(0).id);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(PagesInCache(file0), 0);

  // A large read of an odd length (a file's tail) from an aligned buffer changes nothing.
  AlignedBytes tail(kChunk - 100);
  ASSERT_TRUE((*store)->Read(content.Ref(1), 100, tail.span(), content.Fetch(1)));
  EXPECT_EQ(std::memcmp(tail.base, content.bytes.data() + kChunk + 100, kChunk - 100), 0);
  (*store)->Advise(content.Ref(0).id);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(PagesInCache(file0), 0);

  // A large read that cannot go direct (a misaligned buffer) brings WILLNEED back.
  AlignedBytes misaligned(kChunk, 8);
  ASSERT_TRUE((*store)->Read(content.Ref(1), 0, misaligned.span(), content.Fetch(1)));
  (*store)->Advise(content.Ref(0).id);
  bool cached = false;
  for (int i = 0; i < 200 && !cached; ++i) {
    cached = PagesInCache(file0) > 0;
    if (!cached) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(cached);
}

}  // namespace
}  // namespace hfvfs::cache
