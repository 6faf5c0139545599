// File: sync_core.h
//
// The state and workers behind SyncLayer (sync_layer.h). Internal to the plugin; tests use it
// through SyncLayer.
//
// Lock order (never take an earlier lock while holding a later one):
//   Staged::upload_mu (several only in rename, in path order) -> SyncCore::removes_mu_
//   -> Staged::io_mu -> SyncCore::mu_ -> Journal (its own leaf mutex)
// Fill::mu comes after Staged::io_mu and is never held together with mu_ (either order).
// No lower-layer call is made while holding mu_ (they may block for a long time); Host
// invalidations are collected under mu_ and issued after it is released.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "extent_set.h"
#include "hfvfs/layer.h"
#include "hfvfs/plugin.h"
#include "journal.h"
#include "sync_layer.h"

namespace hfvfs::sync {

using Clock = std::chrono::steady_clock;

// The fetch of an existing file's content into its staging file, lazily: a read fetches the
// ranges it needs itself, a background fetcher brings the rest in file order, and writes and
// truncation mark their ranges final (never overwritten by fetched bytes). Content must be
// complete before it is journaled or uploaded (SyncCore::WaitFilled), so the journal only ever
// names complete files.
struct Fill {
  // Keeps a source handle for reads; closed when the last user lets go.
  struct Source {
    std::unique_ptr<File> file;
    ~Source() {
      if (file) (void)file->close();
    }
  };
  std::string path;        // the name below it is fetched from
  uint64_t base_size = 0;  // its size below at staging
  // Guards everything below. Taken after Staged::io_mu (and never with SyncCore::mu_ held by
  // the same thread for longer than a field read).
  std::mutex mu;
  std::condition_variable cv;  // progress, completion, failure
  ExtentSet final;             // bytes whose final content is in the staging file
  std::shared_ptr<Source> source;
  bool fetcher_running = false;
  std::optional<Error> error;  // the last failed fetch (cleared by the next attempt)
  std::atomic<bool> done{false};
};

// One file held in staging: open for writing, or dirty (not yet uploaded below).
struct Staged : std::enable_shared_from_this<Staged> {
  // Held for a whole upload, and by rename/remove of this entry, so that no upload of an old
  // name lands below after the entry moved or was removed.
  std::mutex upload_mu;
  // Guards the content of the staging file against truncate racing write (shared for reads
  // and uploads, exclusive for write/truncate).
  std::shared_mutex io_mu;

  // Everything below is guarded by SyncCore::mu_.
  enum class State { kLoading, kReady, kFailed };
  State state = State::kLoading;
  std::string path;  // the current name; the key in SyncCore::staged_
  uint64_t id = 0;   // staging file data/<id>
  int fd = -1;
  uint64_t size = 0;
  uint32_t mode = 0644;
  int64_t mtime_ns = 0;
  bool mode_set_here = false;   // chmod while staged: applied below after the upload
  bool mtime_set_here = false;  // utimens while staged: likewise
  bool base_exists = false;     // the path existed below at the last upload or staging
  std::string base_version;     // its version below then; another one means a remote change
  uint64_t generation = 0;      // bumped by every change of content
  uint64_t uploaded_generation = 0;
  uint64_t journal_seq = 0;           // the live S record, 0 = not journaled
  bool journal_inline = false;        // that record holds the content itself (small files)
  uint64_t journaled_generation = 0;  // content durable (record + data) up to this generation
  bool journaling = false;            // a JournalDirty runs for it (without mu_)
  int open_handles = 0;
  // Set while (and after) existing content is fetched lazily; null when there was nothing to
  // fetch. The pointer is set once, before the entry is ready.
  std::shared_ptr<Fill> fill;
  bool removed = false;             // unlinked or replaced: never uploaded again
  bool closed_since_dirty = false;  // flush()/close seen since the last write
  bool urgent = false;              // an fsync waits for it
  bool uploading = false;           // an uploader has it
  Clock::time_point first_dirty{};
  Clock::time_point last_change{};
  int failures = 0;  // consecutive failed uploads
  Clock::time_point next_attempt{};
  uint64_t upload_attempts = 0;  // finished attempts, for fsync waiters
  // Kept clean copies (max_staging_size): the last open or close, for least-recently-used
  // eviction; and whether the path changed below since (dropped once its handles are closed).
  Clock::time_point last_used{};
  bool stale = false;

  bool dirty() const { return generation != uploaded_generation; }
  bool filled() const { return !fill || fill->done.load(); }
  ~Staged();
};

class SyncCore : public std::enable_shared_from_this<SyncCore> {
 public:
  SyncCore(std::shared_ptr<Layer> lower, Host& host, SyncOptions options);
  ~SyncCore();

