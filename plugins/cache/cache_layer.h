// File: cache_layer.h
//
// The `cache` wrapper: file contents from the lower layer are kept on local disk in chunks
// (ChunkStore) keyed by (path, version, chunk_size, index), with adaptive read-ahead per open
// file. Metadata (stat, list) passes through: the kernel caches it.
//
// - A read-only open of a file whose lower `version` is not empty is served through the chunk
//   store; a file with an empty version is read from the lower layer every time (it must not be
//   cached across opens). Opens for writing pass through; every write, truncate, create,
//   remove, rename or setattr drops the cached chunks of the paths it touches (a lower that
//   changes content also changes the version, so older chunks are never served anyway).
// - Read-ahead runs on `fetch_concurrency` background threads shared by all open files. One
//   file's read-ahead takes its chunks in file order, a segment (readahead_segment of whole chunks)
//   per lower read; a small window is one thread on one lower handle (a sequential stream for
//   the lower layer); once the window spans several segments, up to `readahead_streams` threads
//   fetch segments at once, segment s on lower handle s % readahead_streams, so each handle sees
//   reads a fixed stride apart (ranged requests for hub, never skips in a stream). Each thread
//   holds at most one segment in memory (plus the writer's queue of chunks).
// - Large reads of cached chunks whose pages are not in the page cache are O_DIRECT reads into
//   the reader's buffer when it is aligned (direct_reads, the default; the kernel's FUSE
//   requests keep several in flight), and read-ahead then leaves cached chunks alone. Otherwise
//   cached chunks ahead of a sequential reader are advised to the kernel (WILLNEED); with
//   warm_readahead > 0 they are staged instead: read into memory by the read-ahead lanes (one
//   request per chunk, several at once) once the reader is within warm_readahead of them, and
//   served from there (ChunkStore::Stage); the stage budget is warm_readahead.
// - The read-ahead window is capped at max_size / 4, so read-ahead never evicts itself.
// - mode "file" fetches the whole file in the background at open (same store and keys).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "chunk_store.h"
#include "hfvfs/layer.h"
#include "readahead_window.h"

namespace hfvfs::cache {

struct CacheOptions {
  std::string dir;
  uint64_t max_size = 10ull << 30;
  // 4 MiB chunks in 8 MiB read-ahead segments: against 1 MiB and 4 MiB (bench/run, hub, three
  // interleaved rounds) cold 1,071 vs 866 MB/s, warm 3,984 vs 3,589, after a remount 3,646 vs
  // 3,376, random 4 KiB 25,900 vs 22,864 IOPS, first byte 6.3 vs 10.0 ms, for 128 vs 82 MiB of
  // peak RSS (the read-ahead cap grows from 40 to 96 MiB).
  uint64_t chunk_size = 4 << 20;
  ReadaheadOptions readahead;
  int fetch_concurrency = 8;
  // Read-ahead of one file runs on up to this many threads once its window holds that many
  // segments, each segment (readahead_segment rounded down to whole chunks, at least one)
  // fetched with one lower read.
  int readahead_streams = 4;
  uint64_t readahead_segment = 8 << 20;
  // Cached chunks a sequential reader will read next are read into memory ahead of it (the
  // same lanes, one O_DIRECT request per chunk), at most this many bytes for all readers
  // together; 0 (the default: no gain measured on the reference machine, and it leaves the
  // page cache cold for later random reads) = only ask the kernel to read them ahead.
  uint64_t warm_readahead = 0;
  // Large reads of cached chunks not in the page cache go from the disk straight into the
  // reader's buffer (O_DIRECT, when it is aligned), and read-ahead leaves cached chunks alone.
  bool direct_reads = true;
  bool stage_cached_pages = false;  // tests only: see ChunkStoreOptions
  bool whole_file = false;          // mode = "file"
};

// A fixed set of threads running queued jobs in order. Stop() drops what is still queued.
class WorkerPool {
 public:
  explicit WorkerPool(int threads);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  void Submit(std::function<void()> job);  // ignored once stopped
  // Runs `job` next, if a thread is idle to take it at once; false (job dropped) otherwise.
  bool SubmitIfIdle(std::function<void()> job);
  void Stop();  // joins the threads
  size_t queued() const;
  // True once Stop() began: long jobs end early.
  bool stopping() const { return stopping_flag_.load(); }

 private:
  void Run();

  mutable std::mutex mu_;  // guards jobs_, stopping_ and running_ (threads_ is fixed until Stop)
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  size_t running_ = 0;  // threads running a job
  std::atomic<bool> stopping_flag_{false};
  std::vector<std::thread> threads_;
};

class CacheLayer final : public LayerWrapper {
 public:
  CacheLayer(std::shared_ptr<Layer> lower, CacheOptions options);
  ~CacheLayer() override;

  std::string_view type() const override { return "cache"; }
  Status start() override;
  Status shutdown(std::chrono::steady_clock::time_point deadline) override;

  Result<std::unique_ptr<File>> open(std::string_view path, int flags) override;
  Result<std::unique_ptr<File>> create(std::string_view path, uint32_t mode, int flags) override;
  Status remove(std::string_view path) override;
  Status rmdir(std::string_view path) override;
  Status rename(std::string_view from, std::string_view to, bool noreplace) override;
  Status setattr(std::string_view path, const SetAttr& change) override;
  void counters(std::vector<std::pair<std::string, int64_t>>& out) const override;

  // Null before start() and when the cache folder is in use elsewhere.
  ChunkStore* store() const { return store_.get(); }
  const CacheOptions& options() const { return options_; }

 private:
  friend class CachedFile;
  friend class PassThroughFile;

  void Invalidate(std::string_view path);
  void InvalidateTree(std::string_view path);

  const CacheOptions options_;
  std::unique_ptr<ChunkStore> store_;  // set once by start()
  std::unique_ptr<WorkerPool> pool_;   // set once by start(); stopped by shutdown()
  std::atomic<int64_t> bytes_served_{0};
  std::atomic<int64_t> passthrough_bytes_{0};  // read from the lower layer without the store
};

}  // namespace hfvfs::cache
