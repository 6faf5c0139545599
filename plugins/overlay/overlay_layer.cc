#include "overlay_layer.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "hfvfs/path.h"

namespace hfvfs::overlay {

namespace {

constexpr size_t kCopyChunk = 1 << 20;
constexpr uint64_t kWholeFile = std::numeric_limits<uint64_t>::max();

std::string Quote(std::string_view path) {
  return "'" + std::string(path.empty() ? "/" : path) + "'";
}

Error SysErr(int code, std::string_view what, std::string_view path) {
  return Err(code,
             "overlay: " + std::string(what) + " " + Quote(path) + ": " + std::strerror(code));
}

std::string WhiteoutName(std::string_view name) {
  return std::string(kWhiteoutPrefix) + std::string(name);
}

// openat2 beneath `dir_fd`, never following a symlink nor leaving the tree. "" is `dir_fd`.
int OpenBeneath(int dir_fd, std::string_view path, int flags, mode_t mode = 0) {
  open_how how{};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  how.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  std::string p = path.empty() ? std::string(".") : std::string(path);
  for (;;) {
    long fd = syscall(SYS_openat2, dir_fd, p.c_str(), &how, sizeof(how));
    if (fd >= 0 || errno != EAGAIN) return static_cast<int>(fd);
    // EAGAIN: a concurrent rename elsewhere in the tree; the kernel asks for a retry.
  }
}

bool ExistsAt(int dir_fd, const std::string& name) {
  struct stat st;
  return fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
}

bool HasOpaqueMarker(int dir_fd) { return ExistsAt(dir_fd, std::string(kOpaqueMarker)); }

Attr AttrFromStat(const struct stat& st) {
  Attr a;
  if (S_ISDIR(st.st_mode)) {
    a.type = FileType::kDirectory;
  } else if (S_ISLNK(st.st_mode)) {
    a.type = FileType::kSymlink;
  } else {
    a.type = FileType::kFile;
  }
  a.size = static_cast<uint64_t>(st.st_size);
  a.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
  a.mode = st.st_mode & 07777;
  // Content identity of a local file: its inode, size and modification time.
  a.version = "upper:" + std::to_string(st.st_ino) + ":" + std::to_string(st.st_size) + ":" +
              std::to_string(a.mtime_ns);
  return a;
}

bool AnyReserved(std::string_view path) {
  for (std::string_view c : SplitPath(path))
    if (IsReservedName(c)) return true;
  return false;
}

Error NoEntry(std::string_view path) {
  return Err(ENOENT, "overlay: no such file or folder " + Quote(path));
}

// A file of the upper directory.
class UpperFile final : public File {
 public:
  UpperFile(UniqueFd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}

  Result<size_t> read(uint64_t offset, std::span<std::byte> buf) override {
    return ReadFully(buf, [&](size_t done, std::span<std::byte> rest) -> Result<size_t> {
      for (;;) {
        ssize_t n = pread(fd_.get(), rest.data(), rest.size(), static_cast<off_t>(offset + done));
        if (n >= 0) return static_cast<size_t>(n);
        if (errno != EINTR) return SysErr(errno, "read", path_);
      }
    });
  }
  Result<size_t> write(uint64_t offset, std::span<const std::byte> data) override {
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n = pwrite(fd_.get(), data.data() + done, data.size() - done,
                         static_cast<off_t>(offset + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return SysErr(errno, "write", path_);
      }
      done += static_cast<size_t>(n);
    }
    return done;
  }
  Status truncate(uint64_t size) override {
    if (ftruncate(fd_.get(), static_cast<off_t>(size)) != 0)
      return SysErr(errno, "truncate", path_);
    return Ok();
  }
  Status fsync(bool datasync) override {
    if ((datasync ? fdatasync(fd_.get()) : ::fsync(fd_.get())) != 0)
      return SysErr(errno, "fsync", path_);
    return Ok();
  }
  Status close() override {
    int fd = fd_.release();
    if (fd >= 0 && ::close(fd) != 0 && errno != EINTR) return SysErr(errno, "close", path_);
    return Ok();
  }
  Result<Attr> stat() override {
    struct stat st;
    if (fstat(fd_.get(), &st) != 0) return SysErr(errno, "stat", path_);
    return AttrFromStat(st);
  }

 private:
  UniqueFd fd_;
  std::string path_;
};

// A lower file opened for reading: writes never reach the lower layer.
class LowerReadOnlyFile final : public FileWrapper {
 public:
  LowerReadOnlyFile(std::unique_ptr<File> lower, std::string path)
      : FileWrapper(std::move(lower)), path_(std::move(path)) {}
  Result<size_t> write(uint64_t, std::span<const std::byte>) override {
    return Err(EBADF, "overlay: " + Quote(path_) + " was opened read-only");
  }
  Status truncate(uint64_t) override {
    return Err(EBADF, "overlay: " + Quote(path_) + " was opened read-only");
  }