  Capabilities capabilities() const;
  Status Start();
  Status Shutdown(Clock::time_point deadline);
  // Stops the workers (waiting a short while for them to leave lower calls).
  void StopWorkers();

  Result<Attr> Stat(const std::string& path);
  Result<std::vector<DirEntry>> List(const std::string& dir);
  Result<std::unique_ptr<File>> Open(const std::string& path, int flags);
  Result<std::unique_ptr<File>> Create(const std::string& path, uint32_t mode, int flags);
  Status Mkdir(const std::string& path, uint32_t mode);
  Status Remove(const std::string& path);
  Status Rmdir(const std::string& path);
  Status Rename(const std::string& from, const std::string& to, bool noreplace);
  Status Setattr(const std::string& path, const SetAttr& change);
  Status Symlink(const std::string& target, const std::string& path);
  Result<Changes> TakeChanges();
  void Counters(std::vector<std::pair<std::string, int64_t>>& out) const;
  void StatusNotes(std::vector<std::string>& out) const;
  Status PollOnce();
  Status FlushAll(Clock::time_point deadline);

  // File operations on a staged entry (SyncFile forwards here).
  Result<size_t> ReadStaged(Staged& e, uint64_t offset, std::span<std::byte> buf);
  Result<size_t> WriteStaged(Staged& e, uint64_t offset, std::span<const std::byte> data);
  Status TruncateStaged(Staged& e, uint64_t size);
  Status FlushStaged(Staged& e);
  Status FsyncStaged(Staged& e);
  Status CloseStaged(const std::shared_ptr<Staged>& e);
  Attr AttrOf(Staged& e);

 private:
  enum class StageHow { kExisting, kTruncate, kCreate };
  struct Invalidate {
    std::string path;
    Invalidation what;
  };

  // The staged entry of `path`, staging it first if needed, with one open handle counted
  // for the caller (released by CloseStaged), so that no upload drops it meanwhile.
  Result<std::shared_ptr<Staged>> Stage(const std::string& path, StageHow how, uint32_t mode);
  Status FillStaged(Staged& e, const std::string& path, StageHow how, uint32_t mode);
  // Lazy fill (struct Fill). StartFetcher runs the background fetcher unless it runs or the
  // fill is done. WaitFilled waits until the content is complete, starting a new fetch attempt
  // after a failed one; call without mu_. FetchRange fetches [begin, end) from below and writes
  // the parts not yet final (takes io_mu exclusive; call without it).
  void StartFetcher(Staged& e);
  void FetcherLoop(std::shared_ptr<Staged> e);
  Status WaitFilled(Staged& e);
  Status FetchRange(Staged& e, uint64_t begin, uint64_t end);
  // Requires mu_. Fsyncs the content and writes an S record if none is live. Only for a new,
  // empty file that must retire a pending removal in the same write (Stage).
  Status JournalDirtyLocked(Staged& e);
  // Makes the current content of a dirty entry durable before close()/fsync() return: a
  // small file is written into its S record; a big one is fdatasync'd (and named by an S
  // record if none is live). The syncs and the journal's group commit run without mu_;
  // Remove, Rename and Upload wait for `journaling` before they touch journal_seq. Call
  // without mu_, after WaitFilled.
  Status JournalDirty(Staged& e);
  // Requires mu_. Drops a clean or removed entry with no handles (file and map entry), unless
  // clean copies are kept (max_staging_size): then it stays and EvictLocked bounds them.
  void MaybeDropLocked(const std::shared_ptr<Staged>& e);
  // Requires mu_. Drops `e` now: its map entry (if it is still the one of its path) and file.
  // By value: callers may pass the map's own pointer, which the erase destroys.
  void DropLocked(std::shared_ptr<Staged> e);
  // Requires mu_. A kept clean copy: ready, uploaded, no handle, no live record. (A clean
  // entry may still be flagged `uploading` just after its upload; dropping it then is safe.)
  bool KeptLocked(const Staged& e) const;
  // Requires mu_. Evicts kept clean copies, least recently used first, until the staged files
  // total at most max_staging_size.
  void EvictLocked();
  // Requires mu_. Drops the kept clean copies of `path` and of every path below it, so that
  // namespace changes go below as for files never staged.
  void DropKeptLocked(const std::string& path);
  // A kept clean copy of `path` whose version below moved (someone else changed the file) is
  // dropped, so the next open reads the new content. Uses StatBelow (metadata_ttl applies).
  // Takes mu_ itself; call without it.
  void RevalidateKept(const std::string& path);
  void MarkDirtyLocked(Staged& e);
  Attr AttrOfLocked(const Staged& e) const;
  // Requires mu_: our own change to `path` below; the next poll must not report it, and the
  // cached attributes and listing entry of it are no longer trusted.
  void TouchedLocked(const std::string& path);
  // Requires mu_: drops the cached listings of `dir` and of every folder below it.
  void ForgetListingsLocked(const std::string& dir);
  // stat() below, answered from the attribute cache or a fresh listing of the parent when
  // metadata_ttl allows. Takes mu_ itself; call without it.
  Result<Attr> StatBelow(const std::string& path);
  // Retires a pending removal of `path` (requires removes_mu_, not mu_).
  Status RetireRemoveHeld(const std::string& path);
  std::string DataPath(uint64_t id) const;
  // Requires mu_. The staged entry of `path`, or null (never inserts).
  std::shared_ptr<Staged> FindLocked(const std::string& path) const;

