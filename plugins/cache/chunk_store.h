// File: chunk_store.h
//
// The on-disk chunk cache under one folder. A chunk is `chunk_size` bytes of one file's content
// (the last chunk of a file is shorter), identified by ChunkId: a 128-bit key derived from
// (path, version, chunk_size) and the chunk's index. A new version is a new key, so a stale
// chunk can never be served; chunks of old versions age out by LRU.
//
// Contracts:
// - Fills are transactional: a chunk is written to `tmp/`, then renamed into `chunks/`; a
//   chunk file is visible only once complete. Each file starts with a header (magic, the
//   path and version it belongs to, one CRC-32C per 64 KiB block, a CRC of the header itself);
//   a read verifies the blocks it touches the first time they are touched in this process (and
//   again whenever the file's mtime or inode changes), so a torn or corrupted chunk is
//   discarded and refetched, never served. Large aligned reads of chunks not in the page cache
//   bypass it (O_DIRECT into the caller's buffer): same bytes, same checks.
// - One fetch per chunk however many readers ask: the first reader of an absent chunk becomes
//   its downloader; the others wait on the fill and copy from the downloader's buffer. A failed
//   fetch wakes the waiters with its error and leaves the chunk absent (the next read retries).
// - The folder stays under `max_bytes` as `du` counts it (file blocks rounded to 4 KiB,
//   headers and folders included): a fill first evicts least-recently-used chunks; chunks
//   being read (pinned) are never evicted. A fill that cannot get room is served from memory
//   and not kept.
// - The index is rebuilt at Open() by scanning `chunks/` (headers are checked); leftovers in
//   `tmp/` from a crash are deleted. One process at a time owns a folder (flock on `lock`); a
//   second Open() of the same folder fails with EBUSY naming the owner's pid.
// - A folder that cannot be written (read-only, full disk) degrades to serving every read from
//   the lower layer, with one warning; it never turns a read into an error.
// All methods are thread-safe.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "hfvfs/result.h"

namespace hfvfs::cache {

class ChunkFd;

using FileKey = std::array<uint8_t, 16>;

// The key of one file's content: BLAKE2b-128 of (path, version, chunk_size).
FileKey MakeFileKey(std::string_view path, std::string_view version, uint64_t chunk_size);
std::string KeyHex(const FileKey& key);

struct ChunkId {
  FileKey file{};
  uint64_t index = 0;
  bool operator==(const ChunkId&) const = default;
};

struct ChunkIdHash {
  size_t operator()(const ChunkId& id) const;
};

// What a caller knows about the chunk it asks for.
struct ChunkRef {
  ChunkId id;
  uint64_t length = 0;      // bytes of this chunk (chunk_size, or less for the last one)
  uint64_t chunk_size = 0;  // the chunk size the key was derived with (kept in the header)
  std::string_view path;    // stored in the header, for invalidation after a restart
  std::string_view version;
};

struct ChunkStoreOptions {
  std::string dir;
  uint64_t max_bytes = 10ull << 30;
  uint32_t block_size = 64 << 10;  // checksum granularity
  // Cached chunks staged in memory ahead of sequential readers (Stage), all readers together,
  // at most this many bytes; 0 = never stage (Stage only advises the kernel).
  uint64_t stage_max_bytes = 16 << 20;
  // Stage chunks whose data is already in the page cache too (tests: tmpfs keeps everything
  // there); normally those are left to the reader's own read.
  bool stage_cached_pages = false;
  // Freed fetch and stage buffers kept mapped for reuse, at most this many bytes (a fresh
  // mapping costs a fault and the zeroing of every page, its unmapping a TLB flush: ~15% of the
  // mount's CPU in a cold sequential read, measured with perf).
  uint64_t buffer_pool_bytes = 16 << 20;
  // Reads of at least this many bytes of a cached chunk whose pages are not in the page cache
  // go straight from the disk into the caller's buffer (O_DIRECT) when the buffer is 512-byte
  // aligned; 0 = always through the page cache.
  uint64_t direct_read_min = 128 << 10;
};

// Monotonic counters, read without locks.
struct ChunkStoreCounters {
  std::atomic<int64_t> hits{0};        // chunk reads served from disk
  std::atomic<int64_t> misses{0};      // demand reads that fetched from the lower layer
  std::atomic<int64_t> fill_waits{0};  // reads that waited on another reader's fetch
  std::atomic<int64_t> prefetches{0};  // chunks fetched by read-ahead
  std::atomic<int64_t> bytes_from_lower{0};
  std::atomic<int64_t> evictions{0};
  std::atomic<int64_t> readahead_waste{0};  // prefetched bytes evicted before any read
  std::atomic<int64_t> corrupt_chunks{0};   // discarded by checksum or header check
  std::atomic<int64_t> fetch_errors{0};
  std::atomic<int64_t> disk_errors{0};    // fills not kept because the folder failed
  std::atomic<int64_t> staged{0};         // cached chunks read into memory ahead of a reader
  std::atomic<int64_t> staged_unread{0};  // staged chunks dropped before any read
  std::atomic<int64_t> direct_reads{0};   // reads of cached chunks that bypassed the page cache
};

// Bytes of a chunk that the store holds in memory (a fill's or a stage's buffer), lent to a
// reader instead of copied; valid while `owner` is held.
struct LentBytes {
  std::shared_ptr<const void> owner;
  std::span<const std::byte> bytes;
};

class ChunkStore {
 public:
  // Fills exactly `out` with the chunk's bytes from the lower layer, or fails.
  using Fetch = std::function<Status(std::span<std::byte> out)>;
  // Fills exactly `out` with the bytes of consecutive chunks starting at chunk `first_index`.
  using RangeFetch = std::function<Status(uint64_t first_index, std::span<std::byte> out)>;

