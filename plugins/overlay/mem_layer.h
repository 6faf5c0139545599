// File: mem_layer.h
//
// An in-memory lower layer for the overlay's tests. It claims every write capability but only
// counts write calls (and refuses them): the overlay must never make one. Tests fill it with
// AddFile / AddDir / AddSymlink.
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>

#include "hfvfs/layer.h"

namespace hfvfs::overlay {

class MemLayer final : public Layer {
 public:
  std::string_view type() const override { return "mem"; }
  Capabilities capabilities() const override;

  void AddDir(const std::string& path, uint32_t mode = 0755);
  // Adds the file and its missing parent folders.
  void AddFile(const std::string& path, std::string content, uint32_t mode = 0644,
               int64_t mtime_ns = 1'600'000'000'000'000'000);
  void AddSymlink(const std::string& path, std::string target);
  void Remove(const std::string& path);  // (the remote changed)

  // Write calls the layer received (files and namespace): must stay 0 below an overlay.
  int64_t writes() const { return writes_.load(); }
  int64_t stats() const { return stats_.load(); }

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
  Result<Changes> changes() override;

  void AddChange(Change c);

  // stat() of `path` waits until Unblock() (a slow remote, for ordering tests); `stat_waiting`
  // turns true while one waits.
  void BlockStat(std::string path);
  void Unblock();
  bool stat_waiting() const { return stat_waiting_.load(); }

 private:
  struct Node {
    Attr attr;
    std::string data;  // file content or symlink target
  };
  Status Refuse(std::string_view what);

  mutable std::mutex mutex_;  // guards nodes_ and pending_
  std::map<std::string, Node> nodes_;
  std::vector<Change> pending_;
  std::mutex gate_mutex_;  // guards blocked_path_
  std::condition_variable gate_cv_;
  std::string blocked_path_;
  std::atomic<bool> stat_waiting_{false};
  std::atomic<int64_t> writes_{0};
  std::atomic<int64_t> stats_{0};
};

}  // namespace hfvfs::overlay
