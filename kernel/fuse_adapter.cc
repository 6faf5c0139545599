#define FUSE_USE_VERSION 312

#include "fuse_adapter.h"

#include "hfvfs/memory.h"

#include <fcntl.h>
#include <fuse3/fuse_lowlevel.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <functional>
#include <mutex>
#include <utility>
#include <vector>

namespace hfvfs::kernel {

namespace {

constexpr unsigned kMaxIo = 1 << 20;  // max_read / max_write: 1 MiB
constexpr unsigned kMaxBackground = 64;
constexpr unsigned kCongestionThreshold = 48;

// libfuse reports mount failures (fusermount3 errors, bad options) through its log hook only;
// the last message is kept so Mount() can name the cause. libfuse's hook is process-wide.
std::mutex last_fuse_message_mutex;  // guards last_fuse_message
std::string last_fuse_message;

void LogFromLibfuse(enum fuse_log_level level, const char* fmt, va_list ap) {
  char line[1024];
  vsnprintf(line, sizeof(line), fmt, ap);
  std::string text(line);
  while (!text.empty() && text.back() == '\n') text.pop_back();
  if (level <= FUSE_LOG_ERR) {
    std::lock_guard lock(last_fuse_message_mutex);
    last_fuse_message = text;
  }
  if (level <= FUSE_LOG_ERR)
    spdlog::error("libfuse: {}", text);
  else if (level <= FUSE_LOG_NOTICE)
    spdlog::info("libfuse: {}", text);
  else
    spdlog::debug("libfuse: {}", text);
}

std::string TakeLastFuseMessage() {
  std::lock_guard lock(last_fuse_message_mutex);
  return std::exchange(last_fuse_message, "");
}

FuseAdapter& AdapterOf(fuse_req_t req) {
  return *static_cast<FuseAdapter*>(fuse_req_userdata(req));
}
Vfs& VfsOf(fuse_req_t req) { return AdapterOf(req).vfs(); }

// Every handler ends in exactly one of these replies (or a fuse_reply_* of its own).
void ReplyError(fuse_req_t req, const Error& error, const char* op) {
  int code = error.code();
  if (code <= 0 || code > 4095) code = EIO;
  VfsOf(req).CountError();
  if (code == ENOENT)
    spdlog::trace("{}: {}", op, error.message());
  else
    spdlog::debug("{}: {} ({})", op, error.message(), std::strerror(code));
  fuse_reply_err(req, code);
}

fuse_entry_param ToParam(const Entry& e) {
  fuse_entry_param p{};
  p.ino = e.ino;
  p.generation = e.generation;
  p.attr = e.attr;
  p.attr_timeout = e.attr_timeout;
  p.entry_timeout = e.entry_timeout;
  return p;
}

// --------------------------------------------------------------------------------------------

void OnInit(void* userdata, fuse_conn_info* conn) {
  auto* adapter = static_cast<FuseAdapter*>(userdata);
  conn->max_write = kMaxIo;
  conn->max_read = kMaxIo;
  conn->max_readahead = std::max(conn->max_readahead, kMaxIo);
  conn->max_background = kMaxBackground;
  conn->congestion_threshold = kCongestionThreshold;
  auto want = [&](unsigned cap) {
    if (conn->capable & cap) conn->want |= cap;
  };
  want(FUSE_CAP_ASYNC_READ);
  want(FUSE_CAP_ATOMIC_O_TRUNC);
  want(FUSE_CAP_READDIRPLUS);
  want(FUSE_CAP_READDIRPLUS_AUTO);
  want(FUSE_CAP_PARALLEL_DIROPS);
  want(FUSE_CAP_AUTO_INVAL_DATA);
  want(FUSE_CAP_CACHE_SYMLINKS);
  // Locks stay in the kernel (see fuse_adapter.h); no writeback cache: layers see every write.
  conn->want &= ~(FUSE_CAP_POSIX_LOCKS | FUSE_CAP_FLOCK_LOCKS | FUSE_CAP_WRITEBACK_CACHE |
                  FUSE_CAP_EXPORT_SUPPORT | FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE |
                  FUSE_CAP_SPLICE_MOVE);
  spdlog::info("FUSE session ready on {}: max_read/max_write {} KiB, max_background {}, threads {}",
               adapter->config().mountpoint, conn->max_write / 1024, conn->max_background,
               adapter->config().max_threads);
}

void OnLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Vfs& vfs = VfsOf(req);
  Result<Entry> e = vfs.Lookup(parent, name);
  if (!e) {
    if (e.code() == ENOENT && vfs.negative_ttl_seconds() > 0) {
      fuse_entry_param negative{};
      negative.entry_timeout = vfs.negative_ttl_seconds();
      fuse_reply_entry(req, &negative);
      return;
    }
    ReplyError(req, e.error(), "lookup");
    return;
  }
  fuse_entry_param p = ToParam(*e);
  if (fuse_reply_entry(req, &p) != 0) vfs.Forget(e->ino, 1);  // the kernel did not take it
}

void OnForget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  VfsOf(req).Forget(ino, nlookup);
  fuse_reply_none(req);
}

