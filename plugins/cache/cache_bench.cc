// cache_bench: the cache layer measured without FUSE, against the limits of its source.
//
//   cache_bench [--mib N] [--dir D] [--json FILE] [--sources disk|slow]
//               [--warm-readahead BYTES]
//
// Data: one N MiB file (default 1024) on local disk under D (default $TMPDIR). Sources below
// the cache: "disk" (pread of that file) and "slow" (the same bytes behind a modelled server:
// 2 ms per request and 400 MB/s shared by all requests, like an HTTP server on a fast link).
// Cases, each against the raw limit of the same source:
//   seq_cold     empty cache, page cache dropped: 1 MiB sequential reads through the cache
//                vs one sequential stream from the source (the "curl" of this source)
//   seq_warm     page cache dropped, chunk cache full: vs pread of the original file
//   seq_remount  the same through a new layer on the same folder (index rebuilt)
//   rand4k_1/4   4 KiB random reads over the warm cache, 1 and 4 threads, 5 s: vs pread
// Dropping the page cache needs root (/proc/sys/vm/drop_caches); without it warm figures are
// optimistic and the table says so.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cache_layer.h"

namespace {

using hfvfs::Attr;
using hfvfs::Err;
using hfvfs::File;
using hfvfs::Result;
using hfvfs::Status;
using hfvfs::cache::CacheLayer;
using hfvfs::cache::CacheOptions;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kMiB = 1 << 20;

bool DropCaches() {
  ::sync();
  std::ofstream f("/proc/sys/vm/drop_caches");
  f << "3\n";
  f.flush();
  return static_cast<bool>(f);
}

// A modelled server: each request waits `latency`, and all requests share `bytes_per_s`.
class Throttle {
 public:
  Throttle(std::chrono::microseconds latency, double bytes_per_s)
      : latency_(latency), bytes_per_s_(bytes_per_s) {}
  // When a transfer of `bytes` starting now completes; the caller sleeps until then.
  Clock::time_point Reserve(uint64_t bytes) {
    Clock::time_point done;
    {
      std::lock_guard lock(mu_);
      const Clock::time_point now = Clock::now();
      const Clock::time_point start = std::max(now + latency_, next_free_);
      done = start + std::chrono::nanoseconds(static_cast<int64_t>(bytes / bytes_per_s_ * 1e9));
      next_free_ = done;
    }
    return done;
  }

 private:
  std::chrono::microseconds latency_;
  double bytes_per_s_;
  std::mutex mu_;  // guards next_free_
  Clock::time_point next_free_{};
};

// One file on disk as a source, optionally throttled.
class DiskSource final : public hfvfs::Layer {
 public:
  DiskSource(std::string file, Throttle* throttle) : file_(std::move(file)), throttle_(throttle) {}
  std::string_view type() const override { return "disk"; }
  hfvfs::Capabilities capabilities() const override { return {}; }
  Result<Attr> stat(std::string_view) override {
    Attr a;
    a.size = std::filesystem::file_size(file_);
    a.version = "bench-v1";
    return a;
  }
  Result<std::vector<hfvfs::DirEntry>> list(std::string_view) override {
    return std::vector<hfvfs::DirEntry>{};
  }
  class DiskFile final : public File {
   public:
    DiskFile(DiskSource& src, int fd) : src_(src), fd_(fd) {}
    ~DiskFile() override { ::close(fd_); }
    Result<size_t> read(uint64_t offset, std::span<std::byte> buf) override {
      const Clock::time_point done_at =
          src_.throttle_ ? src_.throttle_->Reserve(buf.size()) : Clock::time_point{};
      auto n = hfvfs::ReadFully(buf, [&](size_t done, std::span<std::byte> rest) -> Result<size_t> {
        ssize_t n = ::pread(fd_, rest.data(), rest.size(), static_cast<off_t>(offset + done));
        if (n < 0) return Err(errno, "pread");
        return static_cast<size_t>(n);
      });
      if (src_.throttle_) std::this_thread::sleep_until(done_at);
      return n;
    }
    Result<Attr> stat() override { return src_.stat(""); }

   private:
    DiskSource& src_;
    int fd_;
  };
  Result<std::unique_ptr<File>> open(std::string_view, int) override {
    int fd = ::open(file_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Err(errno, "open " + file_);
    return std::unique_ptr<File>(std::make_unique<DiskFile>(*this, fd));
  }

 private:
  std::string file_;
  Throttle* throttle_;
};

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// MB/s of reading all of `file` in 1 MiB reads.
double ReadSequential(File& file, uint64_t size) {
  std::vector<std::byte> buf(kMiB);
  const auto t0 = Clock::now();
  uint64_t done = 0;
  while (done < size) {
    auto n = file.read(done, buf);
    if (!n || *n == 0) {
      std::fprintf(stderr, "read failed at %llu: %s\n", static_cast<unsigned long long>(done),
                   n ? "EOF" : n.error().message().c_str());
      std::exit(1);
    }
    done += *n;
  }
  return size / Seconds(Clock::now() - t0) / 1e6;
}

// IOPS of 4 KiB random reads from `threads` threads for `seconds`.
double RandomReads(File& file, uint64_t size, int threads, double seconds) {
  std::atomic<uint64_t> ops{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      std::mt19937_64 rng(t + 1);
      std::vector<std::byte> buf(4096);
      uint64_t mine = 0;
      while (!stop) {
        const uint64_t off = (rng() % (size / 4096)) * 4096;
        auto n = file.read(off, buf);
        if (!n || *n != 4096) std::exit(2);
        ++mine;
      }
      ops += mine;
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& w : workers) w.join();
  return ops / seconds;
}

struct Row {
  std::string source, cas, unit;
  double limit = 0, cache = 0;
};

}  // namespace

int main(int argc, char** argv) {
  uint64_t mib = 1024;
  std::string base = std::filesystem::temp_directory_path().string();
  std::string json;
  uint64_t warm_readahead = CacheOptions{}.warm_readahead;
  std::string only_source;  // "" = both
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    if (k == "--mib") mib = std::stoull(argv[i + 1]);
    if (k == "--dir") base = argv[i + 1];
    if (k == "--json") json = argv[i + 1];
    if (k == "--warm-readahead") warm_readahead = std::stoull(argv[i + 1]);
    if (k == "--sources") only_source = argv[i + 1];
  }
  const std::string work = base + "/hfvfs-cache-bench-" + std::to_string(::getpid());
  std::filesystem::create_directories(work);
  const std::string data = work + "/data.bin";
  const uint64_t size = mib * kMiB;
  {
    std::ofstream out(data, std::ios::binary);
    std::vector<char> block(kMiB);
    std::mt19937_64 rng(42);
    for (uint64_t i = 0; i < mib; ++i) {
      for (size_t j = 0; j < block.size(); j += 8) {
        uint64_t v = rng();
        std::memcpy(&block[j], &v, 8);
      }
      out.write(block.data(), static_cast<std::streamsize>(block.size()));
    }
  }
  bool dropped = true;
  std::vector<Row> rows;
  Throttle throttle(std::chrono::microseconds(2000), 400e6);

