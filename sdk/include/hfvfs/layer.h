// File: layer.h
//
// The layer contract. A mount is a stack of layers: a source at the bottom (a local folder,
// a Hub repo, an S3 bucket) and wrappers above it (cache, sync, crypt, overlay). The kernel
// talks to the top layer only; each wrapper talks to the one below it.
//
// Paths: layers speak paths, not inodes. "" is the root; components are joined by '/'; there is
// no leading or trailing slash and never "." or ".." (the kernel guarantees this; see path.h).
//
// Thread safety: every method of Layer and File may be called concurrently from many threads
// (the FUSE loop is multithreaded), except that one File is never closed while another call on
// it is running.
//
// Errors: every call returns a Result with an errno-compatible code. The codes the kernel
// expects: ENOENT (no such path), ENOTDIR / EISDIR (wrong kind), EEXIST, ENOTEMPTY, EROFS (the
// stack cannot write), EOPNOTSUPP (this write pattern is not supported by this stack), EACCES,
// EIO (the store failed; the message says how), ENAMETOOLONG, EXDEV, ENOSPC.
//
// Capabilities: optional operations have default implementations that refuse (EROFS for writes
// on a read-only source, EOPNOTSUPP for the rest) and a `Capabilities` record that says which
// ones a layer serves. A wrapper defaults to its lower layer's answers (LayerWrapper) and must
// never claim more than it can deliver.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "hfvfs/result.h"

namespace hfvfs {

enum class FileType : uint8_t { kFile, kDirectory, kSymlink };

// What a layer knows of one path.
struct Attr {
  FileType type = FileType::kFile;
  uint64_t size = 0;     // bytes of content as read through this layer (plaintext for crypt)
  int64_t mtime_ns = 0;  // modification time, nanoseconds since the epoch
  uint32_t mode = 0;     // permission bits only (07777); 0 = let the kernel choose a default
  // Opaque; changes whenever the content changes (etag, xet hash, commit + oid, mtime + size).
  // Caches key content by (path, version); nothing else may be trusted for freshness. Empty
  // means "unknown": such content must not be cached across opens.
  std::string version;

  bool is_dir() const { return type == FileType::kDirectory; }
  bool is_file() const { return type == FileType::kFile; }
  bool is_symlink() const { return type == FileType::kSymlink; }
};

struct DirEntry {
  std::string name;  // one component, no '/'
  Attr attr;
};

// A partial attribute change (chmod, utimens, truncate). Unset fields are left alone.
struct SetAttr {
  bool set_mode = false;
  uint32_t mode = 0;
  bool set_mtime = false;
  int64_t mtime_ns = 0;
  bool set_size = false;  // truncate or extend with zeros
  uint64_t size = 0;
};

struct FsStats {
  uint64_t block_size = 4096;
  uint64_t total_blocks = 0;  // 0 = unknown; the kernel then reports a large free space
  uint64_t free_blocks = 0;
  uint64_t total_files = 0;
  uint64_t free_files = 0;
  uint32_t name_max = 255;
};

// What a layer can do. Every field defaults to "no"; a source sets what it serves, a wrapper
// derives its answer from its lower layer's.
struct Capabilities {
  bool writable = false;      // create, sequential write of new files, mkdir, remove, rmdir
  bool random_write = false;  // write at any offset of an existing file, truncate, append
  bool rename = false;        // rename of files (and of directories when rename_dirs)
  bool rename_dirs = false;
  bool atomic_rename = false;  // rename is one atomic step (not copy + delete)
  bool symlinks = false;       // symlink / readlink
  bool set_mode = false;       // chmod persists
  bool set_mtime = false;      // utimens persists
  bool changes = false;        // changes() reports what changed below
  // Content at a given path never changes while mounted (a Hub commit): the kernel may cache
  // attributes, entries and pages for a long time.
  bool immutable = false;
};

// A reference to a callable that is only called during the call it is passed to: no copy and
// no allocation (a std::function of a lambda with a few captures allocates on every read).
template <typename Signature>
class CallbackRef;
template <typename R, typename... Args>
class CallbackRef<R(Args...)> {
 public:
  template <typename F,
            typename = std::enable_if_t<!std::is_same_v<std::remove_cvref_t<F>, CallbackRef> &&
                                        std::is_invocable_r_v<R, F&, Args...>>>
  CallbackRef(F&& f)  // NOLINT(google-explicit-constructor): passed as a lambda
      : object_(const_cast<void*>(static_cast<const void*>(std::addressof(f)))),
        call_([](void* object, Args... args) -> R {
          return (*static_cast<std::remove_reference_t<F>*>(object))(std::forward<Args>(args)...);
        }) {}
  R operator()(Args... args) const { return call_(object_, std::forward<Args>(args)...); }