void OnForgetMulti(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  Vfs& vfs = VfsOf(req);
  for (size_t i = 0; i < count; ++i) vfs.Forget(forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none(req);
}

void OnGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  Result<AttrReply> a = VfsOf(req).GetAttr(ino);
  if (!a) return ReplyError(req, a.error(), "getattr");
  fuse_reply_attr(req, &a->attr, a->timeout);
}

void OnSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info* fi) {
  Vfs& vfs = VfsOf(req);
  if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
    // Ownership is a mount option; only a chown to what is shown already succeeds.
    bool uid_ok = !(to_set & FUSE_SET_ATTR_UID) || attr->st_uid == vfs.options().uid;
    bool gid_ok = !(to_set & FUSE_SET_ATTR_GID) || attr->st_gid == vfs.options().gid;
    if (!uid_ok || !gid_ok)
      return ReplyError(req, Err(EPERM, "owners are set by the mount options uid/gid"), "chown");
  }
  SetAttr change;
  if (to_set & FUSE_SET_ATTR_MODE) {
    change.set_mode = true;
    change.mode = attr->st_mode & 07777;
  }
  if (to_set & FUSE_SET_ATTR_SIZE) {
    change.set_size = true;
    change.size = static_cast<uint64_t>(attr->st_size);
  }
  if (to_set & FUSE_SET_ATTR_MTIME_NOW) {
    change.set_mtime = true;
    timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    change.mtime_ns = int64_t{now.tv_sec} * 1'000'000'000 + now.tv_nsec;
  } else if (to_set & FUSE_SET_ATTR_MTIME) {
    change.set_mtime = true;
    change.mtime_ns = int64_t{attr->st_mtim.tv_sec} * 1'000'000'000 + attr->st_mtim.tv_nsec;
  }
  Result<AttrReply> a = (change.set_mode || change.set_size || change.set_mtime)
                            ? vfs.SetAttr(ino, change, fi ? fi->fh : 0)
                            : vfs.GetAttr(ino);  // atime or ownership only: nothing to store
  if (!a) return ReplyError(req, a.error(), "setattr");
  fuse_reply_attr(req, &a->attr, a->timeout);
}

void OnReadlink(fuse_req_t req, fuse_ino_t ino) {
  Result<std::string> target = VfsOf(req).Readlink(ino);
  if (!target) return ReplyError(req, target.error(), "readlink");
  fuse_reply_readlink(req, target->c_str());
}

void ReplyEntry(fuse_req_t req, Result<Entry> e, const char* op) {
  if (!e) return ReplyError(req, e.error(), op);
  fuse_entry_param p = ToParam(*e);
  if (fuse_reply_entry(req, &p) != 0) VfsOf(req).Forget(e->ino, 1);
}

void OnMknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t) {
  if (!S_ISREG(mode))
    return ReplyError(req, Err(EPERM, "only regular files can be created here"), "mknod");
  Vfs& vfs = VfsOf(req);
  auto created = vfs.Create(parent, name, mode, O_WRONLY | O_CREAT | O_EXCL);
  if (!created) return ReplyError(req, created.error(), "mknod");
  (void)vfs.Flush(created->second.fh);
  (void)vfs.Release(created->second.fh);
  ReplyEntry(req, created->first, "mknod");
}

void OnMkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  ReplyEntry(req, VfsOf(req).Mkdir(parent, name, mode), "mkdir");
}

void OnSymlink(fuse_req_t req, const char* target, fuse_ino_t parent, const char* name) {
  ReplyEntry(req, VfsOf(req).Symlink(target, parent, name), "symlink");
}

void OnUnlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Status s = VfsOf(req).Unlink(parent, name);
  if (!s) return ReplyError(req, s.error(), "unlink");
  fuse_reply_err(req, 0);
}

void OnRmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Status s = VfsOf(req).Rmdir(parent, name);
  if (!s) return ReplyError(req, s.error(), "rmdir");
  fuse_reply_err(req, 0);
}

void OnRename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t new_parent,
              const char* new_name, unsigned int flags) {
  if (flags & ~RENAME_NOREPLACE)
    return ReplyError(req, Err(EINVAL, "only RENAME_NOREPLACE is supported"), "rename");
  Status s = VfsOf(req).Rename(parent, name, new_parent, new_name, flags & RENAME_NOREPLACE);
  if (!s) return ReplyError(req, s.error(), "rename");
  fuse_reply_err(req, 0);
}

void OnOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Vfs& vfs = VfsOf(req);
  Result<Vfs::Opened> opened = vfs.Open(ino, fi->flags);
  if (!opened) return ReplyError(req, opened.error(), "open");
  fi->fh = opened->fh;
  fi->keep_cache = opened->keep_cache || vfs.immutable();
  if (fuse_reply_open(req, fi) != 0) (void)vfs.Release(opened->fh);  // interrupted
}

void OnCreate(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
              fuse_file_info* fi) {
  Vfs& vfs = VfsOf(req);
  auto created = vfs.Create(parent, name, mode, fi->flags);
  if (!created) return ReplyError(req, created.error(), "create");
  fi->fh = created->second.fh;
  fuse_entry_param p = ToParam(created->first);
  if (fuse_reply_create(req, &p, fi) != 0) {
    (void)vfs.Release(created->second.fh);
    vfs.Forget(created->first.ino, 1);
  }
}

// Memory for read replies comes from MapHuge: page-aligned, so a layer may read into it with
// O_DIRECT (which needs 512-byte aligned memory), and in huge pages where the system allows (a
// 1 MiB direct read from 4 KiB pages needs 256 segments, more than virtio-blk's 254: the block
// layer splits it in two requests).
//
// The 1 MiB reply buffers are cut from one such mapping, two to a 2 MiB page, and each read
// takes one for the time of its reply: the lowest free slot first, so the slots in use at once
// stay packed in few pages and the same few stay warm in the CPU caches. (A buffer per thread
// gave each of 16 threads 2 MiB of resident memory for 1 MiB of use; a slot kept per thread
// still cycled as many buffers through the caches as threads had served reads: with crypt's
// ciphertext buffers pooled the same way, a 1 GiB read through local + crypt with its
// ciphertext in the page cache went from 0.75 to 0.73 core-seconds per GiB, 1.02x faster.)
class ReplySlots {
 public:
  static constexpr size_t kSlots = 64;  // above max_threads' usual values

  static ReplySlots& Get() {
    static ReplySlots* slots = new ReplySlots();  // never destroyed: threads may exit after main
    return *slots;
  }
  // nullptr when every slot is in use (or the mapping failed).
  std::byte* Take() {
    std::lock_guard lock(mu_);
    if (free_.empty()) return nullptr;
    std::byte* slot = free_.back();
    free_.pop_back();
    return slot;
  }
  void Give(std::byte* slot) {
    std::lock_guard lock(mu_);
    // Kept in descending address order: the lowest free slot is at the back.
    free_.insert(std::lower_bound(free_.begin(), free_.end(), slot, std::greater<>()), slot);
  }

 private:
  ReplySlots() {
    std::byte* base = MapHuge(kSlots * kMaxIo);  // never unmapped
    if (!base) return;                           // every read uses its thread's own buffer
    for (size_t i = kSlots; i-- > 0;) free_.push_back(base + i * kMaxIo);
  }
  std::mutex mu_;  // guards free_
  std::vector<std::byte*> free_;
};

// A reply slot held for one read, given back when it ends.
class SlotLease {
 public:
  explicit SlotLease(size_t size) : slot_(size <= kMaxIo ? ReplySlots::Get().Take() : nullptr) {}
  ~SlotLease() {
    if (slot_) ReplySlots::Get().Give(slot_);
  }
  SlotLease(const SlotLease&) = delete;
  SlotLease& operator=(const SlotLease&) = delete;
  std::byte* get() const { return slot_; }

 private:
  std::byte* const slot_;
};

