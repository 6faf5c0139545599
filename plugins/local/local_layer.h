// File: local_layer.h
//
// The `local` layer: a folder on a local file system served as a source. It is the SDK's worked
// example and the base of the conformance suite, so it implements the whole contract: random
// writes, rename of files and folders (with RENAME_NOREPLACE), symlinks, chmod, utimens, statfs.
//
// Containment: every path is resolved below the root without following any symlink, so a link
// inside the folder (absolute, or climbing with "..") can never make the layer read or write
// outside it. The parent folder of a path is opened with openat2(RESOLVE_BENEATH |
// RESOLVE_NO_SYMLINKS) where the kernel has it, else one component at a time with
// O_NOFOLLOW; the last component is then used with the *at() calls and their no-follow flags.
// A symlink met in the middle of a path is ENOTDIR: to a layer it is not a folder.
//
// Only regular files, folders and symlinks exist for the layer: sockets, FIFOs and devices are
// left out of listings and are ENOENT to stat and open.
//
// Versions: "<mtime_ns>-<size>-<inode>", which changes whenever a write, truncate or
// replacement changes the content (the mtime moves, or the inode does on replacement).
//
// Thread safety: the layer holds only the root descriptor (immutable after Open) and atomic
// counters; each call opens what it needs, so calls run concurrently without locks.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "hfvfs/layer.h"
#include "hfvfs/result.h"

namespace hfvfs::local {

struct LocalOptions {
  // Refuse every write with EROFS and claim no write capability.
  bool read_only = false;
  // Resolve paths one component at a time even where openat2 exists (tests cover both ways).
  bool walk_components = false;
};

class LocalLayer final : public Layer {
 public:
  // Opens `root`, which must be an existing folder (absolute, or relative to the current
  // folder). ENOENT / ENOTDIR / EACCES name it.
  static Result<std::unique_ptr<LocalLayer>> Open(const std::string& root, LocalOptions options);

  ~LocalLayer() override;
  LocalLayer(const LocalLayer&) = delete;
  LocalLayer& operator=(const LocalLayer&) = delete;

  const std::string& root() const { return root_; }

  std::string_view type() const override { return "local"; }
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

  void counters(std::vector<std::pair<std::string, int64_t>>& out) const override;

  // Counters shared with the files this layer opens; shared so that a File never points into a
  // destroyed layer, whichever goes first.
  struct Counters {
    std::atomic<int64_t> bytes_read{0};
    std::atomic<int64_t> bytes_written{0};
    std::atomic<int64_t> files_open{0};
  };

 private:
  LocalLayer(std::string root, int root_fd, LocalOptions options);

  Status CheckWritable(std::string_view what, std::string_view path) const;

  std::string root_;
  const int root_fd_;
  const LocalOptions options_;
  const std::shared_ptr<Counters> counters_;
  // Whether openat2(RESOLVE_BENEATH) works here (probed once; seccomp or old kernels lack it).
  const bool use_openat2_;
};

// Turns an errno from a system call on `path` into an Error: "local: <what> '<path>': <strerror>".
Error SystemError(int code, std::string_view what, std::string_view path);

}  // namespace hfvfs::local
