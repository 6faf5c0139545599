#include "local_layer.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

namespace hfvfs::local {

Error SystemError(int code, std::string_view what, std::string_view path) {
  std::string shown = path.empty() ? std::string("<root>") : std::string(path);
  return Err(code, "local: " + std::string(what) + " '" + shown + "': " + std::strerror(code));
}

namespace {

// A descriptor that closes itself.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

// EINVAL unless `path` has the layer form of path.h: "" or components joined by single '/',
// none empty, "." or "..", no NUL. The kernel guarantees it; the check keeps a caller in the same
// process (tests, other plugins) from walking out of the root with "..".
Status CheckLayerPath(std::string_view path) {
  if (path.empty()) return Ok();
  size_t start = 0;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) slash = path.size();
    std::string_view part = path.substr(start, slash - start);
    if (part.empty() || part == "." || part == ".." || part.find('\0') != std::string_view::npos) {
      return Err(EINVAL, "local: '" + std::string(path) +
                             "' is not a layer path (empty, '.' or '..' component, or NUL)");
    }
    start = slash + 1;
  }
  return Ok();
}

// The parent folder of a path, opened below the root, and the path's last component. For the
// root itself `name` is empty and `fd` is the root's descriptor.
struct Parent {
  Fd owned;  // the parent's descriptor, unless it is the root
  int fd = -1;
  std::string name;
};

bool ProbeOpenat2(int root_fd) {
  open_how how{};
  how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS;
  long fd = ::syscall(SYS_openat2, root_fd, ".", &how, sizeof(how));
  if (fd < 0) return false;  // ENOSYS (old kernel) or a seccomp filter: walk instead
  ::close(static_cast<int>(fd));
  return true;
}

// Opens the folder `rel` (a non-empty layer path) below `root_fd` as an O_PATH descriptor,
// following no symlink. A symlink on the way is ENOTDIR.
Result<Fd> OpenDirBeneath(int root_fd, std::string_view rel, bool use_openat2,
                          std::string_view what, std::string_view path) {
  if (use_openat2) {
    open_how how{};
    how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS;
    std::string rel_z(rel);
    for (int attempt = 0;; ++attempt) {
      long fd = ::syscall(SYS_openat2, root_fd, rel_z.c_str(), &how, sizeof(how));
      if (fd >= 0) return Fd(static_cast<int>(fd));
      int code = errno;
      // EAGAIN: a concurrent rename raced the lookup; the kernel asks for a retry.
      if ((code == EAGAIN || code == EINTR) && attempt < 8) continue;
      if (code == ELOOP) code = ENOTDIR;  // a symlink in the middle is not a folder here
      if (code == EXDEV) code = EACCES;   // would leave the root
      return SystemError(code, what, path);
    }
  }
  Fd cur;
  int at = root_fd;
  size_t start = 0;
  while (start < rel.size()) {
    size_t slash = rel.find('/', start);
    if (slash == std::string_view::npos) slash = rel.size();
    std::string part(rel.substr(start, slash - start));
    int fd = ::openat(at, part.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      int code = errno == ELOOP ? ENOTDIR : errno;
      return SystemError(code, what, path);
    }
    cur = Fd(fd);
    at = fd;
    start = slash + 1;
  }
  return cur;
}

Result<Attr> AttrFromStat(const struct stat& st, std::string_view path) {
  Attr attr;
  if (S_ISREG(st.st_mode)) {
    attr.type = FileType::kFile;
  } else if (S_ISDIR(st.st_mode)) {
    attr.type = FileType::kDirectory;
  } else if (S_ISLNK(st.st_mode)) {
    attr.type = FileType::kSymlink;
  } else {
    return Err(ENOENT, "local: '" + std::string(path) +
                           "' is a socket, FIFO or device, which the layer does not serve");
  }
  attr.size = static_cast<uint64_t>(st.st_size);
  attr.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
  attr.mode = st.st_mode & 07777;
  attr.version = std::to_string(attr.mtime_ns) + "-" + std::to_string(attr.size) + "-" +
                 std::to_string(static_cast<uint64_t>(st.st_ino));
  return attr;
}