// A FUSE thread's own reply buffer, for replies above max_read or when every slot is in use.
class ReadBuffer {
 public:
  ~ReadBuffer() { UnmapHuge(data_, capacity_); }
  std::byte* Get(size_t size) {
    if (size <= capacity_) return data_;
    constexpr size_t kHuge = 2 << 20;
    const size_t capacity = (size + kHuge - 1) / kHuge * kHuge;
    std::byte* data = MapHuge(capacity);
    if (!data) return nullptr;
    UnmapHuge(data_, capacity_);
    data_ = data;
    capacity_ = capacity;
    return data_;
  }

 private:
  std::byte* data_ = nullptr;
  size_t capacity_ = 0;
};

void OnRead(fuse_req_t req, fuse_ino_t, size_t size, off_t offset, fuse_file_info* fi) {
  SlotLease slot(size);
  thread_local ReadBuffer own;
  std::byte* data = slot.get() ? slot.get() : own.Get(size);
  if (!data) return ReplyError(req, Error{ENOMEM, "no memory for a read buffer"}, "read");
  // The reply is written from the pieces the layer lends (its own memory, or this buffer),
  // while they are valid.
  bool replied = false;
  Status s = VfsOf(req).ReadLent(
      fi->fh, static_cast<uint64_t>(offset), std::span(data, size), [&](File::LentPieces pieces) {
        replied = true;
        if (pieces.size() <= 1) {  // fuse_reply_iov allocates; one piece needs no iovec array
          const char* bytes = pieces.empty() ? "" : reinterpret_cast<const char*>(pieces[0].data());
          fuse_reply_buf(req, bytes, pieces.empty() ? 0 : pieces[0].size());
          return;
        }
        constexpr size_t kInline = 8;
        iovec inline_iov[kInline];
        std::vector<iovec> many;
        iovec* iov = inline_iov;
        if (pieces.size() > kInline) {
          many.resize(pieces.size());
          iov = many.data();
        }
        int count = 0;
        for (const auto& piece : pieces) {
          if (piece.empty()) continue;
          iov[count++] = {const_cast<std::byte*>(piece.data()), piece.size()};
        }
        fuse_reply_iov(req, iov, count);
      });
  if (replied) {
    if (!s) spdlog::warn("read: a layer failed after lending its bytes: {}", s.error().message());
    return;
  }
  if (s) s = Err(EIO, "read: the layer lent no bytes");  // a layer bug; the request must end
  ReplyError(req, s.error(), "read");
}

void OnWrite(fuse_req_t req, fuse_ino_t, const char* data, size_t size, off_t offset,
             fuse_file_info* fi) {
  Result<size_t> n = VfsOf(req).Write(fi->fh, static_cast<uint64_t>(offset),
                                      std::span(reinterpret_cast<const std::byte*>(data), size));
  if (!n) return ReplyError(req, n.error(), "write");
  fuse_reply_write(req, *n);
}

void OnFlush(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  Status s = VfsOf(req).Flush(fi->fh);
  if (!s) return ReplyError(req, s.error(), "flush");
  fuse_reply_err(req, 0);
}

void OnRelease(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  Status s = VfsOf(req).Release(fi->fh);
  if (!s) spdlog::warn("release: {}", s.error().message());  // close(2) already returned
  fuse_reply_err(req, 0);
}

void OnFsync(fuse_req_t req, fuse_ino_t, int datasync, fuse_file_info* fi) {
  Status s = VfsOf(req).Fsync(fi->fh, datasync != 0);
  if (!s) return ReplyError(req, s.error(), "fsync");
  fuse_reply_err(req, 0);
}

void OnOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Vfs& vfs = VfsOf(req);
  Result<Vfs::Opened> dh = vfs.OpenDir(ino);
  if (!dh) return ReplyError(req, dh.error(), "opendir");
  fi->fh = dh->fh;
  // The kernel caches the listing's names; it keeps them across opens only while they are
  // the ones it saw last (or forever on an immutable stack). Attributes are not part of it.
  fi->cache_readdir = 1;
  fi->keep_cache = dh->keep_cache || vfs.immutable();
  if (fuse_reply_open(req, fi) != 0) vfs.ReleaseDir(dh->fh);
}

