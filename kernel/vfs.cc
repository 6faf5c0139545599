#include "vfs.h"

#include <fcntl.h>

#include <algorithm>
#include <cstring>

#include "hfvfs/path.h"

namespace hfvfs::kernel {

namespace {

using Clock = std::chrono::steady_clock;

constexpr uint32_t kDefaultDirMode = 0755;
constexpr uint32_t kDefaultFileMode = 0644;
constexpr uint32_t kDefaultLinkMode = 0777;
// What statfs reports when a layer cannot tell (an object store has no capacity): 1 PiB free.
constexpr uint64_t kUnknownCapacityBytes = uint64_t{1} << 50;
// Preferred I/O size shown in st_blksize: tools like cp and cat size their buffers on it.
constexpr uint32_t kPreferredIoSize = 1 << 20;

bool IsWriteOpen(int flags) {
  int mode = flags & O_ACCMODE;
  return mode == O_WRONLY || mode == O_RDWR || (flags & O_TRUNC) != 0;
}

// True for `path` itself and everything under it, and for the parent's listing.
bool Affected(std::string_view key, std::string_view path) { return IsUnder(key, path); }

}  // namespace

Vfs::Vfs(std::shared_ptr<Layer> top, VfsOptions options)
    : top_(std::move(top)),
      options_(options),
      caps_(top_->capabilities()),
      ttl_(caps_.immutable ? options.immutable_ttl : options.attr_ttl),
      inodes_(options.max_inodes) {}

Vfs::~Vfs() = default;

// ---------------------------------------------------------------------------------------------
// helpers

Result<std::string> Vfs::PathOf(uint64_t ino) const {
  std::optional<std::string> path = inodes_.PathOf(ino);
  if (!path) {
    if (inodes_.Contains(ino)) return Err(ENOENT, "the file was removed");
    return Err(ESTALE, "unknown inode " + std::to_string(ino));
  }
  return *path;
}

Result<std::string> Vfs::ChildPath(uint64_t parent, std::string_view name) const {
  HFVFS_ASSIGN_OR_RETURN(std::string dir, PathOf(parent));
  if (name.size() > 255) return Err(ENAMETOOLONG, "name longer than 255 bytes");
  HFVFS_RETURN_IF_ERROR(CheckName(name));
  return JoinPath(dir, name);
}

Status Vfs::CheckWritable() const {
  if (options_.read_only) return Err(EROFS, "the mount is read-only (options.read_only)");
  return Ok();
}

struct stat Vfs::ToStat(uint64_t ino, const Attr& attr) const {
  struct stat st {};
  st.st_ino = ino;
  uint32_t mode = attr.mode & 07777;
  switch (attr.type) {
    case FileType::kDirectory:
      st.st_mode = S_IFDIR | (mode ? mode : kDefaultDirMode);
      st.st_nlink = 2;
      break;
    case FileType::kSymlink:
      st.st_mode = S_IFLNK | (mode ? mode : kDefaultLinkMode);
      st.st_nlink = 1;
      break;
    case FileType::kFile:
      st.st_mode = S_IFREG | (mode ? mode : kDefaultFileMode);
      st.st_nlink = 1;
      break;
  }
  st.st_size = static_cast<off_t>(attr.size);
  st.st_blocks = static_cast<blkcnt_t>((attr.size + 511) / 512);
  st.st_blksize = kPreferredIoSize;
  st.st_uid = options_.uid;
  st.st_gid = options_.gid;
  timespec ts{static_cast<time_t>(attr.mtime_ns / 1'000'000'000),
              static_cast<long>(attr.mtime_ns % 1'000'000'000)};
  if (ts.tv_nsec < 0) {
    ts.tv_nsec += 1'000'000'000;
    ts.tv_sec -= 1;
  }
  st.st_mtim = ts;
  st.st_ctim = ts;
  st.st_atim = ts;
  return st;
}

Entry Vfs::MakeEntry(const std::string& path, const Attr& attr) {
  InodeRef ref = inodes_.Lookup(path);
  Entry e;
  e.ino = ref.ino;
  e.generation = ref.generation;
  e.attr = ToStat(ref.ino, attr);
  e.attr_timeout = ttl_seconds();
  e.entry_timeout = ttl_seconds();
  return e;
}

void Vfs::RememberAttr(const std::string& path, const Attr& attr) {
  std::lock_guard lock(cache_mutex_);
  attrs_[path] = CachedAttr{attr, Clock::now() + ttl_};
  negatives_.erase(path);
}

Result<Attr> Vfs::StatPath(const std::string& path) {
  const auto now = Clock::now();
  {
    std::lock_guard lock(cache_mutex_);
    if (auto it = attrs_.find(path); it != attrs_.end()) {
      if (now < it->second.expires) {
        counters_.attr_cache_hits.fetch_add(1, std::memory_order_relaxed);
        return it->second.attr;
      }
      attrs_.erase(it);
    }
    if (auto it = negatives_.find(path); it != negatives_.end()) {
      if (now < it->second) return Err(ENOENT, "no such file (cached)");
      negatives_.erase(it);
    }
    // A fresh listing of the parent is authoritative for its children until it expires.
    if (!path.empty()) {
      if (auto it = listings_.find(std::string(ParentPath(path))); it != listings_.end()) {
        if (now < it->second.expires) {
          std::string_view name = BaseName(path);
          for (const DirEntry& entry : it->second.entries)
            if (entry.name == name) return entry.attr;
          return Err(ENOENT, "no such file");
        }
      }
    }
  }
  Result<Attr> attr = top_->stat(path);
  if (attr.ok()) {
    RememberAttr(path, *attr);
  } else if (attr.code() == ENOENT) {
    std::lock_guard lock(cache_mutex_);
    negatives_[path] = Clock::now() + options_.negative_ttl;
  }
  return attr;
}

Result<std::vector<DirEntry>> Vfs::ListPath(const std::string& path) {
  {
    std::lock_guard lock(cache_mutex_);
    if (auto it = listings_.find(path); it != listings_.end()) {
      if (Clock::now() < it->second.expires) return it->second.entries;
      listings_.erase(it);
    }
  }
  counters_.listings.fetch_add(1, std::memory_order_relaxed);
  HFVFS_ASSIGN_OR_RETURN(std::vector<DirEntry> entries, top_->list(path));
  const auto expires = Clock::now() + ttl_;
  std::lock_guard lock(cache_mutex_);
  for (const DirEntry& entry : entries) {
    std::string child = JoinPath(path, entry.name);
    attrs_[child] = CachedAttr{entry.attr, expires};
    negatives_.erase(child);
  }
  listings_[path] = CachedListing{entries, expires};
  return entries;
}

std::shared_ptr<Vfs::OpenFile> Vfs::FindFile(uint64_t fh) const {
  std::lock_guard lock(handles_mutex_);
  auto it = files_.find(fh);
  return it == files_.end() ? nullptr : it->second;
}

std::string Vfs::CurrentPath(const OpenFile& file) const {
  std::lock_guard lock(handles_mutex_);
  return file.path;
}

std::shared_ptr<Vfs::OpenFile> Vfs::WriterOf(uint64_t ino) const {
  std::lock_guard lock(handles_mutex_);
  auto it = writers_.find(ino);
  return it == writers_.end() || it->second.empty() ? nullptr : it->second.front();
}

std::optional<Attr> Vfs::StatThroughHandle(uint64_t ino, bool any_handle) {
  std::shared_ptr<OpenFile> best = WriterOf(ino);
  if (!best && any_handle) {
    // An unlinked file: only its open handles know it. Rare, so a scan is fine.
    std::lock_guard lock(handles_mutex_);
    for (const auto& [fh, file] : files_)
      if (file->ino == ino) {
        best = file;
        break;
      }
  }
  if (!best) return std::nullopt;
  Result<Attr> attr = best->file->stat();
  if (!attr) return std::nullopt;
  return *attr;
}

void Vfs::Changed(std::string_view path) {
  std::lock_guard lock(cache_mutex_);
  std::string key(path);
  attrs_.erase(key);
  listings_.erase(key);
  negatives_.erase(key);
  if (!path.empty()) listings_.erase(std::string(ParentPath(path)));
}

void Vfs::DropCaches(std::string_view path) { Changed(path); }

std::optional<uint64_t> Vfs::InodeOf(std::string_view path) const {
  std::optional<InodeRef> ref = inodes_.Find(path);
  if (!ref) return std::nullopt;
  return ref->ino;
}

bool Vfs::HasOpenHandles(uint64_t ino) const {
  std::lock_guard lock(handles_mutex_);
  return open_count_.count(ino) != 0;
}

size_t Vfs::open_handles() const {
  std::lock_guard lock(handles_mutex_);
  return files_.size();
}

// ---------------------------------------------------------------------------------------------
// names

Result<Entry> Vfs::Lookup(uint64_t parent, std::string_view name) {
  counters_.lookups.fetch_add(1, std::memory_order_relaxed);
  HFVFS_ASSIGN_OR_RETURN(std::string path, ChildPath(parent, name));
  HFVFS_ASSIGN_OR_RETURN(Attr attr, StatPath(path));
  return MakeEntry(path, attr);
}

void Vfs::Forget(uint64_t ino, uint64_t count) { inodes_.Forget(ino, count); }

Result<AttrReply> Vfs::GetAttr(uint64_t ino) {
  // A writer's handle knows the size of unflushed writes; an unlinked file only has handles.
  std::optional<Attr> through_handle = StatThroughHandle(ino, /*any_handle=*/false);
  if (!through_handle) {
    Result<std::string> path = PathOf(ino);
    if (path) {
      HFVFS_ASSIGN_OR_RETURN(Attr attr, StatPath(*path));
      return AttrReply{ToStat(ino, attr), ttl_seconds()};
    }
    through_handle = StatThroughHandle(ino, /*any_handle=*/true);
    if (!through_handle) return path.error();
  }
  return AttrReply{ToStat(ino, *through_handle), ttl_seconds()};
}

Result<AttrReply> Vfs::SetAttr(uint64_t ino, const hfvfs::SetAttr& change, uint64_t fh) {
  HFVFS_RETURN_IF_ERROR(CheckWritable());
  Result<std::string> path = PathOf(ino);
  hfvfs::SetAttr rest = change;
  if (change.set_size) {
    // Truncation goes through an open handle when there is one: a layer that stages writes
    // must see it in order with them.
    std::shared_ptr<OpenFile> file = fh ? FindFile(fh) : nullptr;
    if (!file) file = WriterOf(ino);
    if (file) {
      HFVFS_RETURN_IF_ERROR(file->file->truncate(change.size));
      rest.set_size = false;
    }
  }
  if (rest.set_size || rest.set_mode || rest.set_mtime) {
    if (!path) return path.error();
    HFVFS_RETURN_IF_ERROR(top_->setattr(*path, rest));
  }
  if (path) Changed(*path);
  return GetAttr(ino);
}

// ---------------------------------------------------------------------------------------------
// directories

Result<Vfs::Opened> Vfs::OpenDir(uint64_t ino) {
  HFVFS_ASSIGN_OR_RETURN(std::string path, PathOf(ino));
  HFVFS_ASSIGN_OR_RETURN(Attr self, StatPath(path));
  if (!self.is_dir()) return Err(ENOTDIR, "not a folder");
  HFVFS_ASSIGN_OR_RETURN(std::vector<DirEntry> entries, ListPath(path));
  auto dir = std::make_shared<OpenDirectory>();
  dir->ino = ino;
  dir->path = path;
  dir->items.reserve(entries.size() + 2);
  dir->items.push_back({".", self});
  Attr parent_attr = self;
  if (!path.empty()) {
    if (Result<Attr> p = StatPath(std::string(ParentPath(path))); p) parent_attr = *p;
  }
  dir->items.push_back({"..", parent_attr});
  // FNV-1a over names and types: what the kernel's readdir cache holds.
  uint64_t hash = 1469598103934665603ull;
  for (const DirEntry& entry : entries) {
    for (unsigned char c : entry.name) hash = (hash ^ c) * 1099511628211ull;
    hash = (hash ^ (0x100u + static_cast<unsigned>(entry.attr.type))) * 1099511628211ull;
  }
  for (DirEntry& entry : entries) dir->items.push_back({std::move(entry.name), entry.attr});
  Opened opened;
  {
    std::lock_guard lock(cache_mutex_);
    auto [it, inserted] = listing_hashes_.try_emplace(ino, hash);
    opened.keep_cache = !inserted && it->second == hash;
    it->second = hash;
  }
  std::lock_guard lock(handles_mutex_);
  opened.fh = next_handle_++;
  dirs_.emplace(opened.fh, std::move(dir));
  return opened;
}

Result<std::vector<DirItem>> Vfs::ReadDir(uint64_t dh, uint64_t offset, size_t max_items) {
  std::shared_ptr<OpenDirectory> dir;
  {
    std::lock_guard lock(handles_mutex_);
    auto it = dirs_.find(dh);
    if (it == dirs_.end()) return Err(EBADF, "unknown directory handle");
    dir = it->second;
  }
  std::vector<DirItem> out;
  for (uint64_t i = offset; i < dir->items.size() && out.size() < max_items; ++i)
    out.push_back(dir->items[i]);
  return out;
}

std::pair<uint64_t, std::string> Vfs::DirOf(uint64_t dh) const {
  std::lock_guard lock(handles_mutex_);
  auto it = dirs_.find(dh);
  if (it == dirs_.end()) return {kRootInode, ""};  // the kernel only sends open handles
  return {it->second->ino, it->second->path};
}

Entry Vfs::EntryForItem(uint64_t dh, const DirItem& item) {
  if (item.name == "." || item.name == "..") {
    Entry e;
    e.ino = InoForItem(dh, item);
    e.attr = ToStat(e.ino, item.attr);
    return e;
  }
  auto [ino, path] = DirOf(dh);
  return MakeEntry(JoinPath(path, item.name), item.attr);
}

uint64_t Vfs::InoForItem(uint64_t dh, const DirItem& item) {
  auto [ino, path] = DirOf(dh);
  if (item.name == ".") return ino;
  if (item.name == "..") {
    if (path.empty()) return kRootInode;
    return inodes_.Assign(ParentPath(path)).ino;
  }
  return inodes_.Assign(JoinPath(path, item.name)).ino;
}

void Vfs::ReleaseDir(uint64_t dh) {
  std::lock_guard lock(handles_mutex_);
  dirs_.erase(dh);
}

// ---------------------------------------------------------------------------------------------
// files

Result<Vfs::Opened> Vfs::Open(uint64_t ino, int flags) {
  const bool writable = IsWriteOpen(flags);
  if (writable) HFVFS_RETURN_IF_ERROR(CheckWritable());
  HFVFS_ASSIGN_OR_RETURN(std::string path, PathOf(ino));
  counters_.opens.fetch_add(1, std::memory_order_relaxed);
  HFVFS_ASSIGN_OR_RETURN(std::unique_ptr<File> file, top_->open(path, flags));
  if (flags & O_TRUNC) Changed(path);

  Opened opened;
  Result<Attr> attr = file->stat();
  {
    std::lock_guard lock(cache_mutex_);
    if (attr && !attr->version.empty() && !(flags & O_TRUNC)) {
      auto [it, inserted] = versions_.try_emplace(ino, attr->version);
      opened.keep_cache = !inserted && it->second == attr->version;
      it->second = attr->version;
    } else {
      versions_.erase(ino);
    }
  }
  auto open = std::make_shared<OpenFile>();
  open->ino = ino;
  open->path = path;
  open->file = std::move(file);
  open->writable = writable;
  std::lock_guard lock(handles_mutex_);
  opened.fh = next_handle_++;
  if (writable) writers_[ino].push_back(open);
  files_.emplace(opened.fh, std::move(open));
  ++open_count_[ino];
  return opened;
}

Result<std::pair<Entry, Vfs::Opened>> Vfs::Create(uint64_t parent, std::string_view name,
                                                  uint32_t mode, int flags) {
  HFVFS_RETURN_IF_ERROR(CheckWritable());
  HFVFS_ASSIGN_OR_RETURN(std::string path, ChildPath(parent, name));
  counters_.opens.fetch_add(1, std::memory_order_relaxed);
  HFVFS_ASSIGN_OR_RETURN(std::unique_ptr<File> file, top_->create(path, mode & 07777, flags));
  Changed(path);
  Result<Attr> attr = file->stat();
  if (!attr) {
    (void)file->close();
    return attr.error();
  }
  Entry entry = MakeEntry(path, *attr);
  {
    std::lock_guard lock(cache_mutex_);
    versions_.erase(entry.ino);
  }
  auto open = std::make_shared<OpenFile>();
  open->ino = entry.ino;
  open->path = path;
  open->file = std::move(file);
  open->writable = true;
  std::lock_guard lock(handles_mutex_);
  Opened opened;
  opened.fh = next_handle_++;
  writers_[entry.ino].push_back(open);
  files_.emplace(opened.fh, std::move(open));
  ++open_count_[entry.ino];
  return std::make_pair(entry, opened);
}

Result<size_t> Vfs::Read(uint64_t fh, uint64_t offset, std::span<std::byte> buf) {
  size_t n = 0;
  HFVFS_RETURN_IF_ERROR(ReadLent(fh, offset, buf, [&](File::LentPieces pieces) {
    for (const auto& piece : pieces) {
      if (piece.data() != buf.data() + n) std::memmove(buf.data() + n, piece.data(), piece.size());
      n += piece.size();
    }
  }));
  return n;
}

Status Vfs::ReadLent(uint64_t fh, uint64_t offset, std::span<std::byte> buf,
                     const File::Deliver& deliver) {
  std::shared_ptr<OpenFile> file = FindFile(fh);
  if (!file) return Err(EBADF, "unknown file handle");
  size_t n = 0;
  HFVFS_RETURN_IF_ERROR(file->file->read_lent(offset, buf, [&](File::LentPieces pieces) {
    for (const auto& piece : pieces) n += piece.size();
    deliver(pieces);
  }));
  counters_.reads.fetch_add(1, std::memory_order_relaxed);
  counters_.bytes_read.fetch_add(static_cast<int64_t>(n), std::memory_order_relaxed);
  return Ok();
}

Result<size_t> Vfs::Write(uint64_t fh, uint64_t offset, std::span<const std::byte> data) {
  std::shared_ptr<OpenFile> file = FindFile(fh);
  if (!file) return Err(EBADF, "unknown file handle");
  if (!file->writable) return Err(EBADF, "the file is not open for writing");
  Result<size_t> n = file->file->write(offset, data);
  if (n) {
    counters_.writes.fetch_add(1, std::memory_order_relaxed);
    counters_.bytes_written.fetch_add(static_cast<int64_t>(*n), std::memory_order_relaxed);
    std::string path = CurrentPath(*file);
    std::lock_guard lock(cache_mutex_);
    attrs_.erase(path);
  }
  return n;
}

Status Vfs::Flush(uint64_t fh) {
  std::shared_ptr<OpenFile> file = FindFile(fh);
  if (!file) return Err(EBADF, "unknown file handle");
  Status s = file->file->flush();
  if (file->writable) Changed(CurrentPath(*file));
  return s;
}

Status Vfs::Fsync(uint64_t fh, bool datasync) {
  std::shared_ptr<OpenFile> file = FindFile(fh);
  if (!file) return Err(EBADF, "unknown file handle");
  return file->file->fsync(datasync);
}

Status Vfs::Release(uint64_t fh) {
  std::shared_ptr<OpenFile> file;
  {
    std::lock_guard lock(handles_mutex_);
    auto it = files_.find(fh);
    if (it == files_.end()) return Err(EBADF, "unknown file handle");
    file = std::move(it->second);
    files_.erase(it);
    if (--open_count_[file->ino] <= 0) open_count_.erase(file->ino);
    if (file->writable) {
      auto w = writers_.find(file->ino);
      if (w != writers_.end()) {
        std::erase(w->second, file);
        if (w->second.empty()) writers_.erase(w);
      }
    }
  }
  Status s = file->file->close();
  if (file->writable) Changed(file->path);
  return s;
}

// ---------------------------------------------------------------------------------------------
// changes

Result<Entry> Vfs::Mkdir(uint64_t parent, std::string_view name, uint32_t mode) {
  HFVFS_RETURN_IF_ERROR(CheckWritable());
  HFVFS_ASSIGN_OR_RETURN(std::string path, ChildPath(parent, name));
  HFVFS_RETURN_IF_ERROR(top_->mkdir(path, mode & 07777));
  Changed(path);
  HFVFS_ASSIGN_OR_RETURN(Attr attr, StatPath(path));
  return MakeEntry(path, attr);
}

Result<Entry> Vfs::Symlink(std::string_view target, uint64_t parent, std::string_view name) {
  HFVFS_RETURN_IF_ERROR(CheckWritable());
  HFVFS_ASSIGN_OR_RETURN(std::string path, ChildPath(parent, name));
  HFVFS_RETURN_IF_ERROR(top_->symlink(target, path));
  Changed(path);
  HFVFS_ASSIGN_OR_RETURN(Attr attr, StatPath(path));
  return MakeEntry(path, attr);
}

Result<std::string> Vfs::Readlink(uint64_t ino) {
  HFVFS_ASSIGN_OR_RETURN(std::string path, PathOf(ino));
  return top_->readlink(path);
}

Status Vfs::Unlink(uint64_t parent, std::string_view name) {
  HFVFS_RETURN_IF_ERROR(CheckWritable());
  HFVFS_ASSIGN_OR_RETURN(std::string path, ChildPath(parent, name));
  HFVFS_RETURN_IF_ERROR(top_->remove(path));
  inodes_.Detach(path);
  Changed(path);
  std::lock_guard lock(cache_mutex_);
  negatives_[path] = Clock::now() + options_.negative_ttl;
  return Ok();
}

Status Vfs::Rmdir(uint64_t parent, std::string_view name) {
  HFVFS_RETURN_IF_ERROR(CheckWritable());
  HFVFS_ASSIGN_OR_RETURN(std::string path, ChildPath(parent, name));
  HFVFS_RETURN_IF_ERROR(top_->rmdir(path));
  inodes_.Detach(path);
  Changed(path);
  std::lock_guard lock(cache_mutex_);
  negatives_[path] = Clock::now() + options_.negative_ttl;
  return Ok();
}

Status Vfs::Rename(uint64_t parent, std::string_view name, uint64_t new_parent,
                   std::string_view new_name, bool noreplace) {
  HFVFS_RETURN_IF_ERROR(CheckWritable());
  HFVFS_ASSIGN_OR_RETURN(std::string from, ChildPath(parent, name));
  HFVFS_ASSIGN_OR_RETURN(std::string to, ChildPath(new_parent, new_name));
  if (from == to) return Ok();
  if (IsUnder(to, from))
    return Err(EINVAL, "cannot move a folder into itself: " + from + " -> " + to);
  HFVFS_RETURN_IF_ERROR(top_->rename(from, to, noreplace));
  inodes_.Rename(from, to);
  {
    // Everything cached under either name is stale (a folder moves with its content).
    std::lock_guard lock(cache_mutex_);
    auto stale = [&](const std::string& key) { return Affected(key, from) || Affected(key, to); };
    std::erase_if(attrs_, [&](const auto& kv) { return stale(kv.first); });
    std::erase_if(listings_, [&](const auto& kv) { return stale(kv.first); });
    std::erase_if(negatives_, [&](const auto& kv) { return stale(kv.first); });
    listings_.erase(std::string(ParentPath(from)));
    listings_.erase(std::string(ParentPath(to)));
    negatives_[from] = Clock::now() + options_.negative_ttl;
  }
  // Open handles keep working; their path (for cache drops) follows the file.
  std::lock_guard lock(handles_mutex_);
  for (auto& [fh, file] : files_)
    if (IsUnder(file->path, from)) file->path = to + file->path.substr(from.size());
  for (auto& [dh, dir] : dirs_)
    if (IsUnder(dir->path, from)) dir->path = to + dir->path.substr(from.size());
  return Ok();
}

Result<struct statvfs> Vfs::Statfs() {
  HFVFS_ASSIGN_OR_RETURN(FsStats stats, top_->statfs());
  struct statvfs st {};
  uint64_t bsize = stats.block_size ? stats.block_size : 4096;
  st.f_bsize = bsize;
  st.f_frsize = bsize;
  if (stats.total_blocks == 0) {
    st.f_blocks = kUnknownCapacityBytes / bsize;
    st.f_bfree = st.f_blocks;
    st.f_bavail = st.f_blocks;
    st.f_files = 1'000'000'000;
    st.f_ffree = st.f_files;
  } else {
    st.f_blocks = stats.total_blocks;
    st.f_bfree = stats.free_blocks;
    st.f_bavail = stats.free_blocks;
    st.f_files = stats.total_files;
    st.f_ffree = stats.free_files;
  }
  st.f_favail = st.f_ffree;
  st.f_namemax = stats.name_max;
  return st;
}

}  // namespace hfvfs::kernel
