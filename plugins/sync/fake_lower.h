// File: fake_lower.h
//
// Test doubles for the sync layer: an in-memory source that, like S3, only takes whole files
// written sequentially from offset 0 (committed at close), has no rename, and reports a
// revision through changes(); faults are injectable. And a Host that records invalidations.
#pragma once

#include <fcntl.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "hfvfs/layer.h"
#include "hfvfs/path.h"
#include "hfvfs/plugin.h"

namespace hfvfs::sync::testing {

class FakeHost : public Host {
 public:
  explicit FakeHost(std::string id = "test-mount") : id_(std::move(id)) {}
  void invalidate(std::string_view path, Invalidation what) override {
    std::lock_guard lock(mu);
    if (!shutting) calls.emplace_back(std::string(path), what);
  }
  std::string_view mount_id() const override { return id_; }
  bool shutting_down() const override { return shutting; }

  bool Saw(const std::string& path, Invalidation what) {
    std::lock_guard lock(mu);
    for (auto& [p, w] : calls)
      if (p == path && w == what) return true;
    return false;
  }

  std::mutex mu;
  std::vector<std::pair<std::string, Invalidation>> calls;
  std::atomic<bool> shutting{false};

 private:
  std::string id_;
};

class MemLower : public Layer {
 public:
  struct Node {
    FileType type = FileType::kFile;
    std::string data;
    uint64_t version = 0;
    uint32_t mode = 0644;
  };

  MemLower() { nodes_[""] = Node{FileType::kDirectory, "", 0, 0755}; }

  // ---- test controls ----
  // A change made by someone else: moves the revision.
  void PutRemote(const std::string& path, const std::string& data) {
    std::lock_guard lock(mu_);
    Node& n = nodes_[path];
    n.type = FileType::kFile;
    n.data = data;
    n.version = ++version_counter_;
    ++revision_;
  }
  void RemoveRemote(const std::string& path) {
    std::lock_guard lock(mu_);
    nodes_.erase(path);
    ++revision_;
  }
  bool Has(const std::string& path) {
    std::lock_guard lock(mu_);
    return nodes_.count(path) > 0;
  }
  std::string Data(const std::string& path) {
    std::lock_guard lock(mu_);
    auto it = nodes_.find(path);
    return it == nodes_.end() ? "<missing>" : it->second.data;
  }
  std::vector<std::string> Paths() {
    std::lock_guard lock(mu_);
    std::vector<std::string> out;
    for (auto& [p, n] : nodes_) out.push_back(p);
    return out;
  }
  std::atomic<bool> unreachable{false};   // every call fails with EIO
  std::atomic<int> fail_uploads{0};       // the next N creates fail with EIO
  std::atomic<bool> hang_uploads{false};  // create blocks until cleared
  std::atomic<int> creates{0};
  std::atomic<int> read_opens{0};       // open(O_RDONLY): fetches of a file's content
  std::atomic<int> read_delay_ms{0};    // every File::read sleeps this long first
  std::atomic<bool> fail_reads{false};  // every File::read fails with EIO
  std::atomic<int64_t> bytes_read{0};   // by File::read
  std::atomic<int> commits{0};
  std::atomic<int> lists{0};
  std::atomic<int> probes{0};
  std::atomic<int> stats{0};
  std::atomic<bool> can_rename{false};
  std::vector<std::string> log;  // commits, guarded by mu_
  std::string Log() {
    std::lock_guard lock(mu_);
    std::string out;
    for (auto& l : log) out += l + "\n";
    return out;
  }