// chmod of `name` in `parent` without following a symlink: the O_PATH descriptor pins the
// object, /proc/self/fd reaches it (fchmod refuses O_PATH descriptors). Symlinks have no mode
// of their own on Linux: EOPNOTSUPP.
Status ChmodNoFollow(int parent, const std::string& name, uint32_t mode, std::string_view path) {
  if (name.empty()) {
    if (::fchmod(parent, mode & 07777) != 0) return SystemError(errno, "chmod", path);
    return Ok();
  }
  Fd fd(::openat(parent, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return SystemError(errno, "chmod", path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return SystemError(errno, "chmod", path);
  if (S_ISLNK(st.st_mode)) {
    return Err(EOPNOTSUPP, "local: chmod '" + std::string(path) + "': a symlink has no mode");
  }
  std::string proc = "/proc/self/fd/" + std::to_string(fd.get());
  if (::chmod(proc.c_str(), mode & 07777) == 0) return Ok();
  if (errno != ENOENT) return SystemError(errno, "chmod", path);
  // No /proc: fchmodat follows a final symlink, but fstat above saw a non-link object there.
  if (::fchmodat(parent, name.c_str(), mode & 07777, 0) != 0) {
    return SystemError(errno, "chmod", path);
  }
  return Ok();
}

bool WantsWrite(int flags) { return (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC) != 0; }

class LocalFile final : public File {
 public:
  LocalFile(Fd fd, std::string path, std::shared_ptr<LocalLayer::Counters> counters)
      : fd_(std::move(fd)), path_(std::move(path)), counters_(std::move(counters)) {
    counters_->files_open.fetch_add(1, std::memory_order_relaxed);
  }
  ~LocalFile() override {
    if (fd_.valid()) counters_->files_open.fetch_sub(1, std::memory_order_relaxed);
  }

  Result<size_t> read(uint64_t offset, std::span<std::byte> buf) override {
    Result<size_t> n =
        ReadFully(buf, [&](size_t done, std::span<std::byte> rest) -> Result<size_t> {
          for (;;) {
            ssize_t got =
                ::pread(fd_.get(), rest.data(), rest.size(), static_cast<off_t>(offset + done));
            if (got >= 0) return static_cast<size_t>(got);
            if (errno != EINTR) return SystemError(errno, "read", path_);
          }
        });
    if (n) counters_->bytes_read.fetch_add(static_cast<int64_t>(*n), std::memory_order_relaxed);
    return n;
  }

  Result<size_t> write(uint64_t offset, std::span<const std::byte> data) override {
    size_t done = 0;
    while (done < data.size()) {
      ssize_t put = ::pwrite(fd_.get(), data.data() + done, data.size() - done,
                             static_cast<off_t>(offset + done));
      if (put < 0) {
        if (errno == EINTR) continue;
        return SystemError(errno, "write", path_);
      }
      if (put == 0) return Err(EIO, "local: write '" + path_ + "': the file system took 0 bytes");
      done += static_cast<size_t>(put);
    }
    counters_->bytes_written.fetch_add(static_cast<int64_t>(done), std::memory_order_relaxed);
    return done;
  }

  Status truncate(uint64_t size) override {
    if (::ftruncate(fd_.get(), static_cast<off_t>(size)) != 0) {
      return SystemError(errno, "truncate", path_);
    }
    return Ok();
  }

  // Closing a duplicate reports the errors some file systems (NFS, FUSE) defer to close(2),
  // without giving up the descriptor the handle still needs.
  Status flush() override {
    int dup = ::fcntl(fd_.get(), F_DUPFD_CLOEXEC, 0);
    if (dup < 0) return SystemError(errno, "flush", path_);
    if (::close(dup) != 0 && errno != EINTR) return SystemError(errno, "flush", path_);
    return Ok();
  }

  Status fsync(bool datasync) override {
    int rc = datasync ? ::fdatasync(fd_.get()) : ::fsync(fd_.get());
    if (rc != 0) return SystemError(errno, "fsync", path_);
    return Ok();
  }

  Status close() override {
    if (!fd_.valid()) return Ok();
    counters_->files_open.fetch_sub(1, std::memory_order_relaxed);
    int fd = fd_.release();
    if (::close(fd) != 0 && errno != EINTR) return SystemError(errno, "close", path_);
    return Ok();
  }

  Result<Attr> stat() override {
    struct stat st;
    if (::fstat(fd_.get(), &st) != 0) return SystemError(errno, "fstat", path_);
    return AttrFromStat(st, path_);
  }

 private:
  Fd fd_;  // set at construction, released only by close(), which runs alone
  const std::string path_;
  const std::shared_ptr<LocalLayer::Counters> counters_;
};

// Resolves the parent of `path` below the root: the layer's one containment rule; every
// operation goes through it.
Result<Parent> ResolveParent(int root_fd, bool use_openat2, std::string_view path,
                             std::string_view what) {
  HFVFS_RETURN_IF_ERROR(CheckLayerPath(path));
  Parent parent;
  parent.fd = root_fd;
  if (path.empty()) return parent;
  size_t slash = path.rfind('/');
  if (slash == std::string_view::npos) {
    parent.name = std::string(path);
    return parent;
  }
  HFVFS_ASSIGN_OR_RETURN(parent.owned,
                         OpenDirBeneath(root_fd, path.substr(0, slash), use_openat2, what, path));
  parent.fd = parent.owned.get();
  parent.name = std::string(path.substr(slash + 1));
  return parent;
}

}  // namespace

Result<std::unique_ptr<LocalLayer>> LocalLayer::Open(const std::string& root,
                                                     LocalOptions options) {
  if (root.empty()) return Err(EINVAL, "local: the folder path is empty");
  int fd = ::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    int code = errno;
    return Err(code, "local: cannot open the folder '" + root + "': " + std::strerror(code));
  }
  // Not make_unique: the constructor is private.
  return std::unique_ptr<LocalLayer>(new LocalLayer(root, fd, options));
}

LocalLayer::LocalLayer(std::string root, int root_fd, LocalOptions options)
    : root_(std::move(root)),
      root_fd_(root_fd),
      options_(options),
      counters_(std::make_shared<Counters>()),
      use_openat2_(!options.walk_components && ProbeOpenat2(root_fd)) {}

LocalLayer::~LocalLayer() { ::close(root_fd_); }

Capabilities LocalLayer::capabilities() const {
  Capabilities caps;
  if (options_.read_only) return caps;
  caps.writable = true;
  caps.random_write = true;
  caps.rename = true;
  caps.rename_dirs = true;
  caps.atomic_rename = true;
  caps.symlinks = true;
  caps.set_mode = true;
  caps.set_mtime = true;
  return caps;
}

Status LocalLayer::CheckWritable(std::string_view what, std::string_view path) const {
  if (!options_.read_only) return Ok();
  return Err(EROFS, "local: " + std::string(what) + " '" + std::string(path) +
                        "': the layer is read-only (read_only = true)");
}

Result<Attr> LocalLayer::stat(std::string_view path) {
  HFVFS_ASSIGN_OR_RETURN(Parent p, ResolveParent(root_fd_, use_openat2_, path, "stat"));
  struct stat st;
  int rc = p.name.empty() ? ::fstat(root_fd_, &st)
                          : ::fstatat(p.fd, p.name.c_str(), &st, AT_SYMLINK_NOFOLLOW);
  if (rc != 0) return SystemError(errno, "stat", path);
  return AttrFromStat(st, path);
}

Result<std::vector<DirEntry>> LocalLayer::list(std::string_view dir) {
  HFVFS_ASSIGN_OR_RETURN(Parent p, ResolveParent(root_fd_, use_openat2_, dir, "list"));
  int fd = ::openat(p.fd, p.name.empty() ? "." : p.name.c_str(),
                    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return SystemError(errno == ELOOP ? ENOTDIR : errno, "list", dir);
  DIR* stream = ::fdopendir(fd);
  if (stream == nullptr) {
    int code = errno;
    ::close(fd);
    return SystemError(code, "list", dir);
  }
  std::unique_ptr<DIR, int (*)(DIR*)> closer(stream, ::closedir);
  std::vector<DirEntry> entries;
  for (;;) {
    errno = 0;
    struct dirent* ent = ::readdir(stream);
    if (ent == nullptr) {
      if (errno != 0) return SystemError(errno, "list", dir);
      break;
    }
    std::string_view name = ent->d_name;
    if (name == "." || name == "..") continue;
    struct stat st;
    if (::fstatat(fd, ent->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;  // removed since readdir saw it
      return SystemError(errno, "list", dir);
    }
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode) && !S_ISLNK(st.st_mode)) continue;
    std::string child =
        dir.empty() ? std::string(name) : std::string(dir) + "/" + std::string(name);
    HFVFS_ASSIGN_OR_RETURN(Attr attr, AttrFromStat(st, child));
    entries.push_back(DirEntry{std::string(name), std::move(attr)});
  }
  return entries;
}

Result<std::unique_ptr<File>> LocalLayer::open(std::string_view path, int flags) {
  const bool write = WantsWrite(flags);
  if (write) HFVFS_RETURN_IF_ERROR(CheckWritable("open for writing", path));
  HFVFS_ASSIGN_OR_RETURN(Parent p, ResolveParent(root_fd_, use_openat2_, path, "open"));
  if (p.name.empty()) return SystemError(EISDIR, "open", path);
  // O_NONBLOCK keeps a FIFO from blocking the open; it is cleared once the object is known
  // to be a regular file. Writable handles are opened read-write so that the kernel may read
  // back pages around a partial write; O_APPEND is dropped because writes come with offsets;
  // O_SYNC / O_DSYNC are kept, the application asked for durable writes.
  int base = O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | (flags & (O_TRUNC | O_SYNC | O_DSYNC));
  int fd = ::openat(p.fd, p.name.c_str(), base | (write ? O_RDWR : O_RDONLY));
  if (fd < 0 && write && errno == EACCES && (flags & O_ACCMODE) == O_WRONLY) {
    fd = ::openat(p.fd, p.name.c_str(), base | O_WRONLY);
  }
  if (fd < 0) return SystemError(errno, "open", path);
  Fd owned(fd);
  struct stat st;
  if (::fstat(fd, &st) != 0) return SystemError(errno, "open", path);
  if (S_ISDIR(st.st_mode)) return SystemError(EISDIR, "open", path);
  if (!S_ISREG(st.st_mode)) return AttrFromStat(st, path).error();
  int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0 || ::fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
    return SystemError(errno, "open", path);
  }
  return std::unique_ptr<File>(
      std::make_unique<LocalFile>(std::move(owned), std::string(path), counters_));
}