void ReadDir(fuse_req_t req, size_t size, off_t offset, fuse_file_info* fi, bool plus) {
  Vfs& vfs = VfsOf(req);
  std::vector<char> buf(size);
  size_t used = 0;
  uint64_t next = static_cast<uint64_t>(offset);
  bool full = false;
  while (!full) {
    Result<std::vector<DirItem>> items = vfs.ReadDir(fi->fh, next, 256);
    if (!items) return ReplyError(req, items.error(), "readdir");
    if (items->empty()) break;
    for (const DirItem& item : *items) {
      const off_t item_offset = static_cast<off_t>(next + 1);
      size_t added;
      if (plus) {
        // Size first: an entry that does not fit must not take a lookup reference.
        size_t need = fuse_add_direntry_plus(req, nullptr, 0, item.name.c_str(), nullptr, 0);
        if (need > size - used) {
          full = true;
          break;
        }
        Entry e = vfs.EntryForItem(fi->fh, item);
        fuse_entry_param p = ToParam(e);
        if (item.name == "." || item.name == "..") p.attr_timeout = p.entry_timeout = 0;
        added = fuse_add_direntry_plus(req, buf.data() + used, size - used, item.name.c_str(), &p,
                                       item_offset);
      } else {
        struct stat st {};
        st.st_ino = vfs.InoForItem(fi->fh, item);
        st.st_mode = item.attr.is_dir() ? S_IFDIR : item.attr.is_symlink() ? S_IFLNK : S_IFREG;
        added = fuse_add_direntry(req, buf.data() + used, size - used, item.name.c_str(), &st,
                                  item_offset);
        if (added > size - used) {
          full = true;
          break;
        }
      }
      used += added;
      ++next;
    }
  }
  fuse_reply_buf(req, buf.data(), used);
}

void OnReaddir(fuse_req_t req, fuse_ino_t, size_t size, off_t offset, fuse_file_info* fi) {
  ReadDir(req, size, offset, fi, false);
}

void OnReaddirplus(fuse_req_t req, fuse_ino_t, size_t size, off_t offset, fuse_file_info* fi) {
  ReadDir(req, size, offset, fi, true);
}

void OnReleasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  VfsOf(req).ReleaseDir(fi->fh);
  fuse_reply_err(req, 0);
}

void OnFsyncdir(fuse_req_t req, fuse_ino_t, int, fuse_file_info*) { fuse_reply_err(req, 0); }

void OnStatfs(fuse_req_t req, fuse_ino_t) {
  Result<struct statvfs> st = VfsOf(req).Statfs();
  if (!st) return ReplyError(req, st.error(), "statfs");
  fuse_reply_statfs(req, &*st);
}

// Runs a handler and turns an escaping exception (a plugin breaking the no-throw contract, or
// an allocation failure) into EIO instead of terminating the daemon. Handlers reply last, so
// an exception always comes before the reply.
template <auto Handler, typename... Args>
void Guarded(fuse_req_t req, Args... args) {
  try {
    Handler(req, args...);
  } catch (const std::exception& e) {
    spdlog::error("a request failed with an exception: {}", e.what());
    fuse_reply_err(req, EIO);
  } catch (...) {
    spdlog::error("a request failed with an unknown exception");
    fuse_reply_err(req, EIO);
  }
}

const fuse_lowlevel_ops kOps = [] {
  fuse_lowlevel_ops ops{};
  ops.init = OnInit;
  ops.lookup = Guarded<OnLookup>;
  ops.forget = OnForget;
  ops.forget_multi = OnForgetMulti;
  ops.getattr = Guarded<OnGetattr>;
  ops.setattr = Guarded<OnSetattr>;
  ops.readlink = Guarded<OnReadlink>;
  ops.mknod = Guarded<OnMknod>;
  ops.mkdir = Guarded<OnMkdir>;
  ops.symlink = Guarded<OnSymlink>;
  ops.unlink = Guarded<OnUnlink>;
  ops.rmdir = Guarded<OnRmdir>;
  ops.rename = Guarded<OnRename>;
  ops.open = Guarded<OnOpen>;
  ops.create = Guarded<OnCreate>;
  ops.read = Guarded<OnRead>;
  ops.write = Guarded<OnWrite>;
  ops.flush = Guarded<OnFlush>;
  ops.release = Guarded<OnRelease>;
  ops.fsync = Guarded<OnFsync>;
  ops.opendir = Guarded<OnOpendir>;
  ops.readdir = Guarded<OnReaddir>;
  ops.readdirplus = Guarded<OnReaddirplus>;
  ops.releasedir = Guarded<OnReleasedir>;
  ops.fsyncdir = Guarded<OnFsyncdir>;
  ops.statfs = Guarded<OnStatfs>;
  return ops;
}();

}  // namespace