  // Opens (creating if needed) the cache folder and rebuilds the index. EBUSY if another
  // process holds it. An unwritable folder gives a store in pass-through mode (see degraded()).
  static Result<std::unique_ptr<ChunkStore>> Open(ChunkStoreOptions options);
  ~ChunkStore();
  ChunkStore(const ChunkStore&) = delete;
  ChunkStore& operator=(const ChunkStore&) = delete;

  // Copies [offset, offset + out.size()) of the chunk into `out` (the range must lie inside
  // the chunk), fetching the chunk through `fetch` when absent. Returns out.size(). With
  // `lend`, bytes that are in memory (a fill in flight or just done, a staged chunk) are lent
  // through *lend instead, and `out` is left as it was; bytes read from disk still land in
  // `out` (lend->bytes is then empty).
  Result<size_t> Read(const ChunkRef& ref, uint64_t offset, std::span<std::byte> out,
                      const Fetch& fetch, LentBytes* lend = nullptr);

  // Read-ahead: fills the chunk if it is neither cached nor being filled. A chunk filled here
  // and evicted before any read counts as read-ahead waste.
  Status Prefetch(const ChunkRef& ref, const Fetch& fetch);

  // A demand miss fetched on another thread than its reader's (CachedFile's early first read):
  // fills the chunk through `fetch` like Read does (the reader takes its bytes from inside
  // `fetch`), if it is neither cached nor being filled; Ok(false), doing nothing, if it is.
  Result<bool> FillForReader(const ChunkRef& ref, const Fetch& fetch);

  // Read-ahead of several chunks of one file, in file order: the chunks neither cached nor being
  // filled become fills at once (readers wait on them), and each run of consecutive ones is
  // fetched with one call to `fetch` (one lower request instead of one per chunk). Cached ones
  // are advised to the kernel. Returns the first fetch error.
  Status PrefetchRun(std::span<const ChunkRef> refs, const RangeFetch& fetch);

  // Asks the kernel to read a cached chunk's file into the page cache in the background, unless
  // large reads are served with O_DIRECT (see ChunkStoreOptions::direct_read_min).
  void Advise(const ChunkId& id);

  // Read-ahead of a cached chunk for a sequential reader: reads the whole chunk from its file
  // into memory (one request, without the page cache where the file system allows), verifies
  // every block, and serves the next reads of the chunk from there: readers that arrive while
  // it is being read wait for it, and the copy is dropped once a read reaches the chunk's end
  // (or, when the stage budget is full, once it is older than kStageMaxAge). Returns false and
  // advises the kernel instead when the chunk is not cached or the budget is full. Staging
  // never changes what a read returns: bytes that fail their checksum drop the chunk.
  bool Stage(const ChunkRef& ref);

