#include "mem_layer.h"

#include <fcntl.h>
#include <algorithm>

#include <cstring>

#include "hfvfs/path.h"

namespace hfvfs::overlay {

namespace {

class MemFile final : public File {
 public:
  MemFile(std::string data, Attr attr, std::atomic<int64_t>& writes)
      : data_(std::move(data)), attr_(std::move(attr)), writes_(writes) {}
  Result<size_t> read(uint64_t offset, std::span<std::byte> buf) override {
    if (offset >= data_.size()) return size_t{0};
    size_t n = std::min<size_t>(buf.size(), data_.size() - offset);
    std::memcpy(buf.data(), data_.data() + offset, n);
    return n;
  }
  Result<size_t> write(uint64_t, std::span<const std::byte>) override {
    ++writes_;
    return Err(EROFS, "mem: write");
  }
  Status truncate(uint64_t) override {
    ++writes_;
    return Err(EROFS, "mem: truncate");
  }
  Result<Attr> stat() override { return attr_; }

 private:
  std::string data_;
  Attr attr_;
  std::atomic<int64_t>& writes_;
};

}  // namespace

Capabilities MemLayer::capabilities() const {
  Capabilities c;
  c.writable = c.random_write = c.rename = c.rename_dirs = c.atomic_rename = c.symlinks =
      c.set_mode = c.set_mtime = c.changes = true;
  return c;
}

void MemLayer::AddDir(const std::string& path, uint32_t mode) {
  std::lock_guard lock(mutex_);
  std::string prefix;
  for (std::string_view c : SplitPath(path)) {
    prefix = JoinPath(prefix, c);
    Node& n = nodes_[prefix];
    n.attr.type = FileType::kDirectory;
    if (n.attr.mode == 0) n.attr.mode = mode;
    n.attr.mtime_ns = 1'500'000'000'000'000'000;
  }
}

void MemLayer::AddFile(const std::string& path, std::string content, uint32_t mode,
                       int64_t mtime_ns) {
  AddDir(std::string(ParentPath(path)));
  std::lock_guard lock(mutex_);
  Node& n = nodes_[path];
  n.attr.type = FileType::kFile;
  n.attr.size = content.size();
  n.attr.mode = mode;
  n.attr.mtime_ns = mtime_ns;
  n.attr.version = "mem:" + std::to_string(std::hash<std::string>{}(content));
  n.data = std::move(content);
}

void MemLayer::AddSymlink(const std::string& path, std::string target) {
  AddDir(std::string(ParentPath(path)));
  std::lock_guard lock(mutex_);
  Node& n = nodes_[path];
  n.attr.type = FileType::kSymlink;
  n.attr.size = target.size();
  n.attr.mode = 0777;
  n.data = std::move(target);
}

void MemLayer::Remove(const std::string& path) {
  std::lock_guard lock(mutex_);
  nodes_.erase(path);
}

void MemLayer::AddChange(Change c) {
  std::lock_guard lock(mutex_);
  pending_.push_back(std::move(c));
}

void MemLayer::BlockStat(std::string path) {
  std::lock_guard lock(gate_mutex_);
  blocked_path_ = std::move(path);
}

void MemLayer::Unblock() {
  {
    std::lock_guard lock(gate_mutex_);
    blocked_path_.clear();
  }
  gate_cv_.notify_all();
}

Result<Attr> MemLayer::stat(std::string_view path) {
  ++stats_;
  {
    std::unique_lock gate(gate_mutex_);
    if (!blocked_path_.empty() && path == blocked_path_) {
      stat_waiting_ = true;
      gate_cv_.wait(gate, [&] { return blocked_path_.empty(); });
      stat_waiting_ = false;
    }
  }
  std::lock_guard lock(mutex_);
  if (path.empty()) {
    Attr a;
    a.type = FileType::kDirectory;
    a.mode = 0755;
    return a;
  }
  // A file on the way answers ENOTDIR, like a real file system.
  std::string prefix;
  std::vector<std::string_view> comps = SplitPath(path);
  for (size_t i = 0; i + 1 < comps.size(); ++i) {
    prefix = JoinPath(prefix, comps[i]);
    auto it = nodes_.find(prefix);
    if (it == nodes_.end()) return Err(ENOENT, "mem: no " + std::string(path));
    if (!it->second.attr.is_dir()) return Err(ENOTDIR, "mem: not a folder: " + prefix);
  }
  auto it = nodes_.find(std::string(path));
  if (it == nodes_.end()) return Err(ENOENT, "mem: no " + std::string(path));
  return it->second.attr;
}

Result<std::vector<DirEntry>> MemLayer::list(std::string_view dir) {
  HFVFS_ASSIGN_OR_RETURN(Attr a, stat(dir));
  if (!a.is_dir()) return Err(ENOTDIR, "mem: not a folder");
  std::lock_guard lock(mutex_);
  std::vector<DirEntry> out;
  for (const auto& [path, node] : nodes_)
    if (!path.empty() && ParentPath(path) == dir)
      out.push_back(DirEntry{std::string(BaseName(path)), node.attr});
  return out;
}

Result<std::unique_ptr<File>> MemLayer::open(std::string_view path, int flags) {
  if ((flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC)) ++writes_;
  HFVFS_ASSIGN_OR_RETURN(Attr a, stat(path));
  if (a.is_dir()) return Err(EISDIR, "mem: folder");
  std::lock_guard lock(mutex_);
  const Node& n = nodes_.at(std::string(path));
  return std::unique_ptr<File>(std::make_unique<MemFile>(n.data, n.attr, writes_));
}

Status MemLayer::Refuse(std::string_view what) {
  ++writes_;
  return Err(EROFS, "mem: " + std::string(what) + " reached the lower layer");
}

Result<std::unique_ptr<File>> MemLayer::create(std::string_view, uint32_t, int) {
  return Refuse("create").error();
}
Status MemLayer::mkdir(std::string_view, uint32_t) { return Refuse("mkdir"); }
Status MemLayer::remove(std::string_view) { return Refuse("remove"); }
Status MemLayer::rmdir(std::string_view) { return Refuse("rmdir"); }
Status MemLayer::rename(std::string_view, std::string_view, bool) { return Refuse("rename"); }
Status MemLayer::setattr(std::string_view, const SetAttr&) { return Refuse("setattr"); }
Status MemLayer::symlink(std::string_view, std::string_view) { return Refuse("symlink"); }

Result<std::string> MemLayer::readlink(std::string_view path) {
  HFVFS_ASSIGN_OR_RETURN(Attr a, stat(path));
  if (!a.is_symlink()) return Err(EINVAL, "mem: not a symlink");
  std::lock_guard lock(mutex_);
  return nodes_.at(std::string(path)).data;
}

Result<Changes> MemLayer::changes() {
  std::lock_guard lock(mutex_);
  Changes c;
  c.changes = std::move(pending_);
  pending_.clear();
  return c;
}

}  // namespace hfvfs::overlay
