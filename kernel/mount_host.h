// File: mount_host.h
//
// The Host a mounted stack's layers talk to. invalidate() drops the VFS's own caches at once
// (a leaf lock, safe from any thread) and queues the FUSE kernel notification, which one
// dedicated thread delivers with no lock held and never from inside a request handler: the
// kernel may wait on page locks held by a reader that waits on us (hf-mount #156, #195). A
// file with open handles gets an attribute-only invalidation for the same reason. Once
// shutdown begins, nothing more is sent (hf-mount #192).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "hfvfs/plugin.h"

namespace hfvfs::kernel {

class Vfs;

// The FUSE notifications the host sends; the FUSE adapter implements them. Return 0 or a
// negative errno (ENOENT when the kernel no longer knows the inode is normal).
class KernelNotifier {
 public:
  virtual ~KernelNotifier() = default;
  // `offset` < 0: attributes only; otherwise pages from `offset` for `length` (0 = to the end).
  virtual int InvalidateInode(uint64_t ino, int64_t offset, int64_t length) = 0;
  virtual int InvalidateEntry(uint64_t parent, std::string_view name) = 0;
};

class MountHost final : public Host {
 public:
  explicit MountHost(std::string mount_id);
  ~MountHost() override;
  MountHost(const MountHost&) = delete;
  MountHost& operator=(const MountHost&) = delete;

  void invalidate(std::string_view path, Invalidation what) override;
  std::string_view mount_id() const override { return mount_id_; }
  bool shutting_down() const override;

  // Connects the VFS and the kernel once mounted and starts the delivery thread. Calls made
  // before that only concern caches that do not exist yet, and are dropped.
  void Attach(Vfs* vfs, KernelNotifier* notifier);
  // Stops all notifications. Does not wait for a notification in flight (it may be stuck in
  // the kernel); the delivery thread ends by itself.
  void BeginShutdown();
  // Waits up to `timeout` for the delivery thread to end (after BeginShutdown); true when it
  // has, so the VFS and the notifier may be destroyed.
  bool WaitStopped(std::chrono::milliseconds timeout);

  struct Stats {
    uint64_t queued = 0;
    uint64_t delivered = 0;
    uint64_t dropped = 0;  // ignored at shutdown or beyond the queue bound
  };
  Stats stats() const;

 private:
  struct Item {
    std::string path;
    Invalidation what;
  };
  // Shared with the delivery thread, which may outlive this object if it is stuck in a
  // notification when the process exits.
  struct State {
    std::mutex mutex;  // guards everything below
    std::condition_variable wake;
    std::deque<Item> queue;
    bool stopping = false;
    bool stopped = false;  // the delivery thread has returned
    Vfs* vfs = nullptr;
    KernelNotifier* notifier = nullptr;
    Stats stats;
  };

  static void Deliver(std::shared_ptr<State> state);

  const std::string mount_id_;
  std::shared_ptr<State> state_;
  std::thread thread_;
};

}  // namespace hfvfs::kernel
