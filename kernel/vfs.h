// File: vfs.h
//
// The VFS between FUSE and the top layer of a stack: inode numbers (inode_table.h), a cache of
// attributes and directory listings with a TTL, a short negative cache, open file and
// directory handles, and the bookkeeping of renames and removals. It knows nothing of FUSE
// (fuse_adapter.h translates), so it can be tested with a plain Layer.
//
// Consistency: what this mount changes is visible at once (caches are updated or dropped by
// every write operation); what changes below it is visible after the TTL, or at once when a
// layer calls Host::invalidate (mount_host.h calls DropCaches). `Capabilities::immutable`
// stacks get long TTLs.
//
// Thread safety: every method is thread-safe. Locks, in order: handles_mutex_ before
// cache_mutex_; the inode table's lock is a leaf. No lock is held while calling a layer.
#pragma once

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "hfvfs/layer.h"
#include "hfvfs/result.h"
#include "inode_table.h"

namespace hfvfs::kernel {

struct VfsOptions {
  std::chrono::milliseconds attr_ttl{10'000};
  std::chrono::milliseconds negative_ttl{1'000};
  // Used instead of attr_ttl when the stack is immutable.
  std::chrono::milliseconds immutable_ttl{24 * 3600 * 1000};
  size_t max_inodes = 0;  // soft limit of forgotten inodes kept (0 = default)
  bool read_only = false;
  uint32_t uid = 0;  // owner shown for every file
  uint32_t gid = 0;
};

// An entry reply: the inode (with one lookup reference taken unless ino == 0, a negative
// entry), its attributes and how long the kernel may cache them.
struct Entry {
  uint64_t ino = 0;
  uint64_t generation = 0;
  struct stat attr {};
  double attr_timeout = 0;
  double entry_timeout = 0;
};

struct AttrReply {
  struct stat attr {};
  double timeout = 0;
};

// One directory entry as served by readdir: "." and ".." first, then the listing.
struct DirItem {
  std::string name;
  Attr attr;
};

// Counters for `hfvfs status`, read with relaxed ordering.
struct VfsCounters {
  std::atomic<int64_t> lookups{0};
  std::atomic<int64_t> attr_cache_hits{0};
  std::atomic<int64_t> listings{0};
  std::atomic<int64_t> opens{0};
  std::atomic<int64_t> reads{0};
  std::atomic<int64_t> bytes_read{0};
  std::atomic<int64_t> writes{0};
  std::atomic<int64_t> bytes_written{0};
  std::atomic<int64_t> errors{0};
};

class Vfs {
 public:
  Vfs(std::shared_ptr<Layer> top, VfsOptions options);
  ~Vfs();
  Vfs(const Vfs&) = delete;
  Vfs& operator=(const Vfs&) = delete;

  const VfsOptions& options() const { return options_; }
  // The TTL for attributes and entries, in seconds, after the immutable rule.
  double ttl_seconds() const { return ttl_.count() / 1000.0; }
  bool immutable() const { return caps_.immutable; }
  double negative_ttl_seconds() const { return options_.negative_ttl.count() / 1000.0; }

  // An open file or folder handle.
  struct Opened {
    uint64_t fh = 0;
    bool keep_cache = false;  // the content is the version the kernel may still hold
  };

  // --- names ---
  // An entry reply for `name` in directory `parent`, taking one lookup reference. ENOENT means
  // the caller may reply a negative entry cached for negative_ttl_seconds().
  Result<Entry> Lookup(uint64_t parent, std::string_view name);
  void Forget(uint64_t ino, uint64_t count);
  Result<AttrReply> GetAttr(uint64_t ino);
  // `fh` is an open file handle (0 = none): truncation goes through it when given.
  Result<AttrReply> SetAttr(uint64_t ino, const hfvfs::SetAttr& change, uint64_t fh);

  // --- directories ---
  // Snapshots the listing; the handle serves readdir at any offset until ReleaseDir.
  // keep_cache: the names are those the kernel saw at the previous opendir of this folder, so
  // it may serve readdir from its own cache.
  Result<Opened> OpenDir(uint64_t ino);
  // Entries from `offset` (0 = start; the offset of item i is i + 1). Empty at the end.
  Result<std::vector<DirItem>> ReadDir(uint64_t dh, uint64_t offset, size_t max_items);
  // The entry reply for one item of an open directory (readdirplus): takes a lookup
  // reference, except for "." and "..", for which the kernel takes none.
  Entry EntryForItem(uint64_t dh, const DirItem& item);
  // The inode number for one item (plain readdir), without a reference.
  uint64_t InoForItem(uint64_t dh, const DirItem& item);
  void ReleaseDir(uint64_t dh);

  // --- files ---
  Result<Opened> Open(uint64_t ino, int flags);
  Result<std::pair<Entry, Opened>> Create(uint64_t parent, std::string_view name, uint32_t mode,
                                          int flags);
  // A read handed to `deliver` (File::read_lent): bytes the top layer holds in memory are
  // passed on without a copy into `buf`. The FUSE read handler uses it; Read is the same read
  // with every byte copied into `buf`.
  Result<size_t> Read(uint64_t fh, uint64_t offset, std::span<std::byte> buf);
  Status ReadLent(uint64_t fh, uint64_t offset, std::span<std::byte> buf,
                  const File::Deliver& deliver);
  Result<size_t> Write(uint64_t fh, uint64_t offset, std::span<const std::byte> data);
  Status Flush(uint64_t fh);
  Status Fsync(uint64_t fh, bool datasync);
  // Closes the file (FUSE release); the error is for the log only.
  Status Release(uint64_t fh);

  // --- changes ---
  Result<Entry> Mkdir(uint64_t parent, std::string_view name, uint32_t mode);
  Result<Entry> Symlink(std::string_view target, uint64_t parent, std::string_view name);
  Result<std::string> Readlink(uint64_t ino);
  Status Unlink(uint64_t parent, std::string_view name);
  Status Rmdir(uint64_t parent, std::string_view name);
  Status Rename(uint64_t parent, std::string_view name, uint64_t new_parent,
                std::string_view new_name, bool noreplace);
  Result<struct statvfs> Statfs();

  // --- for the host (invalidation) and status ---
  // Drops the cached attributes and listing of `path`, its parent's listing and a negative
  // entry for it. Safe from any thread, never calls a layer.
  void DropCaches(std::string_view path);
  std::optional<uint64_t> InodeOf(std::string_view path) const;
  bool HasOpenHandles(uint64_t ino) const;
  const VfsCounters& counters() const { return counters_; }
  void CountError() { counters_.errors.fetch_add(1, std::memory_order_relaxed); }
  InodeTable::Stats inode_stats() const { return inodes_.stats(); }
  size_t open_handles() const;

 private:
  struct OpenFile {
    uint64_t ino = 0;
    std::string path;  // follows renames; guarded by handles_mutex_ (read it by CurrentPath)
    std::unique_ptr<File> file;
    bool writable = false;
  };
  struct OpenDirectory {
    uint64_t ino = 0;
    std::string path;            // follows renames; guarded by handles_mutex_ (read it by DirOf)
    std::vector<DirItem> items;  // ".", "..", then the listing
  };
  struct CachedAttr {
    Attr attr;
    std::chrono::steady_clock::time_point expires;
  };
  struct CachedListing {
    std::vector<DirEntry> entries;
    std::chrono::steady_clock::time_point expires;
  };

  Result<std::string> PathOf(uint64_t ino) const;
  Result<std::string> ChildPath(uint64_t parent, std::string_view name) const;
  Result<Attr> StatPath(const std::string& path);
  Result<std::vector<DirEntry>> ListPath(const std::string& path);
  Entry MakeEntry(const std::string& path, const Attr& attr);
  struct stat ToStat(uint64_t ino, const Attr& attr) const;
  Status CheckWritable() const;
  std::shared_ptr<OpenFile> FindFile(uint64_t fh) const;
  std::string CurrentPath(const OpenFile& file) const;
  // The inode and current path of an open folder.
  std::pair<uint64_t, std::string> DirOf(uint64_t dh) const;
  // The stat of an open writable handle of `ino` (fresher than the layer's: unflushed writes),
  // or with `any_handle` of any open handle (an unlinked file).
  std::optional<Attr> StatThroughHandle(uint64_t ino, bool any_handle);
  std::shared_ptr<OpenFile> WriterOf(uint64_t ino) const;
  // After a change of `path`: drop its caches and its parent's listing.
  void Changed(std::string_view path);
  void RememberAttr(const std::string& path, const Attr& attr);

  const std::shared_ptr<Layer> top_;
  const VfsOptions options_;
  const Capabilities caps_;
  const std::chrono::milliseconds ttl_;
  InodeTable inodes_;
  VfsCounters counters_;

  // Guards files_, dirs_, open_count_, writers_, next_handle_, OpenFile::path,
  // OpenDirectory::path.
  mutable std::mutex handles_mutex_;
  std::unordered_map<uint64_t, std::shared_ptr<OpenFile>> files_;
  std::unordered_map<uint64_t, std::shared_ptr<OpenDirectory>> dirs_;
  std::unordered_map<uint64_t, int> open_count_;  // ino -> open file handles
  std::unordered_map<uint64_t, std::vector<std::shared_ptr<OpenFile>>> writers_;  // writable ones
  uint64_t next_handle_ = 1;

  // Guards attrs_, listings_, negatives_, versions_. Taken after handles_mutex_ if both.
  mutable std::mutex cache_mutex_;
  std::unordered_map<std::string, CachedAttr> attrs_;
  std::unordered_map<std::string, CachedListing> listings_;
  std::unordered_map<std::string, std::chrono::steady_clock::time_point> negatives_;
  // The content version the kernel last saw per inode, for keep_cache.
  std::unordered_map<uint64_t, std::string> versions_;
  // A hash of the names and types the kernel last listed per folder inode, for keep_cache.
  std::unordered_map<uint64_t, uint64_t> listing_hashes_;
};

}  // namespace hfvfs::kernel