 private:
  void* object_;
  R (*call_)(void*, Args...);
};

// One remote change, as reported by changes().
struct Change {
  enum class Kind : uint8_t { kAdded, kModified, kRemoved };
  Kind kind = Kind::kModified;
  std::string path;
};

struct Changes {
  // Something changed below but the layer cannot say what (a Hub branch moved): the caller
  // must re-list what it cares about. `token` is the new revision marker, for the log.
  bool rescan = false;
  std::string token;
  std::vector<Change> changes;  // known changes (may be empty)
};

// One open file. Created by Layer::open/create; closed exactly once by close(); destroyed by
// its owner afterwards. read/write/truncate/flush/fsync may run concurrently with each other.
class File {
 public:
  virtual ~File() = default;

  // Fills `buf` completely with the bytes at [offset, offset + buf.size()), except where the
  // file ends: then it returns the count up to EOF (0 at or past EOF). Never a short read
  // mid-file: the kernel treats a short read as EOF and would shrink the file.
  virtual Result<size_t> read(uint64_t offset, std::span<std::byte> buf) = 0;

  // The bytes of one read as the layer lends them: in order, together the bytes read() would
  // have put in `buf`. Valid only while the Deliver call runs.
  using LentPieces = std::span<const std::span<const std::byte>>;
  using Deliver = CallbackRef<void(LentPieces)>;

  // The same read, for a caller that only passes the bytes on (the kernel's reply): a layer
  // that already holds some of them in memory (a cache's fill buffer) may lend those instead of
  // copying them into `buf`. On success, calls `deliver` exactly once, from this thread and
  // with no lock held, with pieces that may point into `buf` or into the layer's memory; on
  // failure, not at all. The default reads into `buf` and delivers that one piece.
  virtual Status read_lent(uint64_t offset, std::span<std::byte> buf, const Deliver& deliver);

  // Writes all of `data` at `offset` and returns data.size(), or fails. Layers without random
  // writes answer EOPNOTSUPP for a write that is not at the current end of a new file.
  virtual Result<size_t> write(uint64_t offset, std::span<const std::byte> data);

  virtual Status truncate(uint64_t size);

  // Called at every close(2) of a descriptor (dups included). Its error is what close(2)
  // returns, so a layer that uploads on close does so here. May be called more than once;
  // more writes may follow.
  virtual Status flush();

  // fsync(2): return only when everything written is durable in this layer's store.
  virtual Status fsync(bool datasync);

  // The last reference is gone (FUSE release). Nothing is called on the file afterwards. The
  // kernel cannot report this error to the application; layers report failures at flush().
  virtual Status close();

  // The attributes of the open file as this handle sees them (size includes unflushed writes).
  virtual Result<Attr> stat() = 0;
};

// Open flags are the POSIX ones (O_RDONLY, O_WRONLY, O_RDWR, O_TRUNC, O_APPEND, O_EXCL...).
// Layers ignore flags they do not understand.
class Layer {
 public:
  virtual ~Layer() = default;

  // The plugin type ("local", "cache"), for messages and `hfvfs status`.
  virtual std::string_view type() const = 0;
  virtual Capabilities capabilities() const = 0;

  // Called once after the whole stack is built and before the mount serves requests: load
  // indexes, replay journals, check credentials. Wrappers call their lower's start first
  // (LayerWrapper does); a failure aborts the mount with this error.
  virtual Status start();
  // Called once at stop, before unmounting: flush what is pending, within `deadline`. What
  // cannot be flushed in time must stay recoverable (journal). Top layer first, then down.
  virtual Status shutdown(std::chrono::steady_clock::time_point deadline);

  virtual Result<Attr> stat(std::string_view path) = 0;
  // One directory level, complete, in any order; never "." or "..".
  virtual Result<std::vector<DirEntry>> list(std::string_view dir) = 0;
  virtual Result<std::unique_ptr<File>> open(std::string_view path, int flags) = 0;

