// File: mem_fs.h
//
// A complete read-write in-memory source for the kernel's tests: files, folders and symlinks,
// every write capability, POSIX-like errors. The VFS unit tests use it directly; the `memfs`
// test plugin (mem_fs_plugin.cc) mounts it. Open files keep their content after an unlink or
// a rename over them, like a POSIX file system.
#pragma once

#include <fcntl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "hfvfs/layer.h"
#include "hfvfs/path.h"

namespace hfvfs::testing {

class MemFs final : public Layer {
 public:
  // A file's bytes and attributes, shared by the tree and every open handle.
  struct Content {
    std::mutex mutex;  // guards everything below
    std::string data;
    int64_t mtime_ns = 0;
    uint32_t mode = 0644;
    uint64_t version = NextVersion();
  };

  // `slow_read`: reads of files whose name starts with "slow" first sleep this long (to hold
  // a FUSE request in flight in stop tests).
  explicit MemFs(std::chrono::milliseconds slow_read = std::chrono::milliseconds(0))
      : slow_read_(slow_read) {
    nodes_[""] = Node{FileType::kDirectory, nullptr, "", 0755, Now()};
  }

  std::string_view type() const override { return "memfs"; }
  Capabilities capabilities() const override {
    Capabilities c;
    c.writable = c.random_write = c.rename = c.rename_dirs = c.atomic_rename = true;
    c.symlinks = c.set_mode = c.set_mtime = true;
    return c;
  }

  // Called (from inside the write request) after every write through a file, with its path:
  // the plugin wires it to Host::invalidate, as a sync layer reporting changes would.
  std::function<void(std::string_view)> on_change;

  // start() sleeps this long: a slow start (resolving a revision, replaying a journal).
  std::chrono::milliseconds start_delay{0};
  Status start() override {
    std::this_thread::sleep_for(start_delay);
    return Ok();
  }

  // shutdown() sleeps this long whatever its deadline: a layer that overruns the stop bound.
  std::chrono::milliseconds shutdown_delay{0};
  Status shutdown(std::chrono::steady_clock::time_point) override {
    std::this_thread::sleep_for(shutdown_delay);
    return Ok();
  }

  // Counts calls, so tests can see what the kernel's caches saved.
  std::atomic<int> stat_calls{0};
  std::atomic<int> list_calls{0};
  std::atomic<int> open_calls{0};

  // Test helper: writes a whole file (creating folders as needed), bypassing the kernel.
  void Put(const std::string& path, const std::string& data) {
    std::lock_guard lock(mutex_);
    std::string dir;
    for (std::string_view part : SplitPath(ParentPath(path))) {
      dir = JoinPath(dir, part);
      if (!nodes_.count(dir)) nodes_[dir] = Node{FileType::kDirectory, nullptr, "", 0755, Now()};
    }
    auto content = std::make_shared<Content>();
    content->data = data;
    content->mtime_ns = Now();
    nodes_[path] = Node{FileType::kFile, content, "", 0, 0};
  }

  Result<Attr> stat(std::string_view path) override {
    ++stat_calls;
    std::lock_guard lock(mutex_);
    auto it = nodes_.find(std::string(path));
    if (it == nodes_.end()) return Err(ENOENT, "memfs: no such file: " + std::string(path));
    return AttrOf(it->second);
  }

  Result<std::vector<DirEntry>> list(std::string_view dir) override {
    ++list_calls;
    std::lock_guard lock(mutex_);
    HFVFS_RETURN_IF_ERROR(CheckDirLocked(dir));
    std::vector<DirEntry> out;
    std::string prefix = dir.empty() ? "" : std::string(dir) + "/";
    for (auto it = nodes_.lower_bound(prefix); it != nodes_.end(); ++it) {
      if (it->first.compare(0, prefix.size(), prefix) != 0) break;
      if (it->first.empty()) continue;
      std::string_view rest = std::string_view(it->first).substr(prefix.size());
      if (rest.find('/') != std::string_view::npos) continue;
      out.push_back({std::string(rest), AttrOf(it->second)});
    }
    return out;
  }

  Result<std::unique_ptr<File>> open(std::string_view path, int flags) override {
    ++open_calls;
    std::lock_guard lock(mutex_);
    auto it = nodes_.find(std::string(path));
    if (it == nodes_.end()) return Err(ENOENT, "memfs: no such file: " + std::string(path));
    if (it->second.type == FileType::kDirectory) return Err(EISDIR, "memfs: a folder");
    if (it->second.type == FileType::kSymlink) return Err(ELOOP, "memfs: a symlink");
    if (flags & O_TRUNC) Truncate(*it->second.content, 0);
    return OpenFile(path, it->second.content);
  }

