// File: fuse_adapter.h
//
// Serves a Vfs through the libfuse3 low-level API: translates every request into a Vfs call
// and its Result into exactly one reply. Multithreaded loop, 1 MiB reads and writes,
// readdirplus, keep_cache when the content version is unchanged, a raised max_background for
// readahead. flock and POSIX record locks are not negotiated with the kernel, so the FUSE
// module keeps them itself: they are advisory locks local to this machine, with the kernel's
// own semantics (blocking waits, signals, deadlock detection, release at process exit).
#pragma once

#include <memory>
#include <string>

#include "hfvfs/result.h"
#include "mount_host.h"
#include "vfs.h"

struct fuse_session;

namespace hfvfs::kernel {

struct FuseConfig {
  std::string mountpoint;
  std::string fsname = "hfvfs";  // shown by mount(8) and df
  bool allow_other = false;
  bool read_only = false;
  int max_threads = 16;            // FUSE worker threads; a blocked read occupies one
  unsigned read_ahead_kib = 4096;  // what RaiseReadahead sets (four 1 MiB reads in flight)
  bool debug = false;              // libfuse's own request trace on stderr
};

class FuseAdapter final : public KernelNotifier {
 public:
  FuseAdapter(Vfs& vfs, FuseConfig config);
  ~FuseAdapter() override;
  FuseAdapter(const FuseAdapter&) = delete;
  FuseAdapter& operator=(const FuseAdapter&) = delete;

  // Creates the session and mounts it; the kernel starts sending requests once Loop runs.
  Status Mount();
  // Serves requests until the file system is unmounted (or Exit). Returns 0 or an errno.
  int Loop();
  // Asks the loop to end after the current requests.
  void Exit();
  // Detaches the mount (lazy unmount): new opens fail, open files keep working until closed
  // or the process exits. Safe to call from any thread, more than once.
  Status Detach();
  // The kernel reads ahead 128 KiB per file on a FUSE mount; this sets it to read_ahead_kib
  // (default 4 MiB: four 1 MiB requests in flight) through sysfs (root only; otherwise the
  // default stays). Call from a thread other than the loop's once the loop runs: it stats the
  // mountpoint.
  void RaiseReadahead() const;

  int InvalidateInode(uint64_t ino, int64_t offset, int64_t length) override;
  int InvalidateEntry(uint64_t parent, std::string_view name) override;

  Vfs& vfs() { return vfs_; }
  const FuseConfig& config() const { return config_; }

 private:
  Vfs& vfs_;
  const FuseConfig config_;
  fuse_session* session_ = nullptr;
  bool mounted_ = false;
};

}  // namespace hfvfs::kernel
