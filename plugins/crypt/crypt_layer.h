// File: crypt_layer.h
//
// The crypt wrapper: client-side encryption of contents and names over any lower layer. Every
// encrypted path lives under the literal folder `.enc/` of the lower layer; each component is
// encrypted deterministically and bound to its plaintext parent path, and each file is a
// container of authenticated 64 KiB records (crypt_format.h, docs/crypt-format.md).
//
// Plaintext entries beside `.enc/` stay visible (read-only by default); names under `.enc/`
// that do not decrypt with our key (another key's files) are skipped.
//
// Writes: create and sequential writes work over any writable lower; random writes and
// truncation rewrite only the affected records and need a lower with random writes.
//
// Symlinks (when the lower has them) are lower symlinks whose target is sealed with the link's
// plaintext path as associated data (EncryptLinkTarget); a rename seals it again.
#pragma once

#include <pthread.h>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "crypt_format.h"
#include "hfvfs/layer.h"

namespace hfvfs::crypt {

enum class PlaintextFiles : uint8_t { kHidden, kReadOnly, kReadWrite };

struct CryptOptions {
  NameEncoding names = NameEncoding::kBase64Url;
  PlaintextFiles plaintext = PlaintextFiles::kReadOnly;
  unsigned threads = 0;  // record workers for large reads and writes; 0 = one per core (max 8)
};

// How the records [first, first + records) of one read are fetched from the lower layer: in
// `pieces` runs of `per_piece` whole records (the last run may be shorter), one lower read each.
// A read of up to 2 MiB of plaintext (every FUSE read: max_read is 1 MiB) is one lower read, the
// access pattern a plain reader has, which keeps the lower's readahead streaming; a larger read
// is cut into up to `threads` runs of at least kRecordsPerLowerRead records fetched in parallel.
inline constexpr size_t kRecordsPerLowerRead = 16;  // 1 MiB of plaintext
struct ReadPlan {
  size_t pieces = 0;
  size_t per_piece = 0;
};
ReadPlan PlanRecordReads(size_t records, size_t threads);

// A fixed set of worker threads that run the records of one large read or write in parallel.
class RecordPool {
 public:
  explicit RecordPool(unsigned threads);
  ~RecordPool();
  // Runs fn(0..count-1), spread over the workers and the calling thread; returns when all ran.
  void ParallelFor(size_t count, const std::function<void(size_t)>& fn);
  // Threads that run a ParallelFor: the workers and the caller.
  size_t size() const { return workers_.size() + 1; }

 private:
  void Work();
  // Guards `jobs_` and `stopping_`.
  std::mutex mu_;
  std::condition_variable wake_;
  std::vector<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

// Buffers for the ciphertext of one read or write call, lent for the call and given back after
// it, the most recently returned first: the few in use at once stay warm in the CPU caches. (A
// buffer per thread cycled as many through the caches as FUSE threads had served calls.)
class ScratchPool {
 public:
  class Lease {
   public:
    Lease(ScratchPool& pool, std::unique_ptr<std::vector<uint8_t>> buffer)
        : pool_(pool), buffer_(std::move(buffer)) {}
    ~Lease() { pool_.Return(std::move(buffer_)); }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    std::vector<uint8_t>& buffer() { return *buffer_; }

   private:
    ScratchPool& pool_;
    std::unique_ptr<std::vector<uint8_t>> buffer_;
  };
  // Keeps at most `keep` returned buffers (the rest are freed).
  explicit ScratchPool(size_t keep) : keep_(keep) {}
  Lease Take();
  size_t idle() const;

 private:
  void Return(std::unique_ptr<std::vector<uint8_t>> buffer);
  const size_t keep_;
  mutable std::mutex mu_;  // guards free_
  std::vector<std::unique_ptr<std::vector<uint8_t>>> free_;
};

// A reader-writer lock that lets a waiting writer in ahead of new readers (glibc's default
// rwlock, behind std::shared_mutex, lets a steady stream of readers starve writers).
class WriterFirstMutex {
 public:
  WriterFirstMutex();
  ~WriterFirstMutex();
  WriterFirstMutex(const WriterFirstMutex&) = delete;
  WriterFirstMutex& operator=(const WriterFirstMutex&) = delete;
  void lock();
  void unlock();
  void lock_shared();
  void unlock_shared();

 private:
  pthread_rwlock_t lock_;
};

// The state of one encrypted object shared by every open handle of it: its keys and size.
struct CryptNode {
  // Guards every field below and orders record reads against record rewrites: readers take
  // it shared, writers and truncation exclusive. Taken after CryptLayer::nodes_mu_ is released.
  WriterFirstMutex mu;
  bool loaded = false;
  // The final record was authenticated since the last change (a file cut at a record
  // boundary would otherwise read as a shorter file). Set under a shared lock, hence atomic.
  std::atomic<bool> final_verified{false};
  FileId file_id{};
  FileKeys keys;
  uint64_t size = 0;  // plaintext bytes
  // Append-only lowers: records are sealed as whole chunks arrive; `pending` holds the
  // plaintext of the last, incomplete chunk until the file is finalised at flush or close.
  bool append_mode = false;
  bool finalized = false;
  std::vector<uint8_t> pending;
};

class CryptLayer final : public LayerWrapper {
 public:
  CryptLayer(std::shared_ptr<Layer> lower, const Key& master, CryptOptions options);
  ~CryptLayer() override;