  Result<std::unique_ptr<File>> create(std::string_view path, uint32_t mode, int flags) override {
    std::lock_guard lock(mutex_);
    HFVFS_RETURN_IF_ERROR(CheckDirLocked(ParentPath(path)));
    auto it = nodes_.find(std::string(path));
    if (it != nodes_.end()) {
      if (flags & O_EXCL) return Err(EEXIST, "memfs: exists: " + std::string(path));
      if (it->second.type != FileType::kFile) return Err(EISDIR, "memfs: not a file");
      if (flags & O_TRUNC) Truncate(*it->second.content, 0);
      return OpenFile(path, it->second.content);
    }
    auto content = std::make_shared<Content>();
    content->mode = mode ? mode : 0644;
    content->mtime_ns = Now();
    nodes_[std::string(path)] = Node{FileType::kFile, content, "", 0, 0};
    Touch(ParentPath(path));
    return OpenFile(path, content);
  }

  Status mkdir(std::string_view path, uint32_t mode) override {
    std::lock_guard lock(mutex_);
    HFVFS_RETURN_IF_ERROR(CheckDirLocked(ParentPath(path)));
    if (nodes_.count(std::string(path))) return Err(EEXIST, "memfs: exists");
    nodes_[std::string(path)] = Node{FileType::kDirectory, nullptr, "", mode ? mode : 0755, Now()};
    Touch(ParentPath(path));
    return Ok();
  }

  Status remove(std::string_view path) override {
    std::lock_guard lock(mutex_);
    auto it = nodes_.find(std::string(path));
    if (it == nodes_.end()) return Err(ENOENT, "memfs: no such file");
    if (it->second.type == FileType::kDirectory) return Err(EISDIR, "memfs: a folder");
    nodes_.erase(it);
    Touch(ParentPath(path));
    return Ok();
  }

  Status rmdir(std::string_view path) override {
    std::lock_guard lock(mutex_);
    if (path.empty()) return Err(EBUSY, "memfs: the root");
    auto it = nodes_.find(std::string(path));
    if (it == nodes_.end()) return Err(ENOENT, "memfs: no such folder");
    if (it->second.type != FileType::kDirectory) return Err(ENOTDIR, "memfs: not a folder");
    if (HasChildrenLocked(path)) return Err(ENOTEMPTY, "memfs: not empty");
    nodes_.erase(it);
    Touch(ParentPath(path));
    return Ok();
  }

  Status rename(std::string_view from, std::string_view to, bool noreplace) override {
    std::lock_guard lock(mutex_);
    auto src = nodes_.find(std::string(from));
    if (src == nodes_.end()) return Err(ENOENT, "memfs: no such file");
    HFVFS_RETURN_IF_ERROR(CheckDirLocked(ParentPath(to)));
    if (IsUnder(to, from)) return Err(EINVAL, "memfs: into itself");
    auto dst = nodes_.find(std::string(to));
    if (dst != nodes_.end()) {
      if (noreplace) return Err(EEXIST, "memfs: exists");
      bool src_dir = src->second.type == FileType::kDirectory;
      bool dst_dir = dst->second.type == FileType::kDirectory;
      if (src_dir && !dst_dir) return Err(ENOTDIR, "memfs: not a folder");
      if (!src_dir && dst_dir) return Err(EISDIR, "memfs: a folder");
      if (dst_dir && HasChildrenLocked(to)) return Err(ENOTEMPTY, "memfs: not empty");
      nodes_.erase(dst);
    }
    std::vector<std::pair<std::string, Node>> moved;
    for (auto it = nodes_.begin(); it != nodes_.end();) {
      if (IsUnder(it->first, from)) {
        moved.emplace_back(std::string(to) + it->first.substr(from.size()), it->second);
        it = nodes_.erase(it);
      } else {
        ++it;
      }
    }
    for (auto& [path, node] : moved) nodes_[path] = node;
    Touch(ParentPath(from));
    Touch(ParentPath(to));
    return Ok();
  }

  Status setattr(std::string_view path, const SetAttr& change) override {
    std::lock_guard lock(mutex_);
    auto it = nodes_.find(std::string(path));
    if (it == nodes_.end()) return Err(ENOENT, "memfs: no such file");
    Node& node = it->second;
    if (change.set_size) {
      if (!node.content) return Err(EISDIR, "memfs: not a file");
      Truncate(*node.content, change.size);
    }
    if (node.content) {
      std::lock_guard file_lock(node.content->mutex);
      if (change.set_mode) node.content->mode = change.mode;
      if (change.set_mtime) node.content->mtime_ns = change.mtime_ns;
    } else {
      if (change.set_mode) node.mode = change.mode;
      if (change.set_mtime) node.mtime_ns = change.mtime_ns;
    }
    return Ok();
  }

