#include "cache_layer.h"

#include <fcntl.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <map>
#include <thread>
#include <vector>

#include "fake_lower_layer.h"
#include "test_dir.h"

namespace hfvfs::cache {
namespace {

using testing::DiskUsage;
using testing::FakeLowerLayer;
using testing::PatternBytes;
using testing::TestDir;

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;
constexpr uint64_t kChunk = 1 * kMiB;

class CacheLayerTest : public ::testing::Test {
 protected:
  CacheOptions Options() {
    CacheOptions o;
    o.dir = dir_.path();
    o.max_size = 256 * kMiB;
    o.chunk_size = kChunk;
    o.readahead.min = 1 * kMiB;
    o.readahead.max = 8 * kMiB;
    o.fetch_concurrency = 4;
    return o;
  }

  std::shared_ptr<CacheLayer> Start(CacheOptions options) {
    auto layer = std::make_shared<CacheLayer>(lower_, std::move(options));
    Status s = layer->start();
    EXPECT_TRUE(s) << (s ? "" : s.error().message());
    return layer;
  }

  std::map<std::string, int64_t> Counters(const CacheLayer& layer) {
    std::vector<std::pair<std::string, int64_t>> out;
    layer.counters(out);
    return {out.begin(), out.end()};
  }

  // Reads [offset, offset + n) through `file` and compares with `expected`.
  static ::testing::AssertionResult ReadMatches(File& file, uint64_t offset, size_t n,
                                                const std::string& expected) {
    std::vector<std::byte> buf(n);
    auto r = file.read(offset, buf);
    if (!r) return ::testing::AssertionFailure() << r.error().message();
    const size_t want = offset >= expected.size() ? 0 : std::min(n, expected.size() - offset);
    if (*r != want) return ::testing::AssertionFailure() << "got " << *r << " want " << want;
    if (want && std::memcmp(buf.data(), expected.data() + offset, want) != 0) {
      return ::testing::AssertionFailure() << "wrong bytes at " << offset;
    }
    return ::testing::AssertionSuccess();
  }

  // Reads the whole file sequentially in `step` reads.
  static ::testing::AssertionResult ReadAll(File& file, const std::string& expected,
                                            size_t step = 128 * kKiB) {
    for (uint64_t off = 0; off < expected.size() + step; off += step) {
      auto r = ReadMatches(file, off, step, expected);
      if (!r) return r;
    }
    return ::testing::AssertionSuccess();
  }

  // Waits until read-ahead is idle (nothing queued and no new fetches for a while).
  void Settle(CacheLayer& layer) {
    int last = -1;
    int quiet = 0;
    for (int i = 0; i < 500 && quiet < 10; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      int now = lower_->TotalReads();
      quiet = now == last ? quiet + 1 : 0;
      last = now;
    }
  }