  // Writes. Defaults answer EROFS.
  virtual Result<std::unique_ptr<File>> create(std::string_view path, uint32_t mode, int flags);
  virtual Status mkdir(std::string_view path, uint32_t mode);
  virtual Status remove(std::string_view path);  // unlink a file or symlink
  virtual Status rmdir(std::string_view path);   // an empty directory
  // Replaces `to` if it exists, unless `noreplace` (then EEXIST).
  virtual Status rename(std::string_view from, std::string_view to, bool noreplace);
  virtual Status setattr(std::string_view path, const SetAttr& change);
  virtual Status symlink(std::string_view target, std::string_view path);
  virtual Result<std::string> readlink(std::string_view path);
  virtual Result<FsStats> statfs();

  // What changed below since the last call. Default: ENOSYS (the layer cannot tell; callers
  // that need freshness re-list).
  virtual Result<Changes> changes();

  // Appends this layer's own counters (not its lower's) as (name, value) for `hfvfs status`.
  virtual void counters(std::vector<std::pair<std::string, int64_t>>& out) const;

  // Appends lines of this layer's own state for `hfvfs status` that are not numbers, e.g. the
  // last error with the path and the operation it concerns. Never secrets. Default: none.
  virtual void status_notes(std::vector<std::string>& out) const;
};

// Forwards every call to `lower`, so that a wrapper overrides only what it changes. The lower
// layer is shared: the kernel keeps every layer of the stack alive until the mount ends.
class LayerWrapper : public Layer {
 public:
  explicit LayerWrapper(std::shared_ptr<Layer> lower) : lower_(std::move(lower)) {}

  Capabilities capabilities() const override { return lower_->capabilities(); }
  Status start() override { return lower_->start(); }
  Status shutdown(std::chrono::steady_clock::time_point deadline) override {
    return lower_->shutdown(deadline);
  }
  Result<Attr> stat(std::string_view path) override { return lower_->stat(path); }
  Result<std::vector<DirEntry>> list(std::string_view dir) override { return lower_->list(dir); }
  Result<std::unique_ptr<File>> open(std::string_view path, int flags) override {
    return lower_->open(path, flags);
  }
  Result<std::unique_ptr<File>> create(std::string_view path, uint32_t mode, int flags) override {
    return lower_->create(path, mode, flags);
  }
  Status mkdir(std::string_view path, uint32_t mode) override { return lower_->mkdir(path, mode); }
  Status remove(std::string_view path) override { return lower_->remove(path); }
  Status rmdir(std::string_view path) override { return lower_->rmdir(path); }
  Status rename(std::string_view from, std::string_view to, bool noreplace) override {
    return lower_->rename(from, to, noreplace);
  }
  Status setattr(std::string_view path, const SetAttr& change) override {
    return lower_->setattr(path, change);
  }
  Status symlink(std::string_view target, std::string_view path) override {
    return lower_->symlink(target, path);
  }
  Result<std::string> readlink(std::string_view path) override { return lower_->readlink(path); }
  Result<FsStats> statfs() override { return lower_->statfs(); }
  Result<Changes> changes() override { return lower_->changes(); }

  Layer& lower() const { return *lower_; }
  const std::shared_ptr<Layer>& lower_ptr() const { return lower_; }

 private:
  std::shared_ptr<Layer> lower_;
};

// Forwards every call to a lower File; for wrappers that change only some file operations.
// read_lent is not forwarded: File's default goes through read(), so a wrapper that overrides
// read() is never bypassed; one that passes bytes through unchanged may forward it itself.
class FileWrapper : public File {
 public:
  explicit FileWrapper(std::unique_ptr<File> lower) : lower_(std::move(lower)) {}

  Result<size_t> read(uint64_t offset, std::span<std::byte> buf) override {
    return lower_->read(offset, buf);
  }
  Result<size_t> write(uint64_t offset, std::span<const std::byte> data) override {
    return lower_->write(offset, data);
  }
  Status truncate(uint64_t size) override { return lower_->truncate(size); }
  Status flush() override { return lower_->flush(); }
  Status fsync(bool datasync) override { return lower_->fsync(datasync); }
  Status close() override { return lower_->close(); }
  Result<Attr> stat() override { return lower_->stat(); }

  File& lower() const { return *lower_; }

 private:
  std::unique_ptr<File> lower_;
};

// Reads until `buf` is full or EOF, looping over a `read_some` that may return short counts
// (pread, an HTTP body). Returns the bytes read. For layers built on short-read primitives.
template <typename ReadSome>
Result<size_t> ReadFully(std::span<std::byte> buf, ReadSome&& read_some) {
  size_t done = 0;
  while (done < buf.size()) {
    Result<size_t> n = read_some(done, buf.subspan(done));
    if (!n) return n.error();
    if (*n == 0) break;  // EOF
    done += *n;
  }
  return done;
}

}  // namespace hfvfs
