// File: inode_table.h
//
// The kernel's path <-> inode map. Layers speak paths; FUSE speaks inode numbers. Every number
// handed to the FUSE kernel module in an entry reply holds one "lookup" reference, dropped by
// FORGET; an inode lives while the kernel references it, even after its path is gone (an
// unlinked file still open). Forgotten entries (no reference) are kept, least recently used
// first, so a path keeps its number while memory allows; beyond the soft limit the oldest are
// evicted (crawlers like `find` must not grow memory without bound).
//
// Inode numbers are recycled after eviction; each reuse bumps the number's generation, so the
// pair (ino, generation) never names two different files during one mount.
//
// Thread safety: every method is thread-safe (one internal mutex, a leaf lock: nothing is
// called while holding it).
#pragma once

#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace hfvfs::kernel {

inline constexpr uint64_t kRootInode = 1;

struct InodeRef {
  uint64_t ino = 0;
  uint64_t generation = 0;
};

class InodeTable {
 public:
  // `soft_limit`: how many forgotten entries to keep (0 = 100,000).
  explicit InodeTable(size_t soft_limit = 0);
  InodeTable(const InodeTable&) = delete;
  InodeTable& operator=(const InodeTable&) = delete;

  // The inode of `path`, created if needed, with one more lookup reference (an entry reply).
  InodeRef Lookup(std::string_view path);
  // The inode of `path`, created if needed, without a reference (plain readdir's d_ino).
  InodeRef Assign(std::string_view path);
  // The inode of `path` if the table has one; no reference taken.
  std::optional<InodeRef> Find(std::string_view path) const;
  // The current path of `ino`; nullopt for an unknown inode or one whose path was removed.
  std::optional<std::string> PathOf(uint64_t ino) const;
  // Whether `ino` is known (live or forgotten-but-kept).
  bool Contains(uint64_t ino) const;

  // Drops `count` lookup references (FUSE forget). An inode without references and without a
  // path is erased; one with a path joins the forgotten list.
  void Forget(uint64_t ino, uint64_t count);

  // The path is gone (unlink, rmdir, or replaced by a rename): the inode stays while the kernel
  // references it, but no longer answers to the path.
  void Detach(std::string_view path);
  // `from` (and everything below it) now lives at `to`; whatever was at `to` is detached.
  void Rename(std::string_view from, std::string_view to);

  struct Stats {
    size_t inodes = 0;     // all entries, root included
    size_t forgotten = 0;  // entries without a lookup reference, evictable
    size_t orphans = 0;    // entries whose path was removed while referenced
    uint64_t evicted = 0;  // entries evicted by the soft limit, since the start
  };
  Stats stats() const;

 private:
  struct Node {
    std::string path;
    uint64_t generation = 1;
    uint64_t nlookup = 0;
    bool attached = true;  // `path` still names this inode
    // Position in forgotten_ when nlookup == 0 and attached.
    std::list<uint64_t>::iterator lru;
    bool in_lru = false;
  };

  InodeRef GetOrCreateLocked(std::string_view path);
  void TouchLocked(uint64_t ino, Node& node);
  void ReleaseLocked(uint64_t ino, Node& node);
  void DetachLocked(uint64_t ino, Node& node);
  void EraseLocked(uint64_t ino);
  void EvictLocked();

  const size_t soft_limit_;
  mutable std::mutex mutex_;  // guards everything below
  std::unordered_map<uint64_t, Node> nodes_;
  std::unordered_map<std::string, uint64_t> by_path_;  // attached nodes only
  std::list<uint64_t> forgotten_;                      // front = least recently used
  std::vector<std::pair<uint64_t, uint64_t>> free_;    // (ino, last generation) to reuse
  uint64_t next_ino_ = kRootInode + 1;
  uint64_t evicted_ = 0;
};

}  // namespace hfvfs::kernel