 private:
  std::string path_;
};

}  // namespace

bool IsReservedName(std::string_view name) { return name.starts_with(kWhiteoutPrefix); }

Status CheckSymlinkContained(std::string_view link_path, std::string_view target) {
  auto refuse = [&](std::string_view why) {
    return Err(EPERM, "overlay: symlink " + Quote(link_path) + " -> '" + std::string(target) +
                          "' refused: " + std::string(why));
  };
  if (target.empty()) return Err(ENOENT, "overlay: symlink " + Quote(link_path) + ": empty target");
  if (target.front() == '/')
    return refuse("absolute targets would lead outside the overlay; use a relative one");
  int64_t depth = static_cast<int64_t>(SplitPath(ParentPath(link_path)).size());
  bool descended = false;
  size_t start = 0;
  while (start <= target.size()) {
    size_t end = target.find('/', start);
    if (end == std::string_view::npos) end = target.size();
    std::string_view c = target.substr(start, end - start);
    start = end + 1;
    if (c.empty() || c == ".") continue;
    if (c == "..") {
      if (descended) return refuse("'..' is accepted only at the start of a target");
      if (--depth < 0) return refuse("it climbs above the root of the overlay");
    } else {
      descended = true;
    }
  }
  return Ok();
}

OverlayLayer::OverlayLayer(std::shared_ptr<Layer> lower, UniqueFd upper_root,
                           std::string upper_label, OverlayOptions options)
    : LayerWrapper(std::move(lower)),
      upper_label_(std::move(upper_label)),
      upper_root_(std::move(upper_root)),
      options_(options) {}

OverlayLayer::OverlayLayer(std::shared_ptr<Layer> lower, std::string why, OverlayOptions options)
    : LayerWrapper(std::move(lower)), unusable_(std::move(why)), options_(options) {}

Result<std::unique_ptr<OverlayLayer>> OverlayLayer::Open(std::shared_ptr<Layer> lower,
                                                         const std::string& upper_dir,
                                                         OverlayOptions options,
                                                         bool create_missing) {
  if (upper_dir.empty()) return Err(EINVAL, "overlay: no upper directory given");
  if (create_missing) {
    // mkdir -p, component by component; existing folders are fine.
    std::string prefix;
    size_t pos = 0;
    while (pos != std::string::npos) {
      pos = upper_dir.find('/', pos + 1);
      prefix = upper_dir.substr(0, pos);
      if (prefix.empty()) continue;
      if (::mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST)
        return SysErr(errno, "cannot create the upper directory", upper_dir);
    }
  }
  int fd = ::open(upper_dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    if (e == ENOENT && !create_missing)
      return std::make_unique<OverlayLayer>(
          std::move(lower), "overlay: upper directory " + upper_dir + " does not exist", options);
    return SysErr(e, "cannot open the upper directory", upper_dir);
  }
  return std::make_unique<OverlayLayer>(std::move(lower), UniqueFd(fd), upper_dir, options);
}

Capabilities OverlayLayer::capabilities() const {
  Capabilities c;
  // Everything below is served by the upper directory (a local folder); remote-only entries
  // are copied up first, or refused in strict mode.
  c.writable = true;
  c.random_write = true;
  c.rename = true;
  // Folders with lower content answer EXDEV (mv then copies), so folder renames are not
  // claimed; folders that exist only in the upper layer do rename.
  c.rename_dirs = false;
  c.atomic_rename = true;
  c.symlinks = true;
  c.set_mode = true;
  c.set_mtime = true;
  c.changes = lower().capabilities().changes;
  c.immutable = false;
  return c;
}

Status OverlayLayer::CheckUsable() const {
  if (!unusable_.empty()) return Err(EINVAL, unusable_);
  return Ok();
}

Status OverlayLayer::start() {
  HFVFS_RETURN_IF_ERROR(LayerWrapper::start());
  HFVFS_RETURN_IF_ERROR(CheckUsable());
  const std::string work(kWorkDirName);
  if (mkdirat(upper_root_.get(), work.c_str(), 0700) != 0 && errno != EEXIST)
    return SysErr(errno, "cannot create the work folder in the upper directory", work);
  int fd = OpenBeneath(upper_root_.get(), work, O_PATH | O_DIRECTORY);
  if (fd < 0) return SysErr(errno, "cannot open the work folder", work);
  work_dir_.reset(fd);
  // The overlay never writes a marker at the root (the name is reserved), so this holds until
  // the next start.
  root_opaque_ = HasOpaqueMarker(upper_root_.get());
  // Temporaries left by a crash: half-copied files and half-built opaque folders.
  UniqueFd list_fd(OpenBeneath(work_dir_.get(), "", O_RDONLY | O_DIRECTORY));
  if (!list_fd.valid()) return SysErr(errno, "cannot list the work folder", work);
  DIR* d = fdopendir(list_fd.release());
  if (d == nullptr) return SysErr(errno, "cannot list the work folder", work);
  std::vector<std::string> leftovers;
  while (dirent* e = readdir(d)) {
    std::string_view n = e->d_name;
    if (n != "." && n != "..") leftovers.emplace_back(n);
  }
  for (const std::string& n : leftovers) {
    if (unlinkat(dirfd(d), n.c_str(), 0) == 0) continue;
    if (errno == EISDIR) {
      UniqueFd sub(OpenBeneath(dirfd(d), n, O_PATH | O_DIRECTORY));
      if (sub.valid()) (void)ClearBookkeeping(sub.get(), n);
      (void)unlinkat(dirfd(d), n.c_str(), AT_REMOVEDIR);
    }
  }
  closedir(d);
  return Ok();
}

Result<UniqueFd> OverlayLayer::OpenUpperDir(std::string_view dir, bool for_listing) const {
  HFVFS_RETURN_IF_ERROR(CheckUsable());
  int fd = OpenBeneath(upper_root_.get(), dir, (for_listing ? O_RDONLY : O_PATH) | O_DIRECTORY);
  if (fd < 0) return SysErr(errno == ELOOP ? ENOTDIR : errno, "cannot open upper folder", dir);
  return UniqueFd(fd);
}

Result<OverlayLayer::Lookup> OverlayLayer::Resolve(std::string_view path) const {
  HFVFS_RETURN_IF_ERROR(CheckUsable());
  Lookup out;
  int dir = upper_root_.get();
  bool lower_visible = !root_opaque_;
  if (path.empty()) {
    if (fstat(dir, &out.st) != 0) return SysErr(errno, "cannot stat the upper directory", path);
    out.upper = Lookup::Upper::kPresent;
    out.lower_here = true;
    out.lower_below = lower_visible;
    return out;
  }
  std::vector<std::string_view> comps = SplitPath(path);
  UniqueFd owned;
  for (size_t i = 0; i < comps.size(); ++i) {
    const bool last = i + 1 == comps.size();
    const std::string comp(comps[i]);
    struct stat st;
    if (fstatat(dir, comp.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      if (last) {
        out.upper = Lookup::Upper::kPresent;
        out.st = st;
        out.upper_parent = true;
        out.lower_here = lower_visible;
        out.lower_below =
            lower_visible &&
            !(S_ISDIR(st.st_mode) && ExistsAt(dir, comp + "/" + std::string(kOpaqueMarker)));
        return out;
      }
      if (!S_ISDIR(st.st_mode))
        return Err(ENOTDIR,
                   "overlay: " + Quote(path) + ": component '" + comp + "' is not a folder");
      int next = openat(dir, comp.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (next < 0) return SysErr(errno, "cannot open upper folder", comp);
      owned.reset(next);
      dir = next;
      if (lower_visible && HasOpaqueMarker(dir)) lower_visible = false;
      continue;
    }
    if (errno != ENOENT) return SysErr(errno, "cannot stat upper entry", path);
    // Not in the upper directory: neither is anything below it.
    bool whiteout = ExistsAt(dir, WhiteoutName(comp));
    if (whiteout) lower_visible = false;
    out.upper = (last && whiteout) ? Lookup::Upper::kWhiteout : Lookup::Upper::kAbsent;
    out.upper_parent = last;
    out.lower_here = lower_visible;
    out.lower_below = lower_visible;
    return out;
  }
  return out;  // not reached: the loop returns at the last component
}

Result<std::optional<Attr>> OverlayLayer::LowerEntry(std::string_view path, const Lookup& lookup) {
  if (!lookup.lower_here) return std::optional<Attr>();
  Result<Attr> a = lower().stat(path);
  if (a) return std::optional<Attr>(std::move(*a));
  if (a.code() == ENOENT || (a.code() == ENOTDIR && lookup.upper_parent))
    return std::optional<Attr>();
  return a.error();
}

Result<OverlayLayer::Merged> OverlayLayer::ResolveMerged(std::string_view path) {
  if (AnyReserved(path)) return NoEntry(path);
  Merged m;
  HFVFS_ASSIGN_OR_RETURN(m.lookup, Resolve(path));
  if (m.lookup.present()) {
    m.attr = AttrFromStat(m.lookup.st);
    return m;
  }
  HFVFS_ASSIGN_OR_RETURN(m.lower_attr, LowerEntry(path, m.lookup));
  if (!m.lower_attr) return NoEntry(path);
  m.attr = *m.lower_attr;
  return m;
}

Result<Attr> OverlayLayer::stat(std::string_view path) {
  HFVFS_ASSIGN_OR_RETURN(Merged m, ResolveMerged(path));
  return std::move(m.attr);
}

Result<std::vector<DirEntry>> OverlayLayer::ListMerged(std::string_view dir, const Lookup& lookup) {
  std::vector<DirEntry> out;
  std::unordered_set<std::string> hidden;  // upper names and whited-out names
  if (lookup.present()) {
    HFVFS_ASSIGN_OR_RETURN(UniqueFd fd, OpenUpperDir(dir, /*for_listing=*/true));
    DIR* d = fdopendir(fd.get());
    if (d == nullptr) return SysErr(errno, "cannot list upper folder", dir);
    fd.release();
    errno = 0;
    while (dirent* e = readdir(d)) {
      std::string_view name = e->d_name;
      if (name == "." || name == "..") continue;
      if (IsReservedName(name)) {
        hidden.emplace(name.substr(kWhiteoutPrefix.size()));
        continue;
      }
      struct stat st;
      if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;  // gone
      hidden.emplace(name);
      out.push_back(DirEntry{std::string(name), AttrFromStat(st)});
    }
    closedir(d);
  }
  if (!lookup.lower_below) return out;
  Result<std::vector<DirEntry>> below = lower().list(dir);
  if (!below) {
    if (lookup.present() && (below.code() == ENOENT || below.code() == ENOTDIR)) return out;
    return below.error();
  }
  if (!lookup.present()) {
    std::erase_if(*below, [](const DirEntry& e) { return IsReservedName(e.name); });
    return std::move(*below);
  }
  for (DirEntry& e : *below) {
    if (IsReservedName(e.name) || hidden.contains(e.name)) continue;
    out.push_back(std::move(e));
  }
  return out;
}

Result<std::vector<DirEntry>> OverlayLayer::list(std::string_view dir) {
  HFVFS_ASSIGN_OR_RETURN(Merged m, ResolveMerged(dir));
  if (!m.attr.is_dir()) return Err(ENOTDIR, "overlay: " + Quote(dir) + " is not a folder");
  return ListMerged(dir, m.lookup);
}

Error OverlayLayer::Strict(std::string_view what, std::string_view path) const {
  return Err(EPERM, "overlay: " + std::string(what) + " " + Quote(path) +
                        ": it exists only in the lower layer, and copy_up = false forbids "
                        "changing it");
}

Result<std::unique_ptr<File>> OverlayLayer::OpenUpperFile(std::string_view path, int flags) {
  HFVFS_ASSIGN_OR_RETURN(UniqueFd parent, OpenUpperDir(ParentPath(path)));
  const std::string name(BaseName(path));
  // O_APPEND is left out: the kernel gives every write its offset.
  int oflags = (flags & (O_ACCMODE | O_TRUNC)) | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;
  int fd = openat(parent.get(), name.c_str(), oflags);
  if (fd < 0) return SysErr(errno, "cannot open", path);
  UniqueFd owned(fd);
  struct stat st;
  if (fstat(fd, &st) != 0) return SysErr(errno, "cannot stat", path);
  if (S_ISDIR(st.st_mode)) return Err(EISDIR, "overlay: " + Quote(path) + " is a folder");
  if (!S_ISREG(st.st_mode))
    return Err(EACCES, "overlay: " + Quote(path) + " is not a regular file in the upper folder");
  return std::unique_ptr<File>(std::make_unique<UpperFile>(std::move(owned), std::string(path)));
}

Result<std::unique_ptr<File>> OverlayLayer::open(std::string_view path, int flags) {
  HFVFS_ASSIGN_OR_RETURN(Merged m, ResolveMerged(path));
  if (m.from_upper()) return OpenUpperFile(path, flags);
  const bool writing = (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
  if (!writing) {
    int lower_flags = flags & ~(O_ACCMODE | O_TRUNC | O_APPEND | O_CREAT | O_EXCL);
    HFVFS_ASSIGN_OR_RETURN(std::unique_ptr<File> f, lower().open(path, lower_flags | O_RDONLY));
    return std::unique_ptr<File>(
        std::make_unique<LowerReadOnlyFile>(std::move(f), std::string(path)));
  }
  if (m.attr.is_dir()) return Err(EISDIR, "overlay: " + Quote(path) + " is a folder");
  if (!options_.copy_up) return Strict("open for writing", path);
  HFVFS_RETURN_IF_ERROR(CopyUp(path, m.attr, (flags & O_TRUNC) ? 0 : kWholeFile));
  return OpenUpperFile(path, flags);
}

Result<UniqueFd> OverlayLayer::EnsureUpperDir(std::string_view dir) {
  HFVFS_ASSIGN_OR_RETURN(UniqueFd cur, OpenUpperDir(""));
  bool lower_visible = !root_opaque_;
  std::string prefix;
  for (std::string_view c : SplitPath(dir)) {
    const std::string comp(c);
    prefix = JoinPath(prefix, comp);
    struct stat st;
    if (fstatat(cur.get(), comp.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      if (!S_ISDIR(st.st_mode))
        return Err(ENOTDIR, "overlay: " + Quote(prefix) + " is not a folder");
      int next = openat(cur.get(), comp.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (next < 0) return SysErr(errno, "cannot open upper folder", prefix);
      cur.reset(next);
      if (lower_visible && HasOpaqueMarker(cur.get())) lower_visible = false;
      continue;
    }
    if (errno != ENOENT) return SysErr(errno, "cannot stat upper entry", prefix);
    if (!lower_visible || ExistsAt(cur.get(), WhiteoutName(comp)))
      return Err(ENOENT, "overlay: no such folder " + Quote(prefix));
    Result<Attr> la = lower().stat(prefix);
    if (!la) {
      if (la.code() == ENOENT || la.code() == ENOTDIR)
        return Err(ENOENT, "overlay: no such folder " + Quote(prefix));
      return la.error();
    }
    if (!la->is_dir()) return Err(ENOTDIR, "overlay: " + Quote(prefix) + " is not a folder");
    // The owner keeps write access, or nothing could ever be created inside.
    mode_t mode = (la->mode ? (la->mode & 07777) : 0755) | 0700;
    if (mkdirat(cur.get(), comp.c_str(), mode) != 0 && errno != EEXIST)
      return SysErr(errno, "cannot create upper folder", prefix);
    int next = openat(cur.get(), comp.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (next < 0) return SysErr(errno, "cannot open upper folder", prefix);
    cur.reset(next);
    (void)fchmod(next, mode);  // mkdirat applied the umask
    if (la->mtime_ns > 0) {
      timespec times[2] = {{0, UTIME_OMIT},
                           {static_cast<time_t>(la->mtime_ns / 1'000'000'000),
                            static_cast<long>(la->mtime_ns % 1'000'000'000)}};
      (void)futimens(next, times);
    }
  }
  return cur;
}

Status OverlayLayer::WriteWhiteout(int parent_fd, std::string_view name, std::string_view path) {
  const std::string wh = WhiteoutName(name);
  int fd = openat(parent_fd, wh.c_str(), O_CREAT | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return SysErr(errno, "cannot record the deletion (whiteout) of", path);
  ::close(fd);
  whiteouts_written_.fetch_add(1, std::memory_order_relaxed);
  return Ok();
}

Status OverlayLayer::RemoveWhiteout(int parent_fd, std::string_view name, std::string_view path) {
  const std::string wh = WhiteoutName(name);
  if (unlinkat(parent_fd, wh.c_str(), 0) != 0 && errno != ENOENT)
    return SysErr(errno, "cannot remove the whiteout of", path);
  return Ok();
}

Status OverlayLayer::ClearBookkeeping(int dir_fd, std::string_view path) {
  UniqueFd list_fd(OpenBeneath(dir_fd, "", O_RDONLY | O_DIRECTORY));
  if (!list_fd.valid()) return SysErr(errno, "cannot list upper folder", path);
  DIR* d = fdopendir(list_fd.get());
  if (d == nullptr) return SysErr(errno, "cannot list upper folder", path);
  list_fd.release();
  std::vector<std::string> names;
  while (dirent* e = readdir(d)) {
    std::string_view n = e->d_name;
    if (IsReservedName(n) && n != kWorkDirName) names.emplace_back(n);
  }
  Status st = Ok();
  for (const std::string& n : names)
    if (unlinkat(dirfd(d), n.c_str(), 0) != 0 && errno != ENOENT && st.ok())
      st = SysErr(errno, "cannot remove bookkeeping file in", path);
  closedir(d);
  return st;
}

Status OverlayLayer::CopyUp(std::string_view path, const Attr& lower_attr, uint64_t max_bytes) {
  if (lower_attr.is_file()) return CopyUpFile(path, lower_attr, max_bytes);
  if (lower_attr.is_dir()) {
    std::lock_guard lock(change_mutex_);
    HFVFS_ASSIGN_OR_RETURN(UniqueFd ignored, EnsureUpperDir(path));
    copy_ups_.fetch_add(1, std::memory_order_relaxed);
    return Ok();
  }
  HFVFS_ASSIGN_OR_RETURN(std::string target, lower().readlink(path));
  HFVFS_RETURN_IF_ERROR(CheckSymlinkContained(path, target));
  std::lock_guard lock(change_mutex_);
  HFVFS_ASSIGN_OR_RETURN(Lookup l, Resolve(path));
  if (l.present()) return Ok();
  if (!l.lower_here) return NoEntry(path);
  HFVFS_ASSIGN_OR_RETURN(UniqueFd parent, EnsureUpperDir(ParentPath(path)));
  const std::string name(BaseName(path));
  if (symlinkat(target.c_str(), parent.get(), name.c_str()) != 0 && errno != EEXIST)
    return SysErr(errno, "cannot copy up symlink", path);
  copy_ups_.fetch_add(1, std::memory_order_relaxed);
  return Ok();
}

Status OverlayLayer::CopyUpFile(std::string_view path, const Attr& lower_attr, uint64_t max_bytes) {
  if (!work_dir_.valid())
    return Err(EIO, "overlay: copy-up of " + Quote(path) + " before start(): no work folder");
  const std::string tmp = "copyup." + std::to_string(getpid()) + "." +
                          std::to_string(temp_counter_.fetch_add(1, std::memory_order_relaxed));
  int raw = openat(work_dir_.get(), tmp.c_str(),
                   O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (raw < 0) return SysErr(errno, "cannot create a copy-up temporary for", path);
  UniqueFd out(raw);
  auto drop = [&](Error e) -> Status {
    out.reset();
    (void)unlinkat(work_dir_.get(), tmp.c_str(), 0);
    return e;
  };
  uint64_t copied = 0;
  if (max_bytes > 0) {
    Result<std::unique_ptr<File>> in = lower().open(path, O_RDONLY);
    if (!in) return drop(in.error().With("overlay: copy-up of " + Quote(path)));
    std::vector<std::byte> buf(kCopyChunk);
    Status failed = Ok();
    while (copied < max_bytes) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), max_bytes - copied));
      Result<size_t> n = (*in)->read(copied, std::span(buf.data(), want));
      if (!n) {
        failed = n.error().With("overlay: copy-up of " + Quote(path));
        break;
      }
      if (*n == 0) break;
      size_t done = 0;
      while (done < *n) {
        ssize_t w =
            pwrite(out.get(), buf.data() + done, *n - done, static_cast<off_t>(copied + done));
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
          failed = SysErr(errno, "copy-up: cannot write the upper copy of", path);
          break;
        }
        done += static_cast<size_t>(w);
      }
      if (!failed.ok()) break;
      copied += *n;
      if (*n < want) break;  // EOF
    }
    (void)(*in)->close();
    if (!failed.ok()) return drop(failed.error());
  }
  (void)fchmod(out.get(), lower_attr.mode ? (lower_attr.mode & 07777) : 0644);
  if (lower_attr.mtime_ns > 0) {
    timespec times[2] = {{0, UTIME_OMIT},
                         {static_cast<time_t>(lower_attr.mtime_ns / 1'000'000'000),
                          static_cast<long>(lower_attr.mtime_ns % 1'000'000'000)}};
    (void)futimens(out.get(), times);
  }
  // Durable before it becomes visible: a crash leaves the lower file or the whole copy.
  if (::fsync(out.get()) != 0) return drop(SysErr(errno, "copy-up: cannot sync", path));
  out.reset();

  std::lock_guard lock(change_mutex_);
  Result<Lookup> l = Resolve(path);
  if (!l) return drop(l.error());
  if (l->present()) {  // someone else's copy won
    (void)unlinkat(work_dir_.get(), tmp.c_str(), 0);
    return Ok();
  }
  if (!l->lower_here) return drop(NoEntry(path));
  Result<UniqueFd> parent = EnsureUpperDir(ParentPath(path));
  if (!parent) return drop(parent.error());
  const std::string name(BaseName(path));
  if (renameat2(work_dir_.get(), tmp.c_str(), parent->get(), name.c_str(), RENAME_NOREPLACE) != 0) {
    int e = errno;
    (void)unlinkat(work_dir_.get(), tmp.c_str(), 0);
    if (e == EEXIST) return Ok();
    return SysErr(e, "copy-up: cannot move the copy into place for", path);
  }
  copy_ups_.fetch_add(1, std::memory_order_relaxed);
  copy_up_bytes_.fetch_add(static_cast<int64_t>(copied), std::memory_order_relaxed);
  return Ok();
}

Status OverlayLayer::CheckNewName(std::string_view path) const {
  if (path.empty()) return Err(EEXIST, "overlay: the root exists");
  HFVFS_RETURN_IF_ERROR(CheckName(BaseName(path)));
  if (IsReservedName(BaseName(path)))
    return Err(EINVAL, "overlay: " + Quote(path) + ": names starting with '.wh.' are reserved");
  if (AnyReserved(ParentPath(path))) return NoEntry(path);
  return Ok();
}

Result<OverlayLayer::LowerPeek> OverlayLayer::PeekLower(std::string_view path, bool skip_if_upper) {
  LowerPeek peek;
  HFVFS_ASSIGN_OR_RETURN(Lookup l, Resolve(path));
  if (!l.lower_here || (skip_if_upper && l.present())) return peek;
  HFVFS_ASSIGN_OR_RETURN(peek.attr, LowerEntry(path, l));
  peek.asked = true;
  return peek;
}

Result<std::optional<Attr>> OverlayLayer::LowerAfterPeek(std::string_view path,
                                                         const Lookup& lookup,
                                                         const LowerPeek& peek) {
  if (!lookup.lower_here) return std::optional<Attr>();
  if (peek.asked) return peek.attr;
  return LowerEntry(path, lookup);
}

Result<std::unique_ptr<File>> OverlayLayer::create(std::string_view path, uint32_t mode,
                                                   int flags) {
  HFVFS_RETURN_IF_ERROR(CheckNewName(path));
  HFVFS_ASSIGN_OR_RETURN(LowerPeek peek, PeekLower(path, /*skip_if_upper=*/true));
  {
    std::unique_lock lock(change_mutex_);
    HFVFS_ASSIGN_OR_RETURN(Lookup l, Resolve(path));
    HFVFS_ASSIGN_OR_RETURN(std::optional<Attr> la, LowerAfterPeek(path, l, peek));
    if (!l.present() && !la) {
      HFVFS_ASSIGN_OR_RETURN(UniqueFd parent, EnsureUpperDir(ParentPath(path)));
      const std::string name(BaseName(path));
      const mode_t perms = mode ? (mode & 07777) : 0644;
      int oflags = (flags & O_ACCMODE) | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
      int fd = openat(parent.get(), name.c_str(), oflags, perms);
      if (fd < 0) return SysErr(errno, "cannot create", path);
      UniqueFd owned(fd);
      (void)fchmod(fd, perms);  // openat applied the umask
      if (l.upper == Lookup::Upper::kWhiteout)
        HFVFS_RETURN_IF_ERROR(RemoveWhiteout(parent.get(), name, path));
      return std::unique_ptr<File>(
          std::make_unique<UpperFile>(std::move(owned), std::string(path)));
    }
    if (flags & O_EXCL) return Err(EEXIST, "overlay: " + Quote(path) + " exists");
  }
  return open(path, flags & ~(O_CREAT | O_EXCL));
}

Status OverlayLayer::mkdir(std::string_view path, uint32_t mode) {
  HFVFS_RETURN_IF_ERROR(CheckNewName(path));
  HFVFS_ASSIGN_OR_RETURN(LowerPeek peek, PeekLower(path, /*skip_if_upper=*/true));
  std::lock_guard lock(change_mutex_);
  HFVFS_ASSIGN_OR_RETURN(Lookup l, Resolve(path));
  HFVFS_ASSIGN_OR_RETURN(std::optional<Attr> la, LowerAfterPeek(path, l, peek));
  if (l.present() || la) return Err(EEXIST, "overlay: " + Quote(path) + " exists");
  HFVFS_ASSIGN_OR_RETURN(UniqueFd parent, EnsureUpperDir(ParentPath(path)));
  const std::string name(BaseName(path));
  const mode_t perms = mode ? (mode & 07777) : 0755;
  if (l.upper != Lookup::Upper::kWhiteout) {
    if (mkdirat(parent.get(), name.c_str(), perms) != 0) return SysErr(errno, "mkdir", path);
    (void)fchmodat(parent.get(), name.c_str(), perms, AT_SYMLINK_NOFOLLOW);
    return Ok();
  }
  // A deleted lower entry of that name: the new folder must hide the old one's children, and
  // appear complete with its marker (built in the work folder, then renamed into place).
  if (!work_dir_.valid()) return Err(EIO, "overlay: mkdir " + Quote(path) + " before start()");
  const std::string tmp = "mkdir." + std::to_string(getpid()) + "." +
                          std::to_string(temp_counter_.fetch_add(1, std::memory_order_relaxed));
  if (mkdirat(work_dir_.get(), tmp.c_str(), perms) != 0) return SysErr(errno, "mkdir", path);
  (void)fchmodat(work_dir_.get(), tmp.c_str(), perms, AT_SYMLINK_NOFOLLOW);
  const std::string marker = tmp + "/" + std::string(kOpaqueMarker);
  int fd =
      openat(work_dir_.get(), marker.c_str(), O_CREAT | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0 || ::close(fd) != 0 ||
      renameat2(work_dir_.get(), tmp.c_str(), parent.get(), name.c_str(), RENAME_NOREPLACE) != 0) {
    int e = errno;
    (void)unlinkat(work_dir_.get(), marker.c_str(), 0);
    (void)unlinkat(work_dir_.get(), tmp.c_str(), AT_REMOVEDIR);
    return SysErr(e, "mkdir", path);
  }
  return RemoveWhiteout(parent.get(), name, path);
}

Status OverlayLayer::remove(std::string_view path) {
  if (path.empty()) return Err(EISDIR, "overlay: the root is a folder");
  if (AnyReserved(path)) return NoEntry(path);
  HFVFS_ASSIGN_OR_RETURN(LowerPeek peek, PeekLower(path, /*skip_if_upper=*/false));
  std::lock_guard lock(change_mutex_);
  HFVFS_ASSIGN_OR_RETURN(Lookup l, Resolve(path));
  HFVFS_ASSIGN_OR_RETURN(std::optional<Attr> la, LowerAfterPeek(path, l, peek));
  const std::string name(BaseName(path));
  if (l.present()) {
    if (S_ISDIR(l.st.st_mode)) return Err(EISDIR, "overlay: " + Quote(path) + " is a folder");
    HFVFS_ASSIGN_OR_RETURN(UniqueFd parent, OpenUpperDir(ParentPath(path)));
    // The whiteout first: a crash in between leaves the upper entry, which still wins.
    if (la) HFVFS_RETURN_IF_ERROR(WriteWhiteout(parent.get(), name, path));
    if (unlinkat(parent.get(), name.c_str(), 0) != 0) return SysErr(errno, "unlink", path);
    return Ok();
  }
  if (!la) return NoEntry(path);
  if (la->is_dir()) return Err(EISDIR, "overlay: " + Quote(path) + " is a folder");
  if (!options_.copy_up) return Strict("unlink", path);
  HFVFS_ASSIGN_OR_RETURN(UniqueFd parent, EnsureUpperDir(ParentPath(path)));
  return WriteWhiteout(parent.get(), name, path);
}

Status OverlayLayer::rmdir(std::string_view path) {
  if (path.empty()) return Err(EBUSY, "overlay: cannot remove the root");
  if (AnyReserved(path)) return NoEntry(path);
  std::lock_guard lock(change_mutex_);
  HFVFS_ASSIGN_OR_RETURN(Lookup l, Resolve(path));
  HFVFS_ASSIGN_OR_RETURN(std::optional<Attr> la, LowerEntry(path, l));
  if (!l.present() && !la) return NoEntry(path);
  const bool is_dir = l.present() ? S_ISDIR(l.st.st_mode) : la->is_dir();
  if (!is_dir) return Err(ENOTDIR, "overlay: " + Quote(path) + " is not a folder");
  HFVFS_ASSIGN_OR_RETURN(std::vector<DirEntry> children, ListMerged(path, l));
  if (!children.empty()) return Err(ENOTEMPTY, "overlay: folder " + Quote(path) + " is not empty");
  const std::string name(BaseName(path));
  if (!l.present()) {
    if (!options_.copy_up) return Strict("rmdir", path);
    HFVFS_ASSIGN_OR_RETURN(UniqueFd parent, EnsureUpperDir(ParentPath(path)));
    return WriteWhiteout(parent.get(), name, path);
  }
  HFVFS_ASSIGN_OR_RETURN(UniqueFd parent, OpenUpperDir(ParentPath(path)));
  if (la) HFVFS_RETURN_IF_ERROR(WriteWhiteout(parent.get(), name, path));
  HFVFS_ASSIGN_OR_RETURN(UniqueFd self, OpenUpperDir(path));
  HFVFS_RETURN_IF_ERROR(ClearBookkeeping(self.get(), path));
  if (unlinkat(parent.get(), name.c_str(), AT_REMOVEDIR) != 0) return SysErr(errno, "rmdir", path);
  return Ok();
}

Status OverlayLayer::rename(std::string_view from, std::string_view to, bool noreplace) {
  if (from.empty() || to.empty()) return Err(EBUSY, "overlay: cannot rename the root");
  if (AnyReserved(from)) return NoEntry(from);
  HFVFS_RETURN_IF_ERROR(CheckName(BaseName(to)));
  if (IsReservedName(BaseName(to)))
    return Err(EINVAL, "overlay: " + Quote(to) + ": names starting with '.wh.' are reserved");
  if (AnyReserved(ParentPath(to))) return NoEntry(to);
  if (from != to && IsUnder(to, from))
    return Err(EINVAL, "overlay: cannot move " + Quote(from) + " into itself");

  // A lower-only source is copied up first (outside the lock: it may be large).
  {
    HFVFS_ASSIGN_OR_RETURN(Merged src, ResolveMerged(from));
    if (!src.from_upper()) {
      if (src.attr.is_dir())
        return Err(EXDEV, "overlay: folder " + Quote(from) +
                              " has content in the lower layer: it cannot be renamed in place "
                              "(mv copies it instead)");
      if (!options_.copy_up) return Strict("rename", from);
      HFVFS_RETURN_IF_ERROR(CopyUp(from, src.attr, kWholeFile));
    }
  }

  HFVFS_ASSIGN_OR_RETURN(LowerPeek peek_from, PeekLower(from, /*skip_if_upper=*/false));
  HFVFS_ASSIGN_OR_RETURN(LowerPeek peek_to, PeekLower(to, /*skip_if_upper=*/false));
  std::lock_guard lock(change_mutex_);
  HFVFS_ASSIGN_OR_RETURN(Lookup lf, Resolve(from));
  if (!lf.present()) return NoEntry(from);
  HFVFS_ASSIGN_OR_RETURN(std::optional<Attr> lower_from, LowerAfterPeek(from, lf, peek_from));
  const bool from_dir = S_ISDIR(lf.st.st_mode);
  if (from_dir && lf.lower_below && lower_from && lower_from->is_dir())
    return Err(EXDEV, "overlay: folder " + Quote(from) +
                          " has content in the lower layer: it cannot be renamed in place (mv "
                          "copies it instead)");
  if (from == to) return Ok();

  HFVFS_ASSIGN_OR_RETURN(Lookup lt, Resolve(to));
  HFVFS_ASSIGN_OR_RETURN(std::optional<Attr> lower_to, LowerAfterPeek(to, lt, peek_to));
  const bool to_exists = lt.present() || lower_to.has_value();
  if (to_exists) {
    if (noreplace) return Err(EEXIST, "overlay: " + Quote(to) + " exists");
    const bool to_dir = lt.present() ? S_ISDIR(lt.st.st_mode) : lower_to->is_dir();
    if (from_dir && !to_dir) return Err(ENOTDIR, "overlay: " + Quote(to) + " is not a folder");
    if (!from_dir && to_dir) return Err(EISDIR, "overlay: " + Quote(to) + " is a folder");
    if (to_dir) {
      HFVFS_ASSIGN_OR_RETURN(std::vector<DirEntry> children, ListMerged(to, lt));
      if (!children.empty())
        return Err(ENOTEMPTY, "overlay: folder " + Quote(to) + " is not empty");
    }
  }

  HFVFS_ASSIGN_OR_RETURN(UniqueFd to_parent, EnsureUpperDir(ParentPath(to)));
  HFVFS_ASSIGN_OR_RETURN(UniqueFd from_parent, OpenUpperDir(ParentPath(from)));
  const std::string from_name(BaseName(from));
  const std::string to_name(BaseName(to));
  // A folder moved over a lower folder must not merge with it: mark it opaque.
  if (from_dir && lt.lower_here && lower_to && lower_to->is_dir()) {
    const std::string marker = from_name + "/" + std::string(kOpaqueMarker);
    int fd = openat(from_parent.get(), marker.c_str(), O_CREAT | O_WRONLY | O_NOFOLLOW | O_CLOEXEC,
                    0600);
    if (fd < 0) return SysErr(errno, "rename: cannot mark opaque", from);
    ::close(fd);
  }
  // An empty upper folder being replaced may still hold bookkeeping files.
  if (lt.present() && S_ISDIR(lt.st.st_mode)) {
    HFVFS_ASSIGN_OR_RETURN(UniqueFd target, OpenUpperDir(to));
    HFVFS_RETURN_IF_ERROR(ClearBookkeeping(target.get(), to));
  }
  if (lower_from) HFVFS_RETURN_IF_ERROR(WriteWhiteout(from_parent.get(), from_name, from));
  if (renameat2(from_parent.get(), from_name.c_str(), to_parent.get(), to_name.c_str(),
                noreplace ? RENAME_NOREPLACE : 0) != 0) {
    int e = errno;
    if (lower_from) (void)RemoveWhiteout(from_parent.get(), from_name, from);
    return SysErr(e, "rename to " + Quote(to) + ":", from);
  }
  if (lt.upper == Lookup::Upper::kWhiteout)
    HFVFS_RETURN_IF_ERROR(RemoveWhiteout(to_parent.get(), to_name, to));
  return Ok();
}

Status OverlayLayer::setattr(std::string_view path, const SetAttr& change) {
  HFVFS_ASSIGN_OR_RETURN(Merged m, ResolveMerged(path));
  if (!m.from_upper()) {
    if (options_.ignore_lower_touch && change.set_mtime && !change.set_mode && !change.set_size)
      return Ok();
    if (!options_.copy_up) return Strict("change attributes of", path);
    if (change.set_size && m.attr.is_dir())
      return Err(EISDIR, "overlay: " + Quote(path) + " is a folder");
    HFVFS_RETURN_IF_ERROR(CopyUp(path, m.attr, change.set_size ? change.size : kWholeFile));
    HFVFS_ASSIGN_OR_RETURN(m, ResolveMerged(path));
    if (!m.from_upper()) return NoEntry(path);
  }
  HFVFS_ASSIGN_OR_RETURN(UniqueFd parent, OpenUpperDir(ParentPath(path)));
  const std::string name(BaseName(path));
  const bool is_link = S_ISLNK(m.lookup.st.st_mode);
  if (change.set_size) {
    if (S_ISDIR(m.lookup.st.st_mode))
      return Err(EISDIR, "overlay: " + Quote(path) + " is a folder");
    UniqueFd fd(openat(parent.get(), name.c_str(), O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (!fd.valid()) return SysErr(errno, "truncate", path);
    if (ftruncate(fd.get(), static_cast<off_t>(change.size)) != 0)
      return SysErr(errno, "truncate", path);
  }
  if (change.set_mode && !is_link) {
    if (fchmodat(parent.get(), name.c_str(), change.mode & 07777, AT_SYMLINK_NOFOLLOW) != 0)
      return SysErr(errno, "chmod", path);
  }
  if (change.set_mtime) {
    timespec times[2] = {{0, UTIME_OMIT},
                         {static_cast<time_t>(change.mtime_ns / 1'000'000'000),
                          static_cast<long>(change.mtime_ns % 1'000'000'000)}};
    if (utimensat(parent.get(), name.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0)
      return SysErr(errno, "utimens", path);
  }
  return Ok();
}

Status OverlayLayer::symlink(std::string_view target, std::string_view path) {
  HFVFS_RETURN_IF_ERROR(CheckNewName(path));
  HFVFS_RETURN_IF_ERROR(CheckSymlinkContained(path, target));
  HFVFS_ASSIGN_OR_RETURN(LowerPeek peek, PeekLower(path, /*skip_if_upper=*/true));
  std::lock_guard lock(change_mutex_);
  HFVFS_ASSIGN_OR_RETURN(Lookup l, Resolve(path));
  HFVFS_ASSIGN_OR_RETURN(std::optional<Attr> la, LowerAfterPeek(path, l, peek));
  if (l.present() || la) return Err(EEXIST, "overlay: " + Quote(path) + " exists");
  HFVFS_ASSIGN_OR_RETURN(UniqueFd parent, EnsureUpperDir(ParentPath(path)));
  const std::string name(BaseName(path));
  const std::string t(target);
  if (symlinkat(t.c_str(), parent.get(), name.c_str()) != 0) return SysErr(errno, "symlink", path);
  if (l.upper == Lookup::Upper::kWhiteout)
    HFVFS_RETURN_IF_ERROR(RemoveWhiteout(parent.get(), name, path));
  return Ok();
}

Result<std::string> OverlayLayer::readlink(std::string_view path) {
  HFVFS_ASSIGN_OR_RETURN(Merged m, ResolveMerged(path));
  if (!m.from_upper()) return lower().readlink(path);
  if (!S_ISLNK(m.lookup.st.st_mode))
    return Err(EINVAL, "overlay: " + Quote(path) + " is not a symlink");
  HFVFS_ASSIGN_OR_RETURN(UniqueFd parent, OpenUpperDir(ParentPath(path)));
  const std::string name(BaseName(path));
  std::string buf(4096, '\0');
  ssize_t n = readlinkat(parent.get(), name.c_str(), buf.data(), buf.size());
  if (n < 0) return SysErr(errno, "readlink", path);
  buf.resize(static_cast<size_t>(n));
  HFVFS_RETURN_IF_ERROR(CheckSymlinkContained(path, buf));
  return buf;
}

Result<FsStats> OverlayLayer::statfs() {
  HFVFS_RETURN_IF_ERROR(CheckUsable());
  struct statfs s;
  if (fstatfs(upper_root_.get(), &s) != 0) return SysErr(errno, "statfs", "");
  FsStats out;
  out.block_size = static_cast<uint64_t>(s.f_bsize);
  out.total_blocks = s.f_blocks;
  out.free_blocks = s.f_bavail;
  out.total_files = s.f_files;
  out.free_files = s.f_ffree;
  out.name_max = static_cast<uint32_t>(s.f_namelen);
  return out;
}

Result<Changes> OverlayLayer::changes() {
  HFVFS_ASSIGN_OR_RETURN(Changes c, lower().changes());
  // A lower change under an upper entry, a whiteout or an opaque folder changes nothing here.
  std::erase_if(c.changes, [&](const Change& ch) {
    if (AnyReserved(ch.path)) return true;
    Result<Lookup> l = Resolve(ch.path);
    return l && (l->present() || !l->lower_here);
  });
  return c;
}

void OverlayLayer::counters(std::vector<std::pair<std::string, int64_t>>& out) const {
  out.emplace_back("copy_ups", copy_ups_.load(std::memory_order_relaxed));
  out.emplace_back("copy_up_bytes", copy_up_bytes_.load(std::memory_order_relaxed));
  out.emplace_back("whiteouts_written", whiteouts_written_.load(std::memory_order_relaxed));
}

}  // namespace hfvfs::overlay