  Status Upload(const std::shared_ptr<Staged>& e);
  Status KeepRemoteCopy(const std::string& path);
  Status RunPendingRemove(const std::string& path);
  void FlusherLoop();
  void PollerLoop();
  // Compares a fresh listing of `dir` below with the last one and reports what moved.
  void DiffListing(const std::string& dir, const std::vector<DirEntry>& entries);
  void Deliver(std::vector<Invalidate>& invalidations);
  void RecordFailure(Staged& e, const Error& error);
  // Requires mu_: remembers `error` as the last one, for `hfvfs status`.
  void NoteErrorLocked(const Error& error);

  const std::shared_ptr<Layer> lower_;
  Host& host_;
  const SyncOptions opt_;
  std::string dir_;  // staging_dir/<mount id>
  std::unique_ptr<Journal> journal_;
  int lock_fd_ = -1;

  // Serializes removals below with the retirement of pending removals.
  std::mutex removes_mu_;

  // Guards everything below, and the fields of every Staged.
  mutable std::mutex mu_;
  std::condition_variable cv_;  // staging done, work for the flusher, uploads done, stop
  std::map<std::string, std::shared_ptr<Staged>> staged_;
  std::map<std::string, uint64_t> pending_removes_;  // path -> X seq
  Clock::time_point removes_next_attempt_{};
  int remove_failures_ = 0;
  bool removes_running_ = false;  // one uploader runs the pending removals at a time
  uint64_t next_id_ = 1;
  uint64_t drops_ = 0;  // clean staged entries dropped (their content is below now)
  struct CachedAttr {
    Attr attr;
    Clock::time_point expires;
  };
  std::unordered_map<std::string, CachedAttr> attr_cache_;
  // Listings below served by list() within metadata_ttl: name -> its attributes, or nullopt
  // for a name changed through this layer since (ask below). A name absent is ENOENT.
  struct ListedDir {
    std::map<std::string, std::optional<Attr>> names;
    Clock::time_point expires;
  };
  std::unordered_map<std::string, ListedDir> listed_;
  // Listings below of the directories the mount has listed: name -> kind + version.
  std::map<std::string, std::map<std::string, std::string>> snapshots_;
  std::set<std::string> self_touched_;
  std::vector<Change> pending_changes_;
  bool changes_overflow_ = false;
  std::string last_token_;
  std::string last_error_;  // the message: operation, path and the cause below
  int last_error_code_ = 0;
  std::chrono::system_clock::time_point last_error_at_{};
  int64_t errors_ = 0;  // every error noted
  bool started_ = false;
  bool draining_ = false;
  bool stopping_ = false;
  int workers_running_ = 0;
  std::vector<std::thread> flushers_;  // the uploaders
  std::thread poller_;

  std::atomic<int64_t> uploads_in_flight_{0};
  std::atomic<int64_t> uploads_done_{0};
  std::atomic<int64_t> bytes_uploaded_{0};
  std::atomic<int64_t> upload_failures_{0};
  std::atomic<int64_t> conflicts_{0};
  std::atomic<int64_t> polls_{0};
  std::atomic<int64_t> poll_errors_{0};
  std::atomic<int64_t> remote_changes_{0};
  std::atomic<int64_t> replayed_{0};
  std::atomic<int64_t> listing_hits_{0};
  std::atomic<int64_t> evictions_{0};
  std::atomic<int64_t> bytes_fetched_{0};
  std::atomic<int64_t> journal_skips_{0};  // closes whose content was already durable
  std::atomic<int64_t> fills_in_flight_{0};
};

}  // namespace hfvfs::sync