  Status symlink(std::string_view target, std::string_view path) override {
    std::lock_guard lock(mutex_);
    HFVFS_RETURN_IF_ERROR(CheckDirLocked(ParentPath(path)));
    if (nodes_.count(std::string(path))) return Err(EEXIST, "memfs: exists");
    nodes_[std::string(path)] = Node{FileType::kSymlink, nullptr, std::string(target), 0777, Now()};
    Touch(ParentPath(path));
    return Ok();
  }

  Result<std::string> readlink(std::string_view path) override {
    std::lock_guard lock(mutex_);
    auto it = nodes_.find(std::string(path));
    if (it == nodes_.end()) return Err(ENOENT, "memfs: no such file");
    if (it->second.type != FileType::kSymlink) return Err(EINVAL, "memfs: not a symlink");
    return it->second.target;
  }

 private:
  struct Node {
    FileType type = FileType::kFile;
    std::shared_ptr<Content> content;  // files
    std::string target;                // symlinks
    uint32_t mode = 0;                 // folders and symlinks
    int64_t mtime_ns = 0;              // folders and symlinks
  };

  class MemFile final : public File {
   public:
    MemFile(MemFs& fs, std::string path, std::shared_ptr<Content> content,
            std::chrono::milliseconds delay)
        : fs_(fs), path_(std::move(path)), content_(std::move(content)), delay_(delay) {}
    Result<size_t> read(uint64_t offset, std::span<std::byte> buf) override {
      if (delay_.count() > 0) std::this_thread::sleep_for(delay_);
      std::lock_guard lock(content_->mutex);
      if (offset >= content_->data.size()) return size_t{0};
      size_t n = std::min<size_t>(buf.size(), content_->data.size() - offset);
      std::memcpy(buf.data(), content_->data.data() + offset, n);
      return n;
    }
    Result<size_t> write(uint64_t offset, std::span<const std::byte> data) override {
      std::lock_guard lock(content_->mutex);
      if (content_->data.size() < offset + data.size()) content_->data.resize(offset + data.size());
      std::memcpy(content_->data.data() + offset, data.data(), data.size());
      content_->mtime_ns = Now();
      content_->version = NextVersion();
      if (fs_.on_change) fs_.on_change(path_);
      return data.size();
    }
    Status truncate(uint64_t size) override {
      Truncate(*content_, size);
      return Ok();
    }
    Result<Attr> stat() override { return AttrOfContent(*content_); }

   private:
    MemFs& fs_;
    std::string path_;
    std::shared_ptr<Content> content_;
    std::chrono::milliseconds delay_;
  };

  // Versions are unique across files and rewrites, like etags.
  static uint64_t NextVersion() {
    static std::atomic<uint64_t> counter{0};
    return ++counter;
  }
  static int64_t Now() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  static void Truncate(Content& content, uint64_t size) {
    std::lock_guard lock(content.mutex);
    content.data.resize(size);
    content.mtime_ns = Now();
    content.version = NextVersion();
  }
  static Attr AttrOfContent(Content& content) {
    std::lock_guard lock(content.mutex);
    Attr a;
    a.type = FileType::kFile;
    a.size = content.data.size();
    a.mtime_ns = content.mtime_ns;
    a.mode = content.mode;
    a.version = std::to_string(content.version);
    return a;
  }
  static Attr AttrOf(const Node& node) {
    if (node.content) return AttrOfContent(*node.content);
    Attr a;
    a.type = node.type;
    a.size = node.type == FileType::kSymlink ? node.target.size() : 0;
    a.mtime_ns = node.mtime_ns;
    a.mode = node.mode;
    return a;
  }
  std::unique_ptr<File> OpenFile(std::string_view path, std::shared_ptr<Content> content) {
    std::chrono::milliseconds delay{0};
    if (BaseName(path).substr(0, 4) == "slow") delay = slow_read_;
    return std::make_unique<MemFile>(*this, std::string(path), std::move(content), delay);
  }
  Status CheckDirLocked(std::string_view dir) const {
    auto it = nodes_.find(std::string(dir));
    if (it == nodes_.end()) return Err(ENOENT, "memfs: no such folder: " + std::string(dir));
    if (it->second.type != FileType::kDirectory) return Err(ENOTDIR, "memfs: not a folder");
    return Ok();
  }
  bool HasChildrenLocked(std::string_view dir) const {
    std::string prefix = std::string(dir) + "/";
    auto it = nodes_.lower_bound(prefix);
    return it != nodes_.end() && it->first.compare(0, prefix.size(), prefix) == 0;
  }
  void Touch(std::string_view dir) {
    auto it = nodes_.find(std::string(dir));
    if (it != nodes_.end()) it->second.mtime_ns = Now();
  }

  const std::chrono::milliseconds slow_read_;
  std::mutex mutex_;  // guards nodes_; taken before any Content::mutex
  std::map<std::string, Node> nodes_;
};

}  // namespace hfvfs::testing