  TestDir dir_;
  std::shared_ptr<FakeLowerLayer> lower_ = std::make_shared<FakeLowerLayer>();
};

TEST_F(CacheLayerTest, SequentialReadFetchesEachChunkOnceAndReadsAhead) {
  const std::string content = PatternBytes(20 * kChunk + 12345, 7);
  lower_->Put("big.bin", content, "sha-1");
  auto layer = Start(Options());
  auto file = layer->open("big.bin", O_RDONLY);
  ASSERT_TRUE(file);
  EXPECT_TRUE(ReadAll(**file, content));
  ASSERT_TRUE((*file)->close());
  EXPECT_EQ(lower_->MaxReadsAtOneOffset(), 1);
  // Each byte fetched once; read-ahead fetches a segment of chunks per read.
  EXPECT_EQ(lower_->TotalBytesRead(), static_cast<int64_t>(content.size()));
  EXPECT_LE(lower_->TotalReads(), 21);
  auto c = Counters(*layer);
  EXPECT_GT(c["prefetches"], 0);  // how many depends on who wins each chunk
  EXPECT_EQ(c["prefetches"] + c["misses"], 21);
  EXPECT_EQ(c["bytes_from_lower"], static_cast<int64_t>(content.size()));
  EXPECT_EQ(c["bytes_served"], static_cast<int64_t>(content.size()));
  EXPECT_EQ(c["readahead_waste"], 0);

  // Warm: a second open reads everything from disk.
  lower_->ResetCounts();
  auto again = layer->open("big.bin", O_RDONLY);
  ASSERT_TRUE(again);
  EXPECT_TRUE(ReadAll(**again, content, 1 * kMiB + 4096));
  EXPECT_EQ(lower_->TotalReads(), 0);
  ASSERT_TRUE((*again)->close());
}

TEST_F(CacheLayerTest, TheFirstReadOfAColdFileIsFetchedByTheReaderThenReadAheadFollows) {
  const std::string content = PatternBytes(8 * kChunk, 5);
  lower_->Put("model.bin", content, "v1");
  lower_->latency_ms = 20;
  auto layer = Start(Options());
  auto file = layer->open("model.bin", O_RDONLY);
  ASSERT_TRUE(file);
  // A small first read (a header): its chunk is fetched on the reader's own handle, not
  // queued behind read-ahead's open and segment; read-ahead starts at the next chunk.
  EXPECT_TRUE(ReadMatches(**file, 0, 4096, content));
  auto c = Counters(*layer);
  EXPECT_EQ(c["misses"], 1);
  EXPECT_EQ(c["fill_waits"], 0);
  Settle(*layer);
  c = Counters(*layer);
  EXPECT_EQ(c["prefetches"], 1);
  EXPECT_EQ(lower_->ReadsAt("model.bin", 0), 1);
  EXPECT_EQ(lower_->ReadsAt("model.bin", kChunk), 1);
  // The reader goes on sequentially: read-ahead keeps ahead and nothing is fetched twice.
  EXPECT_TRUE(ReadAll(**file, content, 256 * kKiB));
  EXPECT_EQ(lower_->MaxReadsAtOneOffset(), 1);
  EXPECT_EQ(lower_->TotalBytesRead(), static_cast<int64_t>(content.size()));
  ASSERT_TRUE((*file)->close());
}

TEST_F(CacheLayerTest, RandomReadsFetchOnlyTheChunksAsked) {
  const std::string content = PatternBytes(64 * kChunk, 3);
  lower_->Put("data.bin", content, "v1");
  auto layer = Start(Options());
  auto file = layer->open("data.bin", O_RDONLY);
  ASSERT_TRUE(file);
  const uint64_t offsets[] = {40 * kChunk + 77, 3 * kChunk + 5000, 60 * kChunk, 17 * kChunk + 1};
  for (uint64_t off : offsets) EXPECT_TRUE(ReadMatches(**file, off, 4096, content));
  Settle(*layer);
  // Four chunks, each fetched once: the first read's in three lower reads (its 64 KiB piece
  // first, then the rest after a page, then that page), the others in one.
  EXPECT_EQ(lower_->TotalBytesRead(), static_cast<int64_t>(4 * kChunk));
  EXPECT_EQ(lower_->TotalReads(), 6);
  EXPECT_EQ(Counters(*layer)["prefetches"], 0);
  ASSERT_TRUE((*file)->close());
}

TEST_F(CacheLayerTest, ReadsAcrossChunkBoundariesAndPastTheEnd) {
  const std::string content = PatternBytes(3 * kChunk + 10, 5);
  lower_->Put("f", content, "v1");
  auto layer = Start(Options());
  auto file = layer->open("f", O_RDONLY);
  ASSERT_TRUE(file);
  EXPECT_TRUE(ReadMatches(**file, kChunk - 100, 2 * kChunk + 200, content));
  EXPECT_TRUE(ReadMatches(**file, 3 * kChunk, 4096, content));  // 10 bytes, then EOF
  EXPECT_TRUE(ReadMatches(**file, 3 * kChunk + 10, 4096, content));
  EXPECT_TRUE(ReadMatches(**file, 10 * kChunk, 4096, content));
  ASSERT_TRUE((*file)->close());
}

TEST_F(CacheLayerTest, ConcurrentReadersOfOneColdFileFetchEachChunkOnce) {
  const std::string content = PatternBytes(16 * kChunk, 9);
  lower_->Put("shared.bin", content, "v1");
  lower_->latency_ms = 5;
  auto layer = Start(Options());
  std::vector<std::thread> readers;
  std::atomic<int> good{0};
  for (int i = 0; i < 16; ++i) {
    readers.emplace_back([&] {
      auto file = layer->open("shared.bin", O_RDONLY);
      if (!file) return;
      if (ReadAll(**file, content)) good++;
      (void)(*file)->close();
    });
  }
  for (auto& t : readers) t.join();
  EXPECT_EQ(good, 16);
  EXPECT_EQ(lower_->MaxReadsAtOneOffset(), 1);
  EXPECT_EQ(lower_->TotalBytesRead(), static_cast<int64_t>(content.size()));
  EXPECT_LE(lower_->TotalReads(), 16);
}

TEST_F(CacheLayerTest, SixteenParallelReadsOfOneHandleWaitForReadaheadInsteadOfFetching) {
  // What the kernel does with read_ahead = 16 MiB: up to 16 reads of 1 MiB of one open file in
  // flight, handed to FUSE threads that run them in any order. Reads behind the latest one, and
  // reads of chunks a lane has just taken, wait for read-ahead rather than fetch alone.
  const std::string content = PatternBytes(160 * kChunk, 4);
  lower_->Put("stream.bin", content, "v1");
  lower_->latency_ms = 5;
  CacheOptions options = Options();
  options.readahead.max = 64 * kMiB;
  auto layer = Start(options);
  auto file = layer->open("stream.bin", O_RDONLY);
  ASSERT_TRUE(file);
  std::atomic<uint64_t> next{0};
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 16; ++i) {
    threads.emplace_back([&] {
      for (uint64_t index; (index = next++) < 160;) {
        if (!ReadMatches(**file, index * kChunk, kChunk, content)) bad++;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad, 0);
  EXPECT_EQ(lower_->MaxReadsAtOneOffset(), 1);
  // The first chunks are the readers' own (read-ahead starts after the first read); after
  // that, read-ahead serves them.
  EXPECT_LE(Counters(*layer)["misses"], 24);  // 6-11 here; 39-65 when they fetched alone
  ASSERT_TRUE((*file)->close());
}

// The kernel's first read of a file is a few pages: it is answered once the first piece of its
// chunk has arrived, while the rest of the chunk is still on its way (one fetch per chunk).
TEST_F(CacheLayerTest, TheFirstReadOfAColdFileIsAnsweredBeforeItsChunkIsWhole) {
  const std::string content = PatternBytes(4 * kChunk, 31);
  lower_->Put("model.bin", content, "v1");
  auto layer = Start(Options());
  lower_->HoldReadsFrom(32 * kKiB);  // the rest of chunk 0 (and read-ahead) waits
  auto file = layer->open("model.bin", O_RDONLY);
  ASSERT_TRUE(file);
  EXPECT_TRUE(ReadMatches(**file, 4 * kKiB, 16 * kKiB, content));
  EXPECT_EQ(lower_->ReadsAt("model.bin", 0), 1);
  lower_->Release();
  // The next reads of chunk 0 wait for that fill rather than fetch it again.
  EXPECT_TRUE(ReadMatches(**file, 20 * kKiB, kChunk - 20 * kKiB, content));
  EXPECT_TRUE(ReadAll(**file, content, kChunk));
  ASSERT_TRUE((*file)->close());
  EXPECT_EQ(lower_->MaxReadsAtOneOffset(), 1);
  // The rest of chunk 0 comes as ranges of their own, not as the continuation of the piece
  // (a lower may take that for a sequential reader and stream): from one page past the piece,
  // then that page. Every byte once.
  EXPECT_EQ(lower_->ReadsAt("model.bin", 68 * kKiB), 1);
  EXPECT_EQ(lower_->ReadsAt("model.bin", 64 * kKiB), 1);
  EXPECT_EQ(lower_->TotalBytesRead(), static_cast<int64_t>(content.size()));
  EXPECT_EQ(Counters(*layer)["misses"], 1);  // the early read; read-ahead fetched the rest
  layer->store()->WaitForWrites();
  EXPECT_EQ(layer->store()->chunk_count(), 4u);
}

// A handle closed while the fill of its early first read is still waiting for the lower layer:
// close() waits for it, and the chunk is complete and correct afterwards.
TEST_F(CacheLayerTest, CloseAfterAnEarlyFirstReadWaitsForItsFill) {
  const std::string content = PatternBytes(2 * kChunk, 32);
  lower_->Put("slow.bin", content, "v1");
  auto layer = Start(Options());
  lower_->HoldReadsFrom(32 * kKiB);
  auto file = layer->open("slow.bin", O_RDONLY);
  ASSERT_TRUE(file);
  EXPECT_TRUE(ReadMatches(**file, 0, 4 * kKiB, content));
  std::atomic<bool> closed{false};
  std::thread closer([&] {
    EXPECT_TRUE((*file)->close());
    closed = true;
  });
  for (int i = 0; i < 5000 && lower_->HeldReads() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_GT(lower_->HeldReads(), 0);  // the rest of chunk 0 (or read-ahead) waits
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(closed);  // the fill still uses the handle
  lower_->Release();
  closer.join();
  EXPECT_TRUE(closed);
  auto again = layer->open("slow.bin", O_RDONLY);
  ASSERT_TRUE(again);
  EXPECT_TRUE(ReadMatches(**again, 0, kChunk, content));  // from the store
  EXPECT_EQ(lower_->ReadsAt("slow.bin", 0), 1);
  EXPECT_EQ(lower_->ReadsAt("slow.bin", 68 * kKiB), 1);
  EXPECT_EQ(Counters(*layer)["hits"], 1);
  ASSERT_TRUE((*again)->close());
}

TEST_F(CacheLayerTest, EmptyVersionIsNeverCachedAcrossOpens) {
  const std::string content = PatternBytes(2 * kChunk, 11);
  lower_->Put("live.log", content, "");
  auto layer = Start(Options());
  for (int i = 0; i < 2; ++i) {
    auto file = layer->open("live.log", O_RDONLY);
    ASSERT_TRUE(file);
    EXPECT_TRUE(ReadMatches(**file, 0, content.size(), content));
    ASSERT_TRUE((*file)->close());
  }
  EXPECT_EQ(lower_->ReadsAt("live.log", 0), 2);
  EXPECT_EQ(layer->store()->chunk_count(), 0u);
}

TEST_F(CacheLayerTest, ANewVersionIsReadFreshAndWritesInvalidate) {
  lower_->Put("cfg.json", PatternBytes(100000, 1), "v1");
  auto layer = Start(Options());
  {
    auto file = layer->open("cfg.json", O_RDONLY);
    ASSERT_TRUE(file);
    EXPECT_TRUE(ReadMatches(**file, 0, 100000, PatternBytes(100000, 1)));
    ASSERT_TRUE((*file)->close());
  }
  // Changed below the cache: a new version.
  lower_->Put("cfg.json", PatternBytes(100000, 2), "v2");
  {
    auto file = layer->open("cfg.json", O_RDONLY);
    ASSERT_TRUE(file);
    EXPECT_TRUE(ReadMatches(**file, 0, 100000, PatternBytes(100000, 2)));
    ASSERT_TRUE((*file)->close());
  }
  EXPECT_EQ(layer->store()->chunk_count(), 2u);
  // Written through the cache: the path's chunks go, and the write reaches the lower layer.
  {
    auto file = layer->open("cfg.json", O_RDWR);
    ASSERT_TRUE(file);
    const std::string patch = "patched";
    auto w = (*file)->write(10, std::as_bytes(std::span(patch)));
    ASSERT_TRUE(w);
    ASSERT_TRUE((*file)->close());
  }
  EXPECT_EQ(layer->store()->chunk_count(), 0u);
  std::string expected = PatternBytes(100000, 2);
  expected.replace(10, 7, "patched");
  auto file = layer->open("cfg.json", O_RDONLY);
  ASSERT_TRUE(file);
  EXPECT_TRUE(ReadMatches(**file, 0, 100000, expected));
  ASSERT_TRUE((*file)->close());
  ASSERT_TRUE(layer->remove("cfg.json"));
  EXPECT_EQ(layer->store()->chunk_count(), 0u);
}

TEST_F(CacheLayerTest, WarmAcrossARestartOfTheLayer) {
  const std::string content = PatternBytes(6 * kChunk, 13);
  lower_->Put("model.safetensors", content, "oid-1");
  {
    auto layer = Start(Options());
    auto file = layer->open("model.safetensors", O_RDONLY);
    ASSERT_TRUE(file);
    EXPECT_TRUE(ReadAll(**file, content));
    ASSERT_TRUE((*file)->close());
    ASSERT_TRUE(layer->shutdown(std::chrono::steady_clock::now() + std::chrono::seconds(5)));
  }
  lower_->ResetCounts();
  lower_->failing = true;  // the source is gone: only the cache can answer
  auto layer = Start(Options());
  auto file = layer->open("model.safetensors", O_RDONLY);
  ASSERT_TRUE(file);
  EXPECT_TRUE(ReadAll(**file, content));
  EXPECT_EQ(lower_->TotalReads(), 0);
  ASSERT_TRUE((*file)->close());
}

TEST_F(CacheLayerTest, CachedRangesSurviveAStoppedSourceAndTheRestIsEio) {
  const std::string content = PatternBytes(8 * kChunk, 17);
  lower_->Put("f", content, "v1");
  auto layer = Start(Options());
  auto file = layer->open("f", O_RDONLY);
  ASSERT_TRUE(file);
  EXPECT_TRUE(ReadMatches(**file, 5 * kChunk + 10, 4096, content));  // random: one chunk
  Settle(*layer);
  lower_->failing = true;
  EXPECT_TRUE(ReadMatches(**file, 5 * kChunk, kChunk, content));
  std::vector<std::byte> buf(4096);
  auto r = (*file)->read(1 * kChunk, buf);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.code(), EIO);
  ASSERT_TRUE((*file)->close());
}

TEST_F(CacheLayerTest, BudgetHoldsAfterReadingThreeTimesMaxSize) {
  CacheOptions options = Options();
  options.max_size = 8 * kMiB;
  auto layer = Start(options);
  for (int i = 0; i < 3; ++i) {
    const std::string name = "part-" + std::to_string(i);
    const std::string content = PatternBytes(8 * kChunk, 20 + i);
    lower_->Put(name, content, "v1");
    auto file = layer->open(name, O_RDONLY);
    ASSERT_TRUE(file);
    EXPECT_TRUE(ReadAll(**file, content));
    ASSERT_TRUE((*file)->close());
    EXPECT_LE(DiskUsage(dir_.path()), options.max_size);
  }
  Settle(*layer);
  EXPECT_LE(DiskUsage(dir_.path()), options.max_size);
  auto c = Counters(*layer);
  EXPECT_GT(c["evictions"], 8);
  // Read-ahead is capped under the budget: nothing it fetched was evicted unread.
  EXPECT_EQ(c["readahead_waste"], 0);
  EXPECT_EQ(c["bytes_from_lower"], static_cast<int64_t>(3 * 8 * kChunk));
  EXPECT_EQ(lower_->MaxReadsAtOneOffset(), 1);
}

TEST_F(CacheLayerTest, ReadaheadMemoryIsBoundedByConcurrencyAndCloseWaitsForIt) {
  const std::string content = PatternBytes(32 * kChunk, 23);
  lower_->Put("slow.bin", content, "v1");
  lower_->latency_ms = 30;
  CacheOptions options = Options();
  options.fetch_concurrency = 2;
  auto layer = Start(options);
  auto file = layer->open("slow.bin", O_RDONLY);
  ASSERT_TRUE(file);
  for (uint64_t off = 0; off < 4 * kChunk; off += 128 * kKiB) {
    ASSERT_TRUE(ReadMatches(**file, off, 128 * kKiB, content));
  }
  // Close returns only after the running read-ahead on this handle finished; queued jobs
  // are skipped.
  ASSERT_TRUE((*file)->close());
  const int reads_at_close = lower_->TotalReads();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(lower_->TotalReads(), reads_at_close);
  EXPECT_LT(reads_at_close, 32);
}

TEST_F(CacheLayerTest, WholeFileModeFetchesEverythingAtOpen) {
  const std::string content = PatternBytes(10 * kChunk, 29);
  lower_->Put("all.bin", content, "v1");
  CacheOptions options = Options();
  options.whole_file = true;
  auto layer = Start(options);
  auto file = layer->open("all.bin", O_RDONLY);
  ASSERT_TRUE(file);
  EXPECT_TRUE(ReadMatches(**file, 0, 4096, content));
  for (int i = 0; i < 500 && layer->store()->chunk_count() < 10; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(layer->store()->chunk_count(), 10u);
  ASSERT_TRUE((*file)->close());
}

TEST_F(CacheLayerTest, CountersAreReported) {
  auto layer = Start(Options());
  auto c = Counters(*layer);
  for (const char* name : {"hits", "misses", "bytes_from_lower", "bytes_served", "evictions",
                           "readahead_waste", "cached_bytes", "corrupt_chunks"}) {
    EXPECT_TRUE(c.count(name)) << name;
  }
}

TEST_F(CacheLayerTest, ASecondLayerOnTheSameFolderFailsToStart) {
  auto first = Start(Options());
  CacheLayer second(lower_, Options());
  Status s = second.start();
  ASSERT_FALSE(s);
  EXPECT_EQ(s.code(), EBUSY);
}

TEST_F(CacheLayerTest, WarmSequentialReadsAreStagedAheadOfTheReader) {
  const std::string content = PatternBytes(40 * kChunk + 777, 31);
  lower_->Put("warm.bin", content, "v1");
  CacheOptions options = Options();
  options.readahead_segment = 2 * kChunk;
  options.readahead_streams = 2;
  options.warm_readahead = 8 * kMiB;
  options.stage_cached_pages = true;  // chunks just written are in the page cache
  {
    auto layer = Start(options);
    auto file = layer->open("warm.bin", O_RDONLY);
    ASSERT_TRUE(file);
    EXPECT_TRUE(ReadAll(**file, content, 1 * kMiB));
    ASSERT_TRUE((*file)->close());
    ASSERT_TRUE(layer->shutdown(std::chrono::steady_clock::now() + std::chrono::seconds(5)));
  }
  lower_->ResetCounts();
  auto layer = Start(options);  // a remount: the cache on disk only
  auto file = layer->open("warm.bin", O_RDONLY);
  ASSERT_TRUE(file);
  EXPECT_TRUE(ReadAll(**file, content, 1 * kMiB));
  ASSERT_TRUE((*file)->close());
  EXPECT_EQ(lower_->TotalReads(), 0);
  auto c = Counters(*layer);
  EXPECT_GT(c["staged_chunks"], 0);
  EXPECT_LE(c["staged_chunks"], 41);
  EXPECT_EQ(c["corrupt_chunks"], 0);
  EXPECT_LE(layer->store()->staged_bytes(), options.warm_readahead);
}

TEST_F(CacheLayerTest, WarmReadaheadZeroNeverStages) {
  const std::string content = PatternBytes(12 * kChunk, 37);
  lower_->Put("f.bin", content, "v1");
  CacheOptions options = Options();
  options.warm_readahead = 0;
  auto layer = Start(options);
  for (int pass = 0; pass < 2; ++pass) {
    auto file = layer->open("f.bin", O_RDONLY);
    ASSERT_TRUE(file);
    EXPECT_TRUE(ReadAll(**file, content, 1 * kMiB));
    ASSERT_TRUE((*file)->close());
  }
  EXPECT_EQ(Counters(*layer)["staged_chunks"], 0);
}

}  // namespace
}  // namespace hfvfs::cache