Result<std::unique_ptr<File>> LocalLayer::create(std::string_view path, uint32_t mode, int flags) {
  HFVFS_RETURN_IF_ERROR(CheckWritable("create", path));
  HFVFS_ASSIGN_OR_RETURN(Parent p, ResolveParent(root_fd_, use_openat2_, path, "create"));
  if (p.name.empty()) return SystemError(EEXIST, "create", path);
  int fd =
      ::openat(p.fd, p.name.c_str(),
               O_CREAT | O_EXCL | O_RDWR | O_NOFOLLOW | O_CLOEXEC | (flags & (O_SYNC | O_DSYNC)),
               mode & 07777);
  if (fd < 0 && errno == EEXIST && (flags & O_EXCL) == 0) {
    // create(2) without O_EXCL on an existing file opens it (O_TRUNC honoured).
    return open(path, flags & ~(O_CREAT | O_EXCL));
  }
  if (fd < 0) return SystemError(errno, "create", path);
  Fd owned(fd);
  // The process umask has already been applied by the kernel to `mode`; store it exactly.
  if (::fchmod(fd, mode & 07777) != 0) return SystemError(errno, "create", path);
  return std::unique_ptr<File>(
      std::make_unique<LocalFile>(std::move(owned), std::string(path), counters_));
}

