// File: fake_lower_layer.h
//
// An in-memory source for the cache's tests: files with contents and versions, a count of
// every read by (path, offset), optional latency, and a switch that makes reads fail (the
// source "stopped").
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "hfvfs/layer.h"

namespace hfvfs::cache::testing {

class FakeLowerLayer : public Layer {
 public:
  struct Content {
    std::string bytes;
    std::string version;
  };

  std::string_view type() const override { return "fake"; }
  Capabilities capabilities() const override {
    Capabilities c;
    c.writable = c.random_write = c.rename = true;
    return c;
  }

  void Put(const std::string& path, std::string bytes, std::string version) {
    std::lock_guard lock(mu_);
    files_[path] = Content{std::move(bytes), std::move(version)};
  }

  // Reads of `path` that started at `offset`.
  int ReadsAt(const std::string& path, uint64_t offset) const {
    std::lock_guard lock(mu_);
    auto it = reads_.find({path, offset});
    return it == reads_.end() ? 0 : it->second;
  }
  int TotalReads() const { return total_reads_.load(); }
  // Bytes returned by all reads.
  int64_t TotalBytesRead() const { return total_bytes_.load(); }
  // The largest number of reads at one (path, offset).
  int MaxReadsAtOneOffset() const {
    std::lock_guard lock(mu_);
    int most = 0;
    for (const auto& [key, n] : reads_) most = std::max(most, n);
    return most;
  }
  void ResetCounts() {
    std::lock_guard lock(mu_);
    reads_.clear();
    total_reads_ = 0;
    total_bytes_ = 0;
  }

  std::atomic<int> latency_ms{0};
  std::atomic<bool> failing{false};

  // Reads that start at or after `offset` wait until Release() (a slow rest of a chunk).
  void HoldReadsFrom(uint64_t offset) {
    std::lock_guard lock(hold_mu_);
    hold_from_ = offset;
  }
  void Release() {
    {
      std::lock_guard lock(hold_mu_);
      hold_from_ = UINT64_MAX;
    }
    hold_cv_.notify_all();
  }
  // Reads waiting in HoldReadsFrom's gate now.
  int HeldReads() const {
    std::lock_guard lock(hold_mu_);
    return held_;
  }

  Result<Attr> stat(std::string_view path) override {
    std::lock_guard lock(mu_);
    auto it = files_.find(std::string(path));
    if (it == files_.end()) return Err(ENOENT, "fake: no such file");
    Attr a;
    a.size = it->second.bytes.size();
    a.version = it->second.version;
    return a;
  }
  Result<std::vector<DirEntry>> list(std::string_view) override {
    std::lock_guard lock(mu_);
    std::vector<DirEntry> out;
    for (const auto& [path, c] : files_) {
      DirEntry e;
      e.name = path;
      e.attr.size = c.bytes.size();
      e.attr.version = c.version;
      out.push_back(std::move(e));
    }
    return out;
  }

  class FakeFile : public File {
   public:
    FakeFile(FakeLowerLayer& layer, std::string path) : layer_(layer), path_(std::move(path)) {}
    Result<size_t> read(uint64_t offset, std::span<std::byte> buf) override {
      return layer_.Read(path_, offset, buf);
    }
    Result<size_t> write(uint64_t offset, std::span<const std::byte> data) override {
      std::lock_guard lock(layer_.mu_);
      Content& c = layer_.files_[path_];
      if (c.bytes.size() < offset + data.size()) c.bytes.resize(offset + data.size());
      std::memcpy(c.bytes.data() + offset, data.data(), data.size());
      c.version = "w" + std::to_string(++layer_.writes_);
      return data.size();
    }
    Result<Attr> stat() override { return layer_.stat(path_); }

   private:
    FakeLowerLayer& layer_;
    std::string path_;
  };

  Result<std::unique_ptr<File>> open(std::string_view path, int) override {
    HFVFS_RETURN_IF_ERROR(stat(path));
    return std::unique_ptr<File>(std::make_unique<FakeFile>(*this, std::string(path)));
  }
  Result<std::unique_ptr<File>> create(std::string_view path, uint32_t, int) override {
    Put(std::string(path), "", "new");
    return open(path, 0);
  }
  Status remove(std::string_view path) override {
    std::lock_guard lock(mu_);
    return files_.erase(std::string(path)) ? Ok() : Status(Err(ENOENT, "fake: no such file"));
  }

 private:
  Result<size_t> Read(const std::string& path, uint64_t offset, std::span<std::byte> buf) {
    if (latency_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(latency_ms.load()));
    {
      std::unique_lock lock(hold_mu_);
      held_++;
      hold_cv_.wait(lock, [&] { return offset < hold_from_; });
      held_--;
    }
    if (failing) return Err(EIO, "fake: source stopped");
    std::lock_guard lock(mu_);
    reads_[{path, offset}]++;
    total_reads_++;
    auto it = files_.find(path);
    if (it == files_.end()) return Err(ENOENT, "fake: no such file");
    const std::string& bytes = it->second.bytes;
    if (offset >= bytes.size()) return size_t{0};
    const size_t n = std::min<size_t>(buf.size(), bytes.size() - offset);
    std::memcpy(buf.data(), bytes.data() + offset, n);
    total_bytes_ += static_cast<int64_t>(n);
    return n;
  }

  mutable std::mutex hold_mu_;  // guards hold_from_, held_
  std::condition_variable hold_cv_;
  uint64_t hold_from_ = UINT64_MAX;
  int held_ = 0;
  mutable std::mutex mu_;  // guards files_, reads_, writes_
  std::map<std::string, Content> files_;
  std::map<std::pair<std::string, uint64_t>, int> reads_;
  std::atomic<int> total_reads_{0};
  std::atomic<int64_t> total_bytes_{0};
  int writes_ = 0;
};

// Deterministic bytes for a file: position-dependent so misplaced bytes are caught.
inline std::string PatternBytes(size_t n, uint32_t seed) {
  std::string s(n, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1103515245u + 12345u;
    s[i] = static_cast<char>(x >> 24);
  }
  return s;
}

}  // namespace hfvfs::cache::testing