  // ---- Layer ----
  std::string_view type() const override { return "memlower"; }
  Capabilities capabilities() const override {
    Capabilities c;
    c.writable = true;
    c.changes = true;
    c.rename = can_rename.load();
    return c;
  }
  Result<Attr> stat(std::string_view p) override {
    ++stats;
    if (unreachable) return Err(EIO, "memlower: unreachable");
    std::lock_guard lock(mu_);
    auto it = nodes_.find(std::string(p));
    if (it == nodes_.end()) {
      HFVFS_RETURN_IF_ERROR(CheckAncestors(p));
      return Err(ENOENT, "memlower: no " + std::string(p));
    }
    return AttrOf(it->second);
  }
  Result<std::vector<DirEntry>> list(std::string_view d) override {
    if (unreachable) return Err(EIO, "memlower: unreachable");
    ++lists;
    std::lock_guard lock(mu_);
    auto it = nodes_.find(std::string(d));
    if (it == nodes_.end()) {
      HFVFS_RETURN_IF_ERROR(CheckAncestors(d));
      return Err(ENOENT, "memlower: no dir " + std::string(d));
    }
    if (it->second.type != FileType::kDirectory) return Err(ENOTDIR, "memlower: a file");
    std::vector<DirEntry> out;
    for (auto& [p, n] : nodes_) {
      if (p.empty() || ParentPath(p) != d) continue;
      out.push_back(DirEntry{std::string(BaseName(p)), AttrOf(n)});
    }
    return out;
  }
  class Reader : public File {
   public:
    Reader(MemLower* m, std::string data) : m_(m), data_(std::move(data)) {}
    Result<size_t> read(uint64_t off, std::span<std::byte> buf) override {
      if (int ms = m_->read_delay_ms.load(); ms > 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(ms));
      }
      if (m_->fail_reads.load()) return Err(EIO, "memlower: injected read failure");
      if (off >= data_.size()) return size_t{0};
      size_t n = std::min<size_t>(buf.size(), data_.size() - off);
      std::memcpy(buf.data(), data_.data() + off, n);
      m_->bytes_read += static_cast<int64_t>(n);
      return n;
    }
    Result<Attr> stat() override {
      Attr a;
      a.size = data_.size();
      return a;
    }

   private:
    MemLower* m_;
    std::string data_;
  };
  class Writer : public File {
   public:
    Writer(MemLower* m, std::string path, uint32_t mode)
        : m_(m), path_(std::move(path)), mode_(mode) {}
    Result<size_t> read(uint64_t, std::span<std::byte>) override {
      return Err(EBADF, "memlower: write-only");
    }
    Result<size_t> write(uint64_t off, std::span<const std::byte> d) override {
      if (off != data_.size()) return Err(EOPNOTSUPP, "memlower: sequential writes only");
      data_.append(reinterpret_cast<const char*>(d.data()), d.size());
      return d.size();
    }
    Status close() override {
      if (m_->unreachable) return Err(EIO, "memlower: unreachable at commit");
      std::lock_guard lock(m_->mu_);
      Node& n = m_->nodes_[path_];
      n.type = FileType::kFile;
      n.data = data_;
      n.mode = mode_;
      n.version = ++m_->version_counter_;
      ++m_->commits;
      m_->log.push_back("commit " + path_ + " " + std::to_string(data_.size()) + " v" +
                        std::to_string(n.version));
      return Ok();
    }
    Result<Attr> stat() override {
      Attr a;
      a.size = data_.size();
      return a;
    }