  // True when every chunk of `refs` is cached (ready on disk).
  bool AllCached(std::span<const ChunkRef> refs) const;

  uint64_t staged_bytes() const;

  // True if the chunk is cached or being filled.
  bool Contains(const ChunkId& id) const;

  // Drops every cached chunk of `path` (any version), or of every path under `dir` ("" = all).
  // A fill in flight completes for its waiters but is not kept.
  void InvalidatePath(std::string_view path);
  void InvalidateTree(std::string_view dir);

  // Returns once every queued read-ahead write is on disk (or dropped). For tests and tools.
  void WaitForWrites();

  uint64_t used_bytes() const;
  size_t chunk_count() const;
  bool degraded() const { return degraded_.load(); }
  const std::string& dir() const { return options_.dir; }
  const ChunkStoreCounters& counters() const { return counters_; }

  // The file that holds a chunk (for tests and tools).
  std::string ChunkPath(const ChunkId& id) const;

 private:
  struct Buffer;
  struct Fill;
  struct Entry;
  static constexpr size_t kDirectAlign = 512;  // O_DIRECT alignment of memory and offsets
  static constexpr size_t kMaxOpenFds = 512;   // chunk files kept open (fd_order_)
  // Read-ahead chunks waiting for the writer (16 cost ~10 MiB more peak RSS than 8, measured).
  static constexpr size_t kMaxQueuedWrites = 8;
  // A staged chunk nobody read for this long is dropped when the budget is needed.
  static constexpr std::chrono::milliseconds kStageMaxAge{1000};
  struct PendingWrite {
    ChunkId id;
    uint64_t length = 0;
    uint64_t chunk_size = 0;
    std::string path;
    std::string version;
    std::shared_ptr<Fill> fill;
    uint64_t generation = 0;
    std::shared_ptr<Buffer> buffer;
  };

  explicit ChunkStore(ChunkStoreOptions options);
  Status OpenFolder();
  void Rebuild();
  // Serves from disk: Ok(true) when served, Ok(false) when the chunk turned out absent or
  // corrupt (the caller fetches), an error only for a failure that is not the cache's.
  Result<bool> ReadCached(const ChunkRef& ref, uint64_t offset, std::span<std::byte> out);
  // Reads `out.size()` bytes of a chunk file at `file_offset`: with O_DIRECT when the read is
  // large and aligned and none of its pages are in the page cache, else through `fd`.
  Result<size_t> ReadData(const ChunkId& id, const ChunkFd& fd, std::span<std::byte> out,
                          uint64_t file_offset);
  // Makes the chunk a fill in entries_ (it must be absent): readers now wait for its
  // downloader. `generation` receives the entry's. Requires mu_.
  std::shared_ptr<Fill> ClaimLocked(const ChunkRef& ref, uint64_t& generation);
  // Fetches as the chunk's downloader, publishes to waiters, writes to disk.
  Result<std::shared_ptr<const Buffer>> Download(const ChunkRef& ref,
                                                 const std::shared_ptr<Fill>& fill,
                                                 uint64_t generation, const Fetch& fetch,
                                                 bool prefetch);
  // The downloader's fetch failed: wakes the waiters with `error`, drops the entry.
  void FailFill(const ChunkRef& ref, const std::shared_ptr<Fill>& fill, uint64_t generation,
                const Status& error);
  // The downloader has the bytes: hands them to the waiters, then writes them (a read-ahead
  // fill on the writer thread when there is room in its queue).
  void Publish(const ChunkRef& ref, const std::shared_ptr<Fill>& fill, uint64_t generation,
               const std::shared_ptr<Buffer>& buffer, bool prefetch);
  // Writes a complete chunk file under tmp/ and returns its path; `crcs` receives the block
  // checksums.
  Result<std::string> WriteTempChunk(const ChunkRef& ref, const Buffer& data, uint64_t header_len,
                                     std::vector<uint32_t>& crcs);
  // Reserves room, writes the chunk under tmp/ and renames it into place, then marks the fill
  // done (the entry becomes ready, or is dropped when it cannot be kept).
  void Commit(const ChunkRef& ref, const std::shared_ptr<Fill>& fill, uint64_t generation,
              const Buffer& data, bool prefetch);
  void RunWriter();
  // Evicts until `need` more bytes fit. Requires mu_. False if pinned chunks leave no room.
  bool MakeRoomLocked(uint64_t need);
  void EraseLocked(std::unordered_map<ChunkId, Entry, ChunkIdHash>::iterator it, bool evicted);
  void WarnDisk(const std::string& what);
  // Keeps `fd` open in `e`, closing the oldest kept descriptors beyond kMaxOpenFds.
  void KeepFdLocked(Entry& e, const ChunkId& id, std::shared_ptr<ChunkFd> fd);
  // A buffer of `size` bytes (content undefined), from the pool when a mapping fits; the last
  // reference returns it to the pool.
  std::shared_ptr<Buffer> TakeBuffer(size_t size);
  // Drops the staged copy of `e` (if any) and returns its bytes to the stage budget.
  void UnstageLocked(Entry& e);
  // Reads and verifies the data of a ready chunk into `out` (sized to whole 4 KiB blocks);
  // `st` receives the file's identity as read. False if the file is gone, short or fails a checksum
  // (`corrupt` says which).
  bool LoadChunk(const ChunkId& id, uint32_t header_len, uint64_t data_len,
                 const std::vector<uint32_t>& crcs, Buffer& out, struct stat& st, bool& corrupt,
                 std::string& why);
  uint64_t HeaderLen(const ChunkRef& ref) const;