  for (const char* source_name : {"disk", "slow"}) {
    if (!only_source.empty() && only_source != source_name) continue;
    const bool slow = std::string(source_name) == "slow";
    auto source = std::make_shared<DiskSource>(data, slow ? &throttle : nullptr);
    const std::string cache_dir = work + "/cache-" + source_name;
    CacheOptions options;
    options.dir = cache_dir;
    options.max_size = size * 2;
    options.warm_readahead = warm_readahead;
    auto cached = [&] {
      auto layer = std::make_shared<CacheLayer>(source, options);
      if (!layer->start()) std::exit(3);
      return layer;
    };
    // The source's own limit: one sequential stream (one request for the modelled server).
    dropped &= DropCaches();
    double limit_cold = 0;
    {
      auto f = source->open("", O_RDONLY);
      std::vector<std::byte> buf(slow ? size : 8 * kMiB);
      const auto t0 = Clock::now();
      for (uint64_t off = 0; off < size; off += buf.size()) {
        if (!(*f)->read(off, std::span(buf).first(std::min<uint64_t>(buf.size(), size - off)))) {
          return 4;
        }
      }
      limit_cold = size / Seconds(Clock::now() - t0) / 1e6;
    }
    dropped &= DropCaches();
    double raw_warm = 0;
    {
      DiskSource plain(data, nullptr);
      auto f = plain.open("", O_RDONLY);
      raw_warm = ReadSequential(**f, size);
    }
    double cold, warm, remount, r1, r4;
    {
      auto layer = cached();
      auto f = layer->open("data.bin", O_RDONLY);
      dropped &= DropCaches();
      cold = ReadSequential(**f, size);
      (void)(*f)->close();
      dropped &= DropCaches();
      auto g = layer->open("data.bin", O_RDONLY);
      warm = ReadSequential(**g, size);
      (void)(*g)->close();
      (void)layer->shutdown(Clock::now() + std::chrono::seconds(10));
    }
    {
      dropped &= DropCaches();
      auto layer = cached();
      auto f = layer->open("data.bin", O_RDONLY);
      remount = ReadSequential(**f, size);
      r1 = RandomReads(**f, size, 1, 5);
      r4 = RandomReads(**f, size, 4, 5);
      (void)(*f)->close();
    }
    double raw_r1, raw_r4;
    {
      // Warm in the page cache, as the cache's chunk files are after seq_remount.
      DiskSource plain(data, nullptr);
      auto f = plain.open("", O_RDONLY);
      ReadSequential(**f, size);
      raw_r1 = RandomReads(**f, size, 1, 5);
      raw_r4 = RandomReads(**f, size, 4, 5);
    }
    rows.push_back({source_name, "seq_cold", "MB/s", limit_cold, cold});
    rows.push_back({source_name, "seq_warm", "MB/s", raw_warm, warm});
    rows.push_back({source_name, "seq_remount", "MB/s", raw_warm, remount});
    rows.push_back({source_name, "rand4k_1", "IOPS", raw_r1, r1});
    rows.push_back({source_name, "rand4k_4", "IOPS", raw_r4, r4});
    std::filesystem::remove_all(cache_dir);
  }
  std::filesystem::remove_all(work);

  std::printf("| source | case | unit | limit | cache | ratio |\n|---|---|---|---|---|---|\n");
  for (const Row& r : rows) {
    std::printf("| %s | %s | %s | %.0f | %.0f | %.2fx |\n", r.source.c_str(), r.cas.c_str(),
                r.unit.c_str(), r.limit, r.cache, r.cache / r.limit);
  }
  std::printf(
      "\n%llu MiB file; limits: seq_cold = one sequential stream from the source, others "
      "= pread of the file on local disk.%s\n",
      static_cast<unsigned long long>(mib),
      dropped ? "" : " Page cache NOT dropped (not root): warm figures are optimistic.");
  if (!json.empty()) {
    std::ofstream out(json);
    out << "[\n";
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      out << "  {\"source\": \"" << r.source << "\", \"case\": \"" << r.cas << "\", \"unit\": \""
          << r.unit << "\", \"limit\": " << r.limit << ", \"cache\": " << r.cache << "}"
          << (i + 1 < rows.size() ? ",\n" : "\n");
    }
    out << "]\n";
  }
  return 0;
}