   private:
    MemLower* m_;
    std::string path_;
    uint32_t mode_;
    std::string data_;
  };
  Result<std::unique_ptr<File>> open(std::string_view p, int flags) override {
    if (unreachable) return Err(EIO, "memlower: unreachable");
    if ((flags & O_ACCMODE) != O_RDONLY) {
      if (flags & O_TRUNC) return create(p, 0644, flags);
      return Err(EOPNOTSUPP, "memlower: no random writes");
    }
    std::lock_guard lock(mu_);
    auto it = nodes_.find(std::string(p));
    if (it == nodes_.end()) {
      HFVFS_RETURN_IF_ERROR(CheckAncestors(p));
      return Err(ENOENT, "memlower: no " + std::string(p));
    }
    if (it->second.type == FileType::kDirectory) return Err(EISDIR, "memlower: dir");
    ++read_opens;
    return std::unique_ptr<File>(new Reader(this, it->second.data));
  }
  Result<std::unique_ptr<File>> create(std::string_view p, uint32_t mode, int) override {
    ++creates;
    if (unreachable) return Err(EIO, "memlower: unreachable");
    if (fail_uploads > 0) {
      --fail_uploads;
      return Err(EIO, "memlower: injected upload failure");
    }
    {
      std::unique_lock lock(mu_);
      hang_cv_.wait(lock, [&] { return !hang_uploads.load(); });
      HFVFS_RETURN_IF_ERROR(CheckAncestors(p));
    }
    return std::unique_ptr<File>(new Writer(this, std::string(p), mode));
  }
  void ReleaseHang() {
    hang_uploads = false;
    std::lock_guard lock(mu_);
    hang_cv_.notify_all();
  }
  Status mkdir(std::string_view p, uint32_t mode) override {
    if (unreachable) return Err(EIO, "memlower: unreachable");
    std::lock_guard lock(mu_);
    if (nodes_.count(std::string(p))) return Err(EEXIST, "memlower: exists");
    HFVFS_RETURN_IF_ERROR(CheckAncestors(p));
    nodes_[std::string(p)] = Node{FileType::kDirectory, "", 0, mode};
    return Ok();
  }
  Status remove(std::string_view p) override {
    if (unreachable) return Err(EIO, "memlower: unreachable");
    std::lock_guard lock(mu_);
    auto it = nodes_.find(std::string(p));
    if (it == nodes_.end()) {
      HFVFS_RETURN_IF_ERROR(CheckAncestors(p));
      return Err(ENOENT, "memlower: no " + std::string(p));
    }
    if (it->second.type == FileType::kDirectory) return Err(EISDIR, "memlower: a folder");
    nodes_.erase(it);
    return Ok();
  }
  Status rmdir(std::string_view p) override {
    if (unreachable) return Err(EIO, "memlower: unreachable");
    std::lock_guard lock(mu_);
    auto it = nodes_.find(std::string(p));
    if (it == nodes_.end()) {
      HFVFS_RETURN_IF_ERROR(CheckAncestors(p));
      return Err(ENOENT, "memlower: no " + std::string(p));
    }
    if (it->second.type != FileType::kDirectory) return Err(ENOTDIR, "memlower: a file");
    std::string prefix = std::string(p) + "/";
    for (auto& [q, n] : nodes_)
      if (q.compare(0, prefix.size(), prefix) == 0) return Err(ENOTEMPTY, "memlower: not empty");
    nodes_.erase(std::string(p));
    return Ok();
  }
  Status rename(std::string_view from, std::string_view to, bool) override {
    if (!can_rename) return Err(EOPNOTSUPP, "memlower: no rename");
    std::lock_guard lock(mu_);
    auto it = nodes_.find(std::string(from));
    if (it == nodes_.end()) return Err(ENOENT, "memlower: no " + std::string(from));
    Node n = it->second;
    nodes_.erase(it);
    nodes_[std::string(to)] = n;
    return Ok();
  }
  Result<Changes> changes() override {
    ++probes;
    if (unreachable) return Err(EIO, "memlower: unreachable");
    std::lock_guard lock(mu_);
    Changes c;
    c.token = std::to_string(revision_);
    c.rescan = revision_ != seen_revision_;
    seen_revision_ = revision_;
    return c;
  }

  // Requires mu_: ENOENT/ENOTDIR for a path whose ancestors are missing or files.
  Status CheckAncestors(std::string_view p) const {
    std::string_view dir = ParentPath(p);
    for (;;) {
      auto it = nodes_.find(std::string(dir));
      if (it == nodes_.end()) return Err(ENOENT, "memlower: no " + std::string(dir));
      if (it->second.type != FileType::kDirectory) {
        return Err(ENOTDIR, "memlower: " + std::string(dir) + " is a file");
      }
      if (dir.empty()) return Ok();
      dir = ParentPath(dir);
    }
  }

 private:
  Attr AttrOf(const Node& n) const {
    Attr a;
    a.type = n.type;
    a.size = n.data.size();
    a.mode = n.mode;
    a.version = n.type == FileType::kFile ? "v" + std::to_string(n.version) : "";
    return a;
  }

  std::mutex mu_;
  std::condition_variable hang_cv_;
  std::map<std::string, Node> nodes_;
  uint64_t version_counter_ = 0;
  uint64_t revision_ = 0;
  uint64_t seen_revision_ = static_cast<uint64_t>(-1);
};

}  // namespace hfvfs::sync::testing
