#include "mount_host.h"

#include <spdlog/spdlog.h>

#include <cstring>
#include <vector>

#include "hfvfs/path.h"
#include "vfs.h"

namespace hfvfs::kernel {

namespace {
// Beyond this many pending notifications new ones are dropped (the caches' TTL still bounds
// staleness); a layer reporting a flood of changes must not grow memory without bound.
constexpr size_t kMaxQueued = 100'000;
// Notifications are sent in batches with a pause, so a flood does not starve FUSE requests
// that need the same directory locks (hf-mount #134).
constexpr size_t kBatch = 64;
constexpr auto kBatchPause = std::chrono::milliseconds(5);
}  // namespace

MountHost::MountHost(std::string mount_id)
    : mount_id_(std::move(mount_id)), state_(std::make_shared<State>()) {}

MountHost::~MountHost() {
  BeginShutdown();
  if (!thread_.joinable()) return;
  if (WaitStopped(std::chrono::milliseconds(0)))
    thread_.join();
  else
    thread_.detach();  // stuck in the kernel; it holds its own reference to the state
}

bool MountHost::WaitStopped(std::chrono::milliseconds timeout) {
  std::unique_lock lock(state_->mutex);
  if (!thread_.joinable()) return true;
  return state_->wake.wait_for(lock, timeout, [&] { return state_->stopped; });
}

bool MountHost::shutting_down() const {
  std::lock_guard lock(state_->mutex);
  return state_->stopping;
}

void MountHost::Attach(Vfs* vfs, KernelNotifier* notifier) {
  {
    std::lock_guard lock(state_->mutex);
    state_->vfs = vfs;
    state_->notifier = notifier;
  }
  thread_ = std::thread(&MountHost::Deliver, state_);
}

void MountHost::BeginShutdown() {
  std::lock_guard lock(state_->mutex);
  state_->stopping = true;
  state_->stats.dropped += state_->queue.size();
  state_->queue.clear();
  state_->wake.notify_all();
}

MountHost::Stats MountHost::stats() const {
  std::lock_guard lock(state_->mutex);
  return state_->stats;
}

void MountHost::invalidate(std::string_view path, Invalidation what) {
  Vfs* vfs;
  {
    std::lock_guard lock(state_->mutex);
    if (state_->stopping || state_->vfs == nullptr) {
      ++state_->stats.dropped;
      return;
    }
    vfs = state_->vfs;
  }
  // The VFS caches first, so the kernel's next question gets the new answer.
  vfs->DropCaches(path);
  std::lock_guard lock(state_->mutex);
  if (state_->queue.size() >= kMaxQueued) {
    ++state_->stats.dropped;
    return;
  }
  state_->queue.push_back(Item{std::string(path), what});
  ++state_->stats.queued;
  state_->wake.notify_one();
}

void MountHost::Deliver(std::shared_ptr<State> state) {
  // Marks the thread as finished on every return, for WaitStopped.
  struct Finished {
    State& state;
    ~Finished() {
      std::lock_guard lock(state.mutex);
      state.stopped = true;
      state.wake.notify_all();
    }
  } finished{*state};
  std::vector<Item> batch;
  for (;;) {
    Vfs* vfs;
    KernelNotifier* notifier;
    {
      std::unique_lock lock(state->mutex);
      state->wake.wait(lock, [&] { return state->stopping || !state->queue.empty(); });
      if (state->stopping) return;
      batch.clear();
      while (!state->queue.empty() && batch.size() < kBatch) {
        batch.push_back(std::move(state->queue.front()));
        state->queue.pop_front();
      }
      vfs = state->vfs;
      notifier = state->notifier;
    }
    // No lock is held from here: the kernel may block on page locks of a running read.
    for (const Item& item : batch) {
      {
        std::lock_guard lock(state->mutex);
        if (state->stopping) return;
      }
      std::optional<uint64_t> ino = vfs->InodeOf(item.path);
      int rc = 0;
      switch (item.what) {
        case Invalidation::kContent:
          if (ino) {
            bool open = vfs->HasOpenHandles(*ino);
            rc = notifier->InvalidateInode(*ino, open ? -1 : 0, 0);
          }
          break;
        case Invalidation::kChildren:
          if (ino) rc = notifier->InvalidateInode(*ino, 0, 0);
          break;
        case Invalidation::kEntry:
          if (!item.path.empty()) {
            if (std::optional<uint64_t> parent = vfs->InodeOf(ParentPath(item.path))) {
              rc = notifier->InvalidateEntry(*parent, BaseName(item.path));
              if (rc == 0 || rc == -ENOENT) rc = notifier->InvalidateInode(*parent, -1, 0);
            }
          }
          break;
      }
      if (rc != 0 && rc != -ENOENT)
        spdlog::debug("invalidate {}: kernel notification failed: {}", item.path,
                      std::strerror(-rc));
      std::lock_guard lock(state->mutex);
      ++state->stats.delivered;
    }
    if (batch.size() == kBatch) std::this_thread::sleep_for(kBatchPause);
  }
}

}  // namespace hfvfs::kernel