Status LocalLayer::mkdir(std::string_view path, uint32_t mode) {
  HFVFS_RETURN_IF_ERROR(CheckWritable("mkdir", path));
  HFVFS_ASSIGN_OR_RETURN(Parent p, ResolveParent(root_fd_, use_openat2_, path, "mkdir"));
  if (p.name.empty()) return SystemError(EEXIST, "mkdir", path);
  if (::mkdirat(p.fd, p.name.c_str(), mode & 07777) != 0) return SystemError(errno, "mkdir", path);
  return ChmodNoFollow(p.fd, p.name, mode, path);
}

Status LocalLayer::remove(std::string_view path) {
  HFVFS_RETURN_IF_ERROR(CheckWritable("unlink", path));
  HFVFS_ASSIGN_OR_RETURN(Parent p, ResolveParent(root_fd_, use_openat2_, path, "unlink"));
  if (p.name.empty()) return SystemError(EISDIR, "unlink", path);
  if (::unlinkat(p.fd, p.name.c_str(), 0) != 0) return SystemError(errno, "unlink", path);
  return Ok();
}

Status LocalLayer::rmdir(std::string_view path) {
  HFVFS_RETURN_IF_ERROR(CheckWritable("rmdir", path));
  HFVFS_ASSIGN_OR_RETURN(Parent p, ResolveParent(root_fd_, use_openat2_, path, "rmdir"));
  if (p.name.empty()) return SystemError(EBUSY, "rmdir", path);
  if (::unlinkat(p.fd, p.name.c_str(), AT_REMOVEDIR) != 0) {
    // POSIX allows EEXIST for a non-empty folder; the contract says ENOTEMPTY.
    return SystemError(errno == EEXIST ? ENOTEMPTY : errno, "rmdir", path);
  }
  return Ok();
}

