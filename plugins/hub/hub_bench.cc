// hub_bench: measures the hub source in-process (no FUSE), for bench/hub.sh.
//
//   hub_bench --endpoint URL --repo REPO --mode seq|rand|ttfb|walk [--file PATH] [--block N]
//             [--count N]
//
// Prints one JSON object: the figure(s), the HTTP requests the layer made and the peak RSS.
#include <fcntl.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "hfvfs/path.h"
#include "hub_layer.h"

namespace {

using Clock = std::chrono::steady_clock;
using hfvfs::hub::HubLayer;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

double CpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
         (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

long PeakRssKib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

int Fail(const std::string& what) {
  std::fprintf(stderr, "hub_bench: %s\n", what.c_str());
  return 1;
}

int64_t Walk(HubLayer& layer, const std::string& dir, std::string& error) {
  auto entries = layer.list(dir);
  if (!entries) {
    error = entries.error().message();
    return -1;
  }
  int64_t files = 0;
  for (const auto& e : *entries) {
    if (e.attr.is_dir()) {
      int64_t n = Walk(layer, hfvfs::JoinPath(dir, e.name), error);
      if (n < 0) return n;
      files += n;
    } else {
      ++files;
    }
  }
  return files;
}

}  // namespace

int main(int argc, char** argv) {
  hfvfs::hub::HubOptions opt;
  std::string mode = "seq", file;
  size_t block = 1 << 20;
  int count = 200;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--endpoint")
      opt.endpoint = v;
    else if (k == "--repo")
      opt.repo = v;
    else if (k == "--revision")
      opt.revision = v;
    else if (k == "--mode")
      mode = v;
    else if (k == "--file")
      file = v;
    else if (k == "--block")
      block = std::stoul(v);
    else if (k == "--count")
      count = std::stoi(v);
    else
      return Fail("unknown option " + k);
  }
  auto t_start = Clock::now();
  HubLayer layer(opt);
  if (auto s = layer.start(); !s) return Fail(s.error().message());
  double start_s = Seconds(Clock::now() - t_start);
  int64_t req0 = layer.http().counters().requests.load();

  if (mode == "walk") {
    auto t0 = Clock::now();
    std::string error;
    int64_t files = Walk(layer, "", error);
    if (files < 0) return Fail(error);
    std::printf(
        "{\"mode\":\"walk\",\"files\":%lld,\"seconds\":%.3f,\"start_seconds\":%.3f,"
        "\"requests\":%lld,\"peak_rss_mib\":%.1f}\n",
        static_cast<long long>(files), Seconds(Clock::now() - t0), start_s,
        static_cast<long long>(layer.http().counters().requests.load() - req0),
        PeakRssKib() / 1024.0);
    return 0;
  }

  auto st = layer.stat(file);
  if (!st) return Fail(st.error().message());
  int64_t req_stat = layer.http().counters().requests.load() - req0;
  auto f = layer.open(file, O_RDONLY);
  if (!f) return Fail(f.error().message());
  std::vector<std::byte> buf(block);

  if (mode == "ttfb") {
    int64_t before = layer.http().counters().requests.load();
    auto t0 = Clock::now();
    auto n = (*f)->read(0, std::span(buf).first(1));
    double ms = Seconds(Clock::now() - t0) * 1000;
    if (!n || *n != 1) return Fail("1-byte read failed");
    std::printf(
        "{\"mode\":\"ttfb\",\"ms\":%.3f,\"requests\":%lld,\"stat_requests\":%lld,"
        "\"start_seconds\":%.3f}\n",
        ms, static_cast<long long>(layer.http().counters().requests.load() - before),
        static_cast<long long>(req_stat), start_s);
    return 0;
  }

  if (mode == "seq") {
    auto t0 = Clock::now();
    double cpu0 = CpuSeconds();
    uint64_t off = 0;
    for (;;) {
      auto n = (*f)->read(off, buf);
      if (!n) return Fail(n.error().message());
      if (*n == 0) break;
      off += *n;
    }
    double secs = Seconds(Clock::now() - t0);
    if (off != st->size) return Fail("short sequential read");
    std::printf(
        "{\"mode\":\"seq\",\"bytes\":%llu,\"seconds\":%.3f,\"mb_s\":%.1f,"
        "\"cpu_seconds\":%.3f,\"requests\":%lld,\"peak_rss_mib\":%.1f}\n",
        static_cast<unsigned long long>(off), secs, off / secs / 1e6, CpuSeconds() - cpu0,
        static_cast<long long>(layer.http().counters().requests.load() - req0),
        PeakRssKib() / 1024.0);
    return 0;
  }

  if (mode == "rand") {
    std::mt19937_64 rng(42);
    uint64_t blocks = st->size / 4096;
    std::vector<double> us;
    // One warm-up read resolves the CDN URL, as any earlier read of the file would have.
    if (!(*f)->read(0, std::span(buf).first(4096))) return Fail("warm-up read failed");
    int64_t before = layer.http().counters().requests.load();
    for (int i = 0; i < count; ++i) {
      uint64_t off = (rng() % blocks) * 4096;
      auto t0 = Clock::now();
      auto n = (*f)->read(off, std::span(buf).first(4096));
      us.push_back(Seconds(Clock::now() - t0) * 1e6);
      if (!n || *n != 4096) return Fail("random read failed");
    }
    std::sort(us.begin(), us.end());
    std::printf(
        "{\"mode\":\"rand\",\"count\":%d,\"p50_us\":%.0f,\"p99_us\":%.0f,"
        "\"requests\":%lld}\n",
        count, us[us.size() / 2], us[us.size() * 99 / 100],
        static_cast<long long>(layer.http().counters().requests.load() - before));
    return 0;
  }
  return Fail("unknown mode " + mode);
}