FuseAdapter::FuseAdapter(Vfs& vfs, FuseConfig config) : vfs_(vfs), config_(std::move(config)) {}

FuseAdapter::~FuseAdapter() {
  if (session_ != nullptr) {
    if (mounted_) fuse_session_unmount(session_);
    fuse_session_destroy(session_);
  }
}

Status FuseAdapter::Mount() {
  fuse_set_log_func(LogFromLibfuse);
  TakeLastFuseMessage();
  std::string options = "fsname=" + config_.fsname +
                        ",subtype=hfvfs,default_permissions,max_read=" + std::to_string(kMaxIo);
  if (config_.allow_other) options += ",allow_other";
  if (config_.read_only) options += ",ro";
  std::vector<std::string> argv_storage = {"hfvfs", "-o", options};
  if (config_.debug) argv_storage.push_back("-d");
  std::vector<char*> argv;
  argv.reserve(argv_storage.size());
  for (std::string& arg : argv_storage) argv.push_back(arg.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  session_ = fuse_session_new(&args, &kOps, sizeof(kOps), this);
  fuse_opt_free_args(&args);
  if (session_ == nullptr)
    return Err(EINVAL,
               "libfuse refused the session options '" + options + "': " + TakeLastFuseMessage());
  if (fuse_session_mount(session_, config_.mountpoint.c_str()) != 0) {
    std::string why = TakeLastFuseMessage();
    return Err(EIO, "mounting FUSE on " + config_.mountpoint +
                        " failed: " + (why.empty() ? "see the log" : why) +
                        " (is /dev/fuse available, fusermount3 installed, and for allow_other "
                        "user_allow_other set in /etc/fuse.conf?)");
  }
  mounted_ = true;
  return Ok();
}

int FuseAdapter::Loop() {
  fuse_loop_config* loop = fuse_loop_cfg_create();
  fuse_loop_cfg_set_max_threads(loop, static_cast<unsigned>(config_.max_threads));
  fuse_loop_cfg_set_clone_fd(loop, 0);  // clone_fd fails in unprivileged containers
  int rc = fuse_session_loop_mt(session_, loop);
  fuse_loop_cfg_destroy(loop);
  return rc < 0 ? -rc : rc;
}

void FuseAdapter::Exit() {
  if (session_ != nullptr) fuse_session_exit(session_);
}

Status FuseAdapter::Detach() {
  const std::string& dir = config_.mountpoint;
  if (geteuid() == 0) {
    if (umount2(dir.c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT)
      return Err(errno, "umount " + dir + ": " + std::strerror(errno));
    return Ok();
  }
  pid_t pid = fork();
  if (pid == 0) {
    int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) dup2(devnull, 2);
    execlp("fusermount3", "fusermount3", "-u", "-z", "-q", dir.c_str(), nullptr);
    _exit(127);
  }
  if (pid < 0) return Err(errno, "fork for fusermount3: " + std::string(std::strerror(errno)));
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return Err(EIO, "fusermount3 -u -z " + dir + " failed");
  return Ok();
}

void FuseAdapter::RaiseReadahead() const {
  struct stat st;
  if (stat(config_.mountpoint.c_str(), &st) != 0) return;
  std::string knob = "/sys/class/bdi/" + std::to_string(major(st.st_dev)) + ":" +
                     std::to_string(minor(st.st_dev)) + "/read_ahead_kb";
  int fd = open(knob.c_str(), O_WRONLY | O_CLOEXEC);
  std::string value = std::to_string(config_.read_ahead_kib);
  if (fd < 0 || write(fd, value.data(), value.size()) != static_cast<ssize_t>(value.size())) {
    spdlog::debug("kernel readahead left at its default ({} not writable)", knob);
  } else {
    spdlog::info("kernel readahead raised to {} KiB ({})", value, knob);
  }
  if (fd >= 0) close(fd);
}

int FuseAdapter::InvalidateInode(uint64_t ino, int64_t offset, int64_t length) {
  if (session_ == nullptr) return -ENOTCONN;
  return fuse_lowlevel_notify_inval_inode(session_, ino, offset, length);
}

int FuseAdapter::InvalidateEntry(uint64_t parent, std::string_view name) {
  if (session_ == nullptr) return -ENOTCONN;
  std::string copy(name);
  return fuse_lowlevel_notify_inval_entry(session_, parent, copy.c_str(), copy.size());
}

}  // namespace hfvfs::kernel
