// File: sync_layer.h
//
// The `sync` wrapper: write-back staging on local disk, a crash-safe journal, debounced
// asynchronous upload through the lower layer's sequential write path, and remote-change
// polling reported up the stack (changes()) and to the kernel (Host::invalidate).
//
// Contract with the lower layer: it must be writable (create + sequential writes of a whole
// file; random writes are never asked for). rename below is used when it can rename; files
// this layer holds in staging are renamed locally and the old name removed below instead.
//
// Consistency: a staged file (open for writing, or dirty) is served from its staging copy;
// every other path is served by the lower layer. Nothing that flush() (close(2)), fsync(2) or
// a truncate accepted is lost: the staging copy is fdatasync'd and a journal record written
// before the call returns, and start() of the next mount replays the journal.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "hfvfs/layer.h"
#include "hfvfs/plugin.h"

namespace hfvfs::sync {

enum class ConflictPolicy { kLocalWins, kKeepBoth };

struct SyncOptions {
  std::chrono::milliseconds poll_interval{30'000};  // 0 disables polling
  std::chrono::milliseconds metadata_ttl{10'000};   // this layer's cache of stat() below
  std::string staging_dir;                          // the per-mount folder is below it
  // The per-mount folder's name below staging_dir; empty = the mount's id (a hash of the spec
  // path and its stack). Set it to keep a journal across a moved or renamed spec file.
  std::string staging_name;
  std::chrono::milliseconds flush_debounce{2'000};
  std::chrono::milliseconds flush_max_window{30'000};
  std::chrono::milliseconds shutdown_timeout{45'000};
  // Clean staged files (uploaded, no handle) are kept as local copies while the staged files
  // total at most this many bytes, least recently used evicted first; 0 = not kept (dropped
  // once uploaded). Dirty and open files are never evicted, so they may exceed it.
  uint64_t max_staging_size = 0;
  ConflictPolicy conflict = ConflictPolicy::kLocalWins;
  // First retry delay of a failed upload; doubles up to 60 s.
  std::chrono::milliseconds retry_initial{1'000};
  size_t upload_chunk = 4 << 20;  // bytes per write to the lower layer
};

// Reads the options from the spec (the keys of issue 8, plus `conflict`).
Result<SyncOptions> ReadSyncOptions(ConfigView& config);

class SyncCore;

class SyncLayer : public LayerWrapper {
 public:
  // `mount_id` names the per-mount staging folder (staging_dir/<mount_id>), so the next mount
  // of the same spec finds the journal.
  SyncLayer(std::shared_ptr<Layer> lower, Host& host, SyncOptions options);
  ~SyncLayer() override;

  std::string_view type() const override { return "sync"; }
  Capabilities capabilities() const override;
  Status start() override;
  Status shutdown(std::chrono::steady_clock::time_point deadline) override;

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
  Result<Changes> changes() override;
  void counters(std::vector<std::pair<std::string, int64_t>>& out) const override;
  // The last error (upload, removal below, fetch, poll): when, errno, and the message naming
  // the operation and the path.
  void status_notes(std::vector<std::string>& out) const override;

  // For tests: one poll now (probe, then re-list), on the caller's thread.
  Status PollNow();
  // For tests and fsync: upload every dirty file now; returns the first error.
  Status FlushAllNow();

 private:
  // Shared with the worker threads, so that a worker stuck in a lower call at destruction
  // can be left behind safely.
  std::shared_ptr<SyncCore> core_;
};

}  // namespace hfvfs::sync