Status LocalLayer::rename(std::string_view from, std::string_view to, bool noreplace) {
  HFVFS_RETURN_IF_ERROR(CheckWritable("rename", from));
  HFVFS_ASSIGN_OR_RETURN(Parent src, ResolveParent(root_fd_, use_openat2_, from, "rename"));
  HFVFS_ASSIGN_OR_RETURN(Parent dst, ResolveParent(root_fd_, use_openat2_, to, "rename"));
  if (src.name.empty() || dst.name.empty()) return SystemError(EBUSY, "rename", from);
  const char* src_name = src.name.c_str();
  const char* dst_name = dst.name.c_str();
  if (::renameat2(src.fd, src_name, dst.fd, dst_name, noreplace ? RENAME_NOREPLACE : 0) == 0) {
    return Ok();
  }
  int code = errno;
  if (noreplace && (code == EINVAL || code == ENOSYS)) {
    // The file system lacks RENAME_NOREPLACE. Check, then rename: a racing local writer could
    // slip in between, which no caller of this layer can do through it.
    struct stat st;
    if (::fstatat(dst.fd, dst_name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
      return SystemError(EEXIST, "rename", to);
    }
    if (::renameat(src.fd, src_name, dst.fd, dst_name) == 0) return Ok();
    code = errno;
  }
  return Err(code, "local: rename '" + std::string(from) + "' to '" + std::string(to) +
                       "': " + std::strerror(code));
}

Status LocalLayer::setattr(std::string_view path, const SetAttr& change) {
  HFVFS_RETURN_IF_ERROR(CheckWritable("setattr", path));
  HFVFS_ASSIGN_OR_RETURN(Parent p, ResolveParent(root_fd_, use_openat2_, path, "setattr"));
  // Size first: truncating moves the mtime, which a set_mtime in the same call must win over.
  if (change.set_size) {
    if (p.name.empty()) return SystemError(EISDIR, "truncate", path);
    Fd fd(::openat(p.fd, p.name.c_str(), O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (!fd.valid()) return SystemError(errno == ELOOP ? EINVAL : errno, "truncate", path);
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) return SystemError(errno, "truncate", path);
    if (!S_ISREG(st.st_mode)) return SystemError(EINVAL, "truncate", path);
    if (::ftruncate(fd.get(), static_cast<off_t>(change.size)) != 0) {
      return SystemError(errno, "truncate", path);
    }
  }
  if (change.set_mode) HFVFS_RETURN_IF_ERROR(ChmodNoFollow(p.fd, p.name, change.mode, path));
  if (change.set_mtime) {
    struct timespec times[2];
    times[0].tv_sec = 0;
    times[0].tv_nsec = UTIME_OMIT;
    times[1].tv_sec = static_cast<time_t>(change.mtime_ns / 1'000'000'000);
    times[1].tv_nsec = static_cast<long>(change.mtime_ns % 1'000'000'000);
    if (times[1].tv_nsec < 0) {  // before the epoch: keep nanoseconds in [0, 1e9)
      times[1].tv_nsec += 1'000'000'000;
      times[1].tv_sec -= 1;
    }
    int rc = p.name.empty() ? ::futimens(root_fd_, times)
                            : ::utimensat(p.fd, p.name.c_str(), times, AT_SYMLINK_NOFOLLOW);
    if (rc != 0) return SystemError(errno, "utimens", path);
  }
  return Ok();
}

Status LocalLayer::symlink(std::string_view target, std::string_view path) {
  HFVFS_RETURN_IF_ERROR(CheckWritable("symlink", path));
  if (target.empty()) return SystemError(ENOENT, "symlink (empty target)", path);
  if (target.find('\0') != std::string_view::npos) {
    return SystemError(EINVAL, "symlink (NUL in target)", path);
  }
  HFVFS_ASSIGN_OR_RETURN(Parent p, ResolveParent(root_fd_, use_openat2_, path, "symlink"));
  if (p.name.empty()) return SystemError(EEXIST, "symlink", path);
  // The target is stored as given and never followed by this layer.
  if (::symlinkat(std::string(target).c_str(), p.fd, p.name.c_str()) != 0) {
    return SystemError(errno, "symlink", path);
  }
  return Ok();
}

Result<std::string> LocalLayer::readlink(std::string_view path) {
  HFVFS_ASSIGN_OR_RETURN(Parent p, ResolveParent(root_fd_, use_openat2_, path, "readlink"));
  if (p.name.empty()) return SystemError(EINVAL, "readlink", path);
  std::string buf(256, '\0');
  for (;;) {
    ssize_t n = ::readlinkat(p.fd, p.name.c_str(), buf.data(), buf.size());
    if (n < 0) return SystemError(errno, "readlink", path);
    if (static_cast<size_t>(n) < buf.size()) {
      buf.resize(static_cast<size_t>(n));
      return buf;
    }
    buf.resize(buf.size() * 2);  // possibly truncated: try again with more room
  }
}

Result<FsStats> LocalLayer::statfs() {
  struct statvfs vfs;
  if (::fstatvfs(root_fd_, &vfs) != 0) return SystemError(errno, "statfs", "");
  FsStats stats;
  stats.block_size = vfs.f_frsize != 0 ? vfs.f_frsize : vfs.f_bsize;
  stats.total_blocks = vfs.f_blocks;
  stats.free_blocks = vfs.f_bavail;
  stats.total_files = vfs.f_files;
  stats.free_files = vfs.f_favail;
  stats.name_max = static_cast<uint32_t>(vfs.f_namemax);
  return stats;
}

void LocalLayer::counters(std::vector<std::pair<std::string, int64_t>>& out) const {
  out.emplace_back("bytes_read", counters_->bytes_read.load(std::memory_order_relaxed));
  out.emplace_back("bytes_written", counters_->bytes_written.load(std::memory_order_relaxed));
  out.emplace_back("files_open", counters_->files_open.load(std::memory_order_relaxed));
}

}  // namespace hfvfs::local
