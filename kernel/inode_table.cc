#include "inode_table.h"

#include "hfvfs/path.h"

namespace hfvfs::kernel {

namespace {
constexpr size_t kDefaultSoftLimit = 100'000;
}

InodeTable::InodeTable(size_t soft_limit)
    : soft_limit_(soft_limit == 0 ? kDefaultSoftLimit : soft_limit) {
  Node root;
  root.nlookup = 1;  // the kernel holds the root for the whole mount; never forgotten
  nodes_.emplace(kRootInode, std::move(root));
  by_path_.emplace("", kRootInode);
}

InodeRef InodeTable::GetOrCreateLocked(std::string_view path) {
  if (auto it = by_path_.find(std::string(path)); it != by_path_.end()) {
    Node& node = nodes_.at(it->second);
    return {it->second, node.generation};
  }
  uint64_t ino;
  uint64_t generation = 1;
  if (!free_.empty()) {
    ino = free_.back().first;
    generation = free_.back().second + 1;
    free_.pop_back();
  } else {
    ino = next_ino_++;
  }
  Node node;
  node.path = std::string(path);
  node.generation = generation;
  auto [pos, inserted] = nodes_.emplace(ino, std::move(node));
  by_path_.emplace(pos->second.path, ino);
  return {ino, generation};
}

void InodeTable::TouchLocked(uint64_t ino, Node& node) {
  if (node.in_lru) forgotten_.splice(forgotten_.end(), forgotten_, node.lru);
}

InodeRef InodeTable::Lookup(std::string_view path) {
  std::lock_guard lock(mutex_);
  InodeRef ref = GetOrCreateLocked(path);
  Node& node = nodes_.at(ref.ino);
  if (node.in_lru) {
    forgotten_.erase(node.lru);
    node.in_lru = false;
  }
  ++node.nlookup;
  return ref;
}

InodeRef InodeTable::Assign(std::string_view path) {
  std::lock_guard lock(mutex_);
  InodeRef ref = GetOrCreateLocked(path);
  Node& node = nodes_.at(ref.ino);
  if (node.nlookup == 0 && !node.in_lru) {
    node.lru = forgotten_.insert(forgotten_.end(), ref.ino);
    node.in_lru = true;
    EvictLocked();
  } else {
    TouchLocked(ref.ino, node);
  }
  return ref;
}

std::optional<InodeRef> InodeTable::Find(std::string_view path) const {
  std::lock_guard lock(mutex_);
  auto it = by_path_.find(std::string(path));
  if (it == by_path_.end()) return std::nullopt;
  return InodeRef{it->second, nodes_.at(it->second).generation};
}

std::optional<std::string> InodeTable::PathOf(uint64_t ino) const {
  std::lock_guard lock(mutex_);
  auto it = nodes_.find(ino);
  if (it == nodes_.end() || !it->second.attached) return std::nullopt;
  return it->second.path;
}

bool InodeTable::Contains(uint64_t ino) const {
  std::lock_guard lock(mutex_);
  return nodes_.count(ino) != 0;
}

void InodeTable::Forget(uint64_t ino, uint64_t count) {
  if (ino == kRootInode) return;
  std::lock_guard lock(mutex_);
  auto it = nodes_.find(ino);
  if (it == nodes_.end()) return;
  Node& node = it->second;
  node.nlookup = count >= node.nlookup ? 0 : node.nlookup - count;
  if (node.nlookup == 0) ReleaseLocked(ino, node);
}

void InodeTable::ReleaseLocked(uint64_t ino, Node& node) {
  if (!node.attached) {
    EraseLocked(ino);
    return;
  }
  if (!node.in_lru) {
    node.lru = forgotten_.insert(forgotten_.end(), ino);
    node.in_lru = true;
  }
  EvictLocked();
}

void InodeTable::DetachLocked(uint64_t ino, Node& node) {
  by_path_.erase(node.path);
  node.attached = false;
  if (node.nlookup == 0) EraseLocked(ino);
}

void InodeTable::EraseLocked(uint64_t ino) {
  auto it = nodes_.find(ino);
  if (it == nodes_.end()) return;
  Node& node = it->second;
  if (node.in_lru) forgotten_.erase(node.lru);
  if (node.attached) by_path_.erase(node.path);
  free_.emplace_back(ino, node.generation);
  nodes_.erase(it);
}

void InodeTable::EvictLocked() {
  while (forgotten_.size() > soft_limit_) {
    uint64_t victim = forgotten_.front();
    EraseLocked(victim);
    ++evicted_;
  }
}

void InodeTable::Detach(std::string_view path) {
  if (path.empty()) return;
  std::lock_guard lock(mutex_);
  auto it = by_path_.find(std::string(path));
  if (it == by_path_.end()) return;
  uint64_t ino = it->second;
  DetachLocked(ino, nodes_.at(ino));
}

void InodeTable::Rename(std::string_view from, std::string_view to) {
  if (from == to || from.empty()) return;
  std::lock_guard lock(mutex_);
  // Whatever `to` named (and anything below it) is gone.
  std::vector<uint64_t> replaced;
  for (const auto& [path, ino] : by_path_)
    if (IsUnder(path, to)) replaced.push_back(ino);
  for (uint64_t ino : replaced) DetachLocked(ino, nodes_.at(ino));

  std::vector<uint64_t> moved;
  for (const auto& [path, ino] : by_path_)
    if (IsUnder(path, from)) moved.push_back(ino);
  for (uint64_t ino : moved) by_path_.erase(nodes_.at(ino).path);
  for (uint64_t ino : moved) {
    Node& node = nodes_.at(ino);
    node.path = std::string(to) + node.path.substr(from.size());
    by_path_.emplace(node.path, ino);
  }
}

InodeTable::Stats InodeTable::stats() const {
  std::lock_guard lock(mutex_);
  size_t orphans = 0;
  for (const auto& [ino, node] : nodes_) orphans += node.attached ? 0 : 1;
  return Stats{nodes_.size(), forgotten_.size(), orphans, evicted_};
}

}  // namespace hfvfs::kernel