  std::string_view type() const override { return "crypt"; }
  Capabilities capabilities() const override;

  Result<Attr> stat(std::string_view path) override;
  Result<std::vector<DirEntry>> list(std::string_view dir) override;
  Result<std::unique_ptr<File>> open(std::string_view path, int flags) override;
  Result<std::unique_ptr<File>> create(std::string_view path, uint32_t mode, int flags) override;
  Status mkdir(std::string_view path, uint32_t mode) override;
  Status remove(std::string_view path) override;
  Status rmdir(std::string_view path) override;
  Status rename(std::string_view from, std::string_view to, bool noreplace) override;
  Status setattr(std::string_view path, const SetAttr& change) override;
  Status symlink(std::string_view target, std::string_view path) override;
  Result<std::string> readlink(std::string_view path) override;
  Result<FsStats> statfs() override;
  Result<Changes> changes() override;
  void counters(std::vector<std::pair<std::string, int64_t>>& out) const override;

  // The lower path of an encrypted plaintext path: ".enc/<E(c1)>/<E(c2)>..."; "" -> ".enc".
  Result<std::string> EncryptedPath(std::string_view path) const;
  // The plaintext path of a lower path under ".enc", or nullopt when it is not ours.
  std::optional<std::string> DecryptedPath(std::string_view lower_path) const;

  const KeySet& keys() const { return *keys_; }
  RecordPool& pool() { return pool_; }
  ScratchPool& scratch() { return scratch_; }
  bool lower_random_write() const { return lower().capabilities().random_write; }
  std::shared_ptr<CryptNode> Node(const std::string& lower_path);
  void CountAuthFailure() const;

  // What the read path did, for `hfvfs status` (relaxed counters; read them as a profile).
  struct IoCounters {
    std::atomic<int64_t> header_reads{0};   // headers fetched and authenticated (once per node)
    std::atomic<int64_t> reads{0};          // File::read calls that fetched records
    std::atomic<int64_t> read_bytes{0};     // plaintext bytes those calls returned
    std::atomic<int64_t> fetched_bytes{0};  // ciphertext bytes read from the lower layer
    std::atomic<int64_t> lower_reads{0};    // lower File::read calls that fetched them
    std::atomic<int64_t> records_whole{0};  // records decrypted whole
    std::atomic<int64_t> records_part{0};   // records verified whole, decrypted in part
    std::atomic<int64_t> records_on_workers{0};  // of those, opened by a pool worker
    std::atomic<int64_t> records_sealed{0};
  };
  IoCounters& io() { return io_; }

 private:
  // Where a plaintext path lives in the lower layer.
  struct Place {
    std::string lower;
    bool encrypted = true;
  };
  // The place of an existing path: the encrypted one when it exists, else the plaintext one
  // when plaintext files are visible. `lower_attr` receives the lower stat.
  Result<Place> Find(std::string_view path, Attr* lower_attr = nullptr);
  // The place where a new entry `path` goes: encrypted unless its first component is an
  // existing plaintext folder (then plaintext, if writable).
  Result<Place> PlaceForNew(std::string_view path);
  Status CheckPlaintextWritable(std::string_view path, std::string_view what) const;
  // The attributes shown for the encrypted entry `path` stored at `lower_path`: plaintext
  // sizes of files (from the object size) and of symlinks (from the decrypted target).
  Result<Attr> EncryptedAttr(Attr lower_attr, std::string_view path, std::string_view lower_path);
  Status EnsureEncRoot();
  // Writes a new container (fresh file id) for `path` into an empty lower file; the caller
  // holds the node's lock exclusively.
  Status StartContainer(CryptNode& node, File& lower_file, std::string_view path);
  // Re-binds the contents of `lower_path` from `old_path` to `new_path` (verified first).
  Status WriteHeaderFor(const std::string& lower_path, std::string_view old_path,
                        std::string_view new_path);
  Status RenameEncryptedFile(std::string_view from, const std::string& lower_from,
                             std::string_view to, const std::string& lower_to, bool noreplace);
  Status RenameEncryptedDir(std::string_view from, const std::string& lower_from,
                            std::string_view to, const std::string& lower_to, bool noreplace);
  // A symlink's target is bound to its path: it is sealed again for `to`.
  Status RenameEncryptedLink(std::string_view from, const std::string& lower_from,
                             std::string_view to, const std::string& lower_to, bool noreplace);
  // Rename without random writes: a copy of the records under a new header.
  Status CopyEncryptedFile(const std::string& lower_from, std::string_view from,
                           const std::string& lower_to, std::string_view to);

  std::unique_ptr<KeySet> keys_;
  CryptOptions options_;
  RecordPool pool_;
  ScratchPool scratch_{64};  // idle buffers kept: more than calls at once with 16 FUSE threads
  // Guards `nodes_`. Never held while a node's lock is taken or a lower call runs.
  std::mutex nodes_mu_;
  std::map<std::string, std::weak_ptr<CryptNode>, std::less<>> nodes_;
  mutable std::atomic<int64_t> auth_failures_{0};
  IoCounters io_;
};

}  // namespace hfvfs::crypt