  const ChunkStoreOptions options_;
  int lock_fd_ = -1;

  // Freed buffers kept for reuse (options_.buffer_pool_bytes). pool_mu_ guards pool_ and
  // pooled_bytes_; it may be taken under mu_ (a released buffer returns here), never the
  // reverse. Declared before mu_ and entries_, so it outlives the buffers they hold.
  std::mutex pool_mu_;
  std::vector<std::unique_ptr<Buffer>> pool_;
  uint64_t pooled_bytes_ = 0;
  std::atomic<bool> degraded_{false};
  std::atomic<bool> warned_disk_{false};
  std::atomic<bool> direct_unsupported_{false};  // the folder's file system refused O_DIRECT
  // The latest large read could have gone direct (aligned buffer, O_DIRECT supported): read-ahead
  // of cached chunks then leaves the page cache alone (Advise does nothing).
  std::atomic<bool> direct_capable_;  // initialised from options_
  std::atomic<uint64_t> tmp_counter_{0};
  ChunkStoreCounters counters_;

  // Guards entries_, lru_, fd_order_, staged_order_, path_chunks_, used_bytes_, staged_bytes_,
  // subdirs_, next_generation_ and every Entry and Fill field. Held only for bookkeeping and
  // unlink(2), never across a fetch or a chunk read/write. fill_cv_ signals any Fill becoming done
  // or having data.
  mutable std::mutex mu_;
  std::condition_variable fill_cv_;
  std::unordered_map<ChunkId, Entry, ChunkIdHash> entries_;
  std::list<ChunkId> lru_;           // ready chunks, least recently used first
  std::list<ChunkId> fd_order_;      // chunks whose file is kept open, oldest first
  std::list<ChunkId> staged_order_;  // chunks with a staged copy, oldest first
  uint64_t staged_bytes_ = 0;
  std::unordered_map<std::string, std::unordered_set<ChunkId, ChunkIdHash>> path_chunks_;
  std::unordered_set<std::string> subdirs_;  // fan-out folders known to exist
  uint64_t used_bytes_ = 0;
  uint64_t next_generation_ = 1;

  // The writer thread of read-ahead fills. write_mu_ guards write_queue_, writer_stop_ and
  // writing_; it is never held with mu_ (Commit takes mu_ without it).
  std::mutex write_mu_;
  std::condition_variable write_cv_;
  std::deque<PendingWrite> write_queue_;
  bool writer_stop_ = false;
  bool writing_ = false;
  std::thread writer_;
};

}  // namespace hfvfs::cache
