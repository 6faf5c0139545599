#include "chunk_store.h"

#include <fcntl.h>
#include <sodium.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <new>
#include <system_error>
#include <utility>

#include "crc32c.h"
#include "hfvfs/memory.h"

namespace hfvfs::cache {
namespace {

namespace fs = std::filesystem;

constexpr char kMagic[8] = {'H', 'F', 'V', 'F', 'S', 'C', 'H', 'K'};
constexpr uint32_t kFormat = 1;
constexpr uint64_t kDiskBlock = 4096;  // what du rounds a file to on the filesystems we target

// The fixed part of a chunk file's header. Followed by the path, the version and one CRC-32C
// per block, then zero padding up to header_len (a multiple of 4 KiB, so data is aligned).
struct FixedHeader {
  char magic[8];
  uint32_t format;
  uint32_t header_len;
  uint32_t block_size;
  uint32_t block_count;
  uint64_t data_len;
  uint64_t chunk_index;
  uint64_t chunk_size;
  uint32_t path_len;
  uint32_t version_len;
  uint32_t header_crc;  // CRC-32C of header_len bytes with this field zero
  uint32_t reserved;
};
static_assert(sizeof(FixedHeader) == 64);

uint64_t RoundUp(uint64_t n, uint64_t to) { return (n + to - 1) / to * to; }

std::string ErrnoText(int err) { return std::strerror(err); }

// Full pread/pwrite loops: EINTR and short transfers are retried.
Result<size_t> PreadFull(int fd, std::byte* p, size_t n, uint64_t off) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = ::pread(fd, p + done, n - done, static_cast<off_t>(off + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      return Err(errno, "pread: " + ErrnoText(errno));
    }
    if (r == 0) break;
    done += static_cast<size_t>(r);
  }
  return done;
}

Status WriteFull(int fd, const std::byte* p, size_t n) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = ::write(fd, p + done, n - done);
    if (r < 0) {
      if (errno == EINTR) continue;
      return Err(errno, "write: " + ErrnoText(errno));
    }
    done += static_cast<size_t>(r);
  }
  return Ok();
}

// Pages of [offset, offset + length) of `fd` in the page cache, or -1 when the kernel cannot
// tell (cachestat(2) is Linux 6.5+; its number is the same on every architecture).
int64_t CachedPages(int fd, uint64_t offset, uint64_t length) {
  constexpr long kSysCachestat = 451;
  struct {
    uint64_t off, len;
  } range{offset, length};
  struct {
    uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
  } stat{};
  if (::syscall(kSysCachestat, fd, &range, &stat, 0) != 0) return -1;
  return static_cast<int64_t>(stat.nr_cache);
}

bool ParseChunkName(const std::string& name, FileKey& key, uint64_t& index) {
  if (name.size() < 34 || name[32] != '.') return false;
  for (size_t i = 0; i < 16; ++i) {
    unsigned v = 0;
    if (std::sscanf(name.c_str() + 2 * i, "%2x", &v) != 1) return false;
    key[i] = static_cast<uint8_t>(v);
  }
  const std::string digits = name.substr(33);
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos) return false;
  index = std::stoull(digits);
  return KeyHex(key) == name.substr(0, 32);
}

}  // namespace

// Closes a descriptor when it goes out of scope.
class ChunkFd {
 public:
  explicit ChunkFd(int fd) : fd_(fd) {}
  ~ChunkFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  ChunkFd(const ChunkFd&) = delete;
  ChunkFd& operator=(const ChunkFd&) = delete;
  int get() const { return fd_; }
  bool ok() const { return fd_ >= 0; }

 private:
  int fd_;
};

FileKey MakeFileKey(std::string_view path, std::string_view version, uint64_t chunk_size) {
  static const int sodium_ready = sodium_init();  // thread-safe, idempotent
  (void)sodium_ready;
  std::string input;
  input.reserve(path.size() + version.size() + 24);
  input.append(path).push_back('\0');
  input.append(version).push_back('\0');
  input.append(std::to_string(chunk_size));
  FileKey key{};
  crypto_generichash(key.data(), key.size(), reinterpret_cast<const unsigned char*>(input.data()),
                     input.size(), nullptr, 0);
  return key;
}

std::string KeyHex(const FileKey& key) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(32, '0');
  for (size_t i = 0; i < key.size(); ++i) {
    out[2 * i] = kHex[key[i] >> 4];
    out[2 * i + 1] = kHex[key[i] & 0xF];
  }
  return out;
}

size_t ChunkIdHash::operator()(const ChunkId& id) const {
  uint64_t head = 0;
  std::memcpy(&head, id.file.data(), sizeof(head));
  return static_cast<size_t>(head ^ (id.index * 0x9E3779B97F4A7C15ull));
}

// Chunk-sized memory straight from mmap(2) and given back at once by munmap(2): through
// malloc, freed megabyte blocks raise glibc's mmap threshold and then stay in per-thread arenas,
// which doubled the mount's resident memory in the benchmark.
struct ChunkStore::Buffer {
  struct Unmap {
    size_t size;  // 0: a view into `parent`, nothing to unmap
    void operator()(std::byte* p) const {
      if (p && size) UnmapHuge(p, size);  // what munmap(p, size) does, for either kind of Map
    }
  };
  std::unique_ptr<std::byte[], Unmap> bytes;
  size_t size = 0;
  std::shared_ptr<Buffer> parent;  // keeps the mapping of a view alive
  explicit Buffer(size_t n) : bytes(Map(n), Unmap{std::max<size_t>(n, 1)}), size(n) {
    if (!bytes) throw std::bad_alloc();
  }
  // The bytes [offset, offset + n) of `whole`, without a copy.
  Buffer(std::shared_ptr<Buffer> whole, size_t offset, size_t n)
      : bytes(whole->bytes.get() + offset, Unmap{0}), size(n), parent(std::move(whole)) {}
  // Bytes mapped (a pooled mapping may be reused for a smaller size).
  size_t capacity() const { return bytes.get_deleter().size; }
  std::span<std::byte> span() { return {bytes.get(), size}; }
  std::span<const std::byte> span() const { return {bytes.get(), size}; }

 private:
  // Buffers of 2 MiB and more come from MapHuge (2 MiB-aligned, transparent huge pages): the
  // fetch writes every byte of a fresh buffer, and one fault per 2 MiB instead of one per 4 KiB
  // took a third off the mount's CPU in a cold sequential read (faults are dear in a VM).
  static std::byte* Map(size_t n) {
    n = std::max<size_t>(n, 1);
    if (n >= (2 << 20)) return MapHuge(n);
    void* p = ::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? nullptr : static_cast<std::byte*>(p);
  }
};

// One fetch in flight; waiters hold it by shared_ptr, so it outlives its Entry.
struct ChunkStore::Fill {
  bool has_data = false;  // `data` is the chunk's content
  bool done = false;      // the downloader finished (ok or not)
  bool consumed = false;  // a waiter read from `data` (read-ahead that was not wasted)
  Status status;
  std::shared_ptr<const Buffer> data;
};

struct ChunkStore::Entry {
  enum class State { kFilling, kReady };
  State state = State::kFilling;
  uint64_t generation = 0;
  std::shared_ptr<Fill> fill;  // while filling
  std::string path;
  // Ready chunks:
  uint64_t data_len = 0;
  uint64_t disk_bytes = 0;  // charged to used_bytes_ (reserved when the fill starts writing)
  uint32_t header_len = 0;
  std::vector<uint32_t> crcs;
  std::vector<bool> verified;  // blocks checked since this process opened the file identity
  bool identity_known = false;
  ino_t ino = 0;
  timespec mtime{};
  int pins = 0;
  bool prefetched_unread = false;
  bool in_lru = false;
  std::list<ChunkId>::iterator lru_it;
  // The chunk file kept open, so reads skip open(2) and keep the kernel's read-ahead state.
  // Readers hold a copy while reading; erasing the entry closes it once they are done.
  std::shared_ptr<ChunkFd> fd;
  std::list<ChunkId>::iterator fd_it;  // in fd_order_ when fd is set
  // A copy of the data in memory for a sequential reader (Stage): `has_data` once read and
  // verified, `done` once the load ended either way. In staged_order_ while set.
  std::shared_ptr<Fill> staged;
  std::list<ChunkId>::iterator staged_it;
  std::chrono::steady_clock::time_point staged_at;
  bool staged_read = false;  // a read was served from the staged copy
};

ChunkStore::ChunkStore(ChunkStoreOptions options)
    : options_(std::move(options)), direct_capable_(options_.direct_read_min > 0) {}

ChunkStore::~ChunkStore() {
  {
    std::lock_guard lock(write_mu_);
    writer_stop_ = true;
  }
  write_cv_.notify_all();
  if (writer_.joinable()) writer_.join();  // writes what is queued first
  if (lock_fd_ >= 0) ::close(lock_fd_);    // releases the flock
}

Result<std::unique_ptr<ChunkStore>> ChunkStore::Open(ChunkStoreOptions options) {
  if (options.block_size == 0) return Err(EINVAL, "cache: block size must be positive");
  std::unique_ptr<ChunkStore> store(new ChunkStore(std::move(options)));
  Status opened = store->OpenFolder();
  if (!opened) {
    if (opened.code() == EBUSY) return opened.error();
    store->degraded_ = true;
    spdlog::warn("cache: {}; reading from the lower layer without caching",
                 opened.error().message());
    return store;
  }
  store->Rebuild();
  store->writer_ = std::thread([s = store.get()] { s->RunWriter(); });
  return store;
}

Status ChunkStore::OpenFolder() {
  const std::string& dir = options_.dir;
  std::error_code ec;
  for (const char* sub : {"", "chunks", "tmp"}) {
    fs::create_directories(fs::path(dir) / sub, ec);
    if (ec) return Err(ec.value(), "cannot create cache folder " + dir + ": " + ec.message());
  }
  const std::string lock_path = dir + "/lock";
  int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return Err(errno, "cannot open " + lock_path + ": " + ErrnoText(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    char pid[32] = {};
    ssize_t n = ::pread(fd, pid, sizeof(pid) - 1, 0);
    ::close(fd);
    if (err == EWOULDBLOCK) {
      std::string owner = n > 0 ? std::string(pid, static_cast<size_t>(n)) : "unknown";
      while (!owner.empty() && (owner.back() == '\n' || owner.back() == ' ')) owner.pop_back();
      return Err(EBUSY, "cache folder " + dir + " is in use by another hfvfs mount (pid " + owner +
                            "); give each mount its own `dir`");
    }
    return Err(err, "cannot lock " + lock_path + ": " + ErrnoText(err));
  }
  lock_fd_ = fd;
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    return Err(errno, "cannot write " + lock_path + ": " + ErrnoText(errno));
  }
  // A probe write: a read-only folder is found now, not at the first fill.
  const std::string probe = dir + "/tmp/probe";
  int pfd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (pfd < 0) return Err(errno, "cache folder " + dir + " is not writable: " + ErrnoText(errno));
  ::close(pfd);
  ::unlink(probe.c_str());
  return Ok();
}

void ChunkStore::Rebuild() {
  const fs::path root(options_.dir);
  std::error_code ec;
  // Leftovers of fills that a crash interrupted: never renamed, so never visible.
  for (const auto& e : fs::directory_iterator(root / "tmp", ec)) fs::remove(e.path(), ec);

  struct Found {
    ChunkId id;
    Entry entry;
    int64_t mtime_ns;
  };
  std::vector<Found> found;
  uint64_t overhead = 0;
  struct stat st {};
  for (const char* sub : {"", "chunks", "tmp", "lock"}) {
    if (::stat((root / sub).c_str(), &st) == 0)
      overhead += static_cast<uint64_t>(st.st_blocks) * 512;
  }
  std::unordered_set<std::string> subdirs;
  for (const auto& sub : fs::directory_iterator(root / "chunks", ec)) {
    if (!sub.is_directory(ec)) {
      fs::remove(sub.path(), ec);
      continue;
    }
    subdirs.insert(sub.path().filename().string());
    if (::stat(sub.path().c_str(), &st) == 0) overhead += static_cast<uint64_t>(st.st_blocks) * 512;
    for (const auto& file : fs::directory_iterator(sub.path(), ec)) {
      const std::string name = file.path().filename().string();
      auto discard = [&](const char* why) {
        spdlog::warn("cache: discarding {}: {}", file.path().string(), why);
        fs::remove(file.path(), ec);
        counters_.corrupt_chunks++;
      };
      ChunkId id;
      if (!ParseChunkName(name, id.file, id.index)) {
        discard("not a chunk file name");
        continue;
      }
      ChunkFd fd(::open(file.path().c_str(), O_RDONLY | O_CLOEXEC));
      if (!fd.ok() || ::fstat(fd.get(), &st) != 0) {
        discard("cannot open");
        continue;
      }
      FixedHeader h{};
      auto n = PreadFull(fd.get(), reinterpret_cast<std::byte*>(&h), sizeof(h), 0);
      if (!n || *n != sizeof(h) || std::memcmp(h.magic, kMagic, 8) != 0 || h.format != kFormat ||
          h.header_len < sizeof(h) || h.header_len % kDiskBlock != 0 || h.header_len > (1u << 24)) {
        discard("bad header");
        continue;
      }
      std::vector<std::byte> header(h.header_len);
      n = PreadFull(fd.get(), header.data(), header.size(), 0);
      const uint64_t variable =
          uint64_t{h.path_len} + h.version_len + uint64_t{h.block_count} * 4 + sizeof(h);
      if (!n || *n != header.size() || variable > h.header_len || h.block_size == 0 ||
          h.block_count != (h.data_len + h.block_size - 1) / h.block_size) {
        discard("bad header");
        continue;
      }
      const uint32_t stored_crc = h.header_crc;
      std::memset(header.data() + offsetof(FixedHeader, header_crc), 0, 4);
      if (Crc32c(header) != stored_crc) {
        discard("header checksum mismatch");
        continue;
      }
      const char* var = reinterpret_cast<const char*>(header.data()) + sizeof(h);
      std::string path(var, h.path_len);
      std::string version(var + h.path_len, h.version_len);
      if (MakeFileKey(path, version, h.chunk_size) != id.file || h.chunk_index != id.index) {
        discard("header does not match the file name");
        continue;
      }
      if (static_cast<uint64_t>(st.st_size) != h.header_len + h.data_len) {
        discard("torn (size differs from the header)");
        continue;
      }
      Found f;
      f.id = id;
      f.entry.state = Entry::State::kReady;
      f.entry.path = std::move(path);
      f.entry.data_len = h.data_len;
      f.entry.header_len = h.header_len;
      f.entry.disk_bytes = RoundUp(static_cast<uint64_t>(st.st_size), kDiskBlock);
      f.entry.crcs.resize(h.block_count);
      std::memcpy(f.entry.crcs.data(), var + h.path_len + h.version_len, 4ull * h.block_count);
      f.entry.verified.assign(h.block_count, false);
      f.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
      found.push_back(std::move(f));
    }
  }
  // No access order survives a restart; the oldest written is the first to go.
  std::sort(found.begin(), found.end(),
            [](const Found& a, const Found& b) { return a.mtime_ns < b.mtime_ns; });
  std::lock_guard lock(mu_);
  subdirs_ = std::move(subdirs);
  used_bytes_ = overhead;
  for (auto& f : found) {
    f.entry.generation = next_generation_++;
    used_bytes_ += f.entry.disk_bytes;
    path_chunks_[f.entry.path].insert(f.id);
    auto [it, inserted] = entries_.emplace(f.id, std::move(f.entry));
    it->second.lru_it = lru_.insert(lru_.end(), f.id);
    it->second.in_lru = true;
  }
  MakeRoomLocked(0);  // max_size may have shrunk since the last run
  spdlog::info("cache: {} holds {} chunks, {} bytes", options_.dir, entries_.size(), used_bytes_);
}

std::string ChunkStore::ChunkPath(const ChunkId& id) const {
  const std::string hex = KeyHex(id.file);
  return options_.dir + "/chunks/" + hex.substr(0, 2) + "/" + hex + "." + std::to_string(id.index);
}

uint64_t ChunkStore::HeaderLen(const ChunkRef& ref) const {
  const uint64_t blocks = (ref.length + options_.block_size - 1) / options_.block_size;
  return RoundUp(sizeof(FixedHeader) + ref.path.size() + ref.version.size() + 4 * blocks,
                 kDiskBlock);
}

bool ChunkStore::Contains(const ChunkId& id) const {
  std::lock_guard lock(mu_);
  return entries_.count(id) != 0;
}

uint64_t ChunkStore::staged_bytes() const {
  std::lock_guard lock(mu_);
  return staged_bytes_;
}

bool ChunkStore::AllCached(std::span<const ChunkRef> refs) const {
  std::lock_guard lock(mu_);
  for (const ChunkRef& ref : refs) {
    auto it = entries_.find(ref.id);
    if (it == entries_.end() || it->second.state != Entry::State::kReady) return false;
  }
  return true;
}

uint64_t ChunkStore::used_bytes() const {
  std::lock_guard lock(mu_);
  return used_bytes_;
}

size_t ChunkStore::chunk_count() const {
  std::lock_guard lock(mu_);
  size_t n = 0;
  for (const auto& [id, e] : entries_) n += e.state == Entry::State::kReady;
  return n;
}

void ChunkStore::WarnDisk(const std::string& what) {
  counters_.disk_errors++;
  if (!warned_disk_.exchange(true)) {
    spdlog::warn(
        "cache: {}; reads keep working from the lower layer (further errors of the cache "
        "folder are counted, not logged)",
        what);
  }
}

void ChunkStore::EraseLocked(std::unordered_map<ChunkId, Entry, ChunkIdHash>::iterator it,
                             bool evicted) {
  Entry& e = it->second;
  if (e.state == Entry::State::kReady) {
    ::unlink(ChunkPath(it->first).c_str());
    if (evicted) {
      counters_.evictions++;
      if (e.prefetched_unread) counters_.readahead_waste += static_cast<int64_t>(e.data_len);
    }
  }
  UnstageLocked(e);
  used_bytes_ -= std::min(used_bytes_, e.disk_bytes);
  if (e.in_lru) lru_.erase(e.lru_it);
  if (e.fd) fd_order_.erase(e.fd_it);
  auto p = path_chunks_.find(e.path);
  if (p != path_chunks_.end()) {
    p->second.erase(it->first);
    if (p->second.empty()) path_chunks_.erase(p);
  }
  entries_.erase(it);
}

bool ChunkStore::MakeRoomLocked(uint64_t need) {
  auto cursor = lru_.begin();
  while (used_bytes_ + need > options_.max_bytes && cursor != lru_.end()) {
    auto it = entries_.find(*cursor);
    ++cursor;
    if (it == entries_.end() || it->second.pins > 0) continue;
    EraseLocked(it, /*evicted=*/true);
  }
  return used_bytes_ + need <= options_.max_bytes;
}

void ChunkStore::InvalidatePath(std::string_view path) {
  std::lock_guard lock(mu_);
  auto p = path_chunks_.find(std::string(path));
  if (p == path_chunks_.end()) return;
  const std::vector<ChunkId> ids(p->second.begin(), p->second.end());
  for (const ChunkId& id : ids) {
    auto it = entries_.find(id);
    if (it != entries_.end()) EraseLocked(it, /*evicted=*/false);
  }
}

void ChunkStore::InvalidateTree(std::string_view dir) {
  std::vector<std::string> paths;
  {
    std::lock_guard lock(mu_);
    for (const auto& [path, ids] : path_chunks_) {
      if (dir.empty() || path == dir ||
          (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
           path[dir.size()] == '/')) {
        paths.push_back(path);
      }
    }
  }
  for (const auto& path : paths) InvalidatePath(path);
}

Result<std::string> ChunkStore::WriteTempChunk(const ChunkRef& ref, const Buffer& data,
                                               uint64_t header_len, std::vector<uint32_t>& crcs) {
  const uint64_t bs = options_.block_size;
  const uint64_t blocks = (ref.length + bs - 1) / bs;
  crcs.resize(blocks);
  for (uint64_t b = 0; b < blocks; ++b) {
    crcs[b] = Crc32c(data.span().subspan(b * bs, std::min(bs, ref.length - b * bs)));
  }
  std::vector<std::byte> header(header_len);
  FixedHeader h{};
  std::memcpy(h.magic, kMagic, 8);
  h.format = kFormat;
  h.header_len = static_cast<uint32_t>(header_len);
  h.block_size = options_.block_size;
  h.block_count = static_cast<uint32_t>(blocks);
  h.data_len = ref.length;
  h.chunk_index = ref.id.index;
  h.chunk_size = ref.chunk_size;
  h.path_len = static_cast<uint32_t>(ref.path.size());
  h.version_len = static_cast<uint32_t>(ref.version.size());
  std::memcpy(header.data(), &h, sizeof(h));
  std::byte* var = header.data() + sizeof(h);
  std::memcpy(var, ref.path.data(), ref.path.size());
  std::memcpy(var + ref.path.size(), ref.version.data(), ref.version.size());
  std::memcpy(var + ref.path.size() + ref.version.size(), crcs.data(), 4 * crcs.size());
  h.header_crc = Crc32c(header);
  std::memcpy(header.data() + offsetof(FixedHeader, header_crc), &h.header_crc, 4);

  std::string tmp = options_.dir + "/tmp/" + std::to_string(::getpid()) + "-" +
                    std::to_string(tmp_counter_.fetch_add(1)) + ".tmp";
  ChunkFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!fd.ok()) return Err(errno, "cannot create " + tmp + ": " + ErrnoText(errno));
  Status written = WriteFull(fd.get(), header.data(), header.size());
  if (written) written = WriteFull(fd.get(), data.bytes.get(), data.size);
  if (!written) {
    ::unlink(tmp.c_str());
    return written.error().With("cannot write " + tmp);
  }
  return tmp;
}

void ChunkStore::KeepFdLocked(Entry& e, const ChunkId& id, std::shared_ptr<ChunkFd> fd) {
  e.fd = std::move(fd);
  e.fd_it = fd_order_.insert(fd_order_.end(), id);
  while (fd_order_.size() > kMaxOpenFds) {
    auto oldest = entries_.find(fd_order_.front());
    fd_order_.pop_front();
    if (oldest != entries_.end()) oldest->second.fd.reset();
  }
}

void ChunkStore::Advise(const ChunkId& id) {
  // Large reads go straight from the disk (ReadData): pages read ahead into the page cache would
  // only send them down the buffered path, which costs twice the CPU (measured: the page cache
  // fill of 4 KiB pages alone took half of the mount's CPU in a warm sequential read).
  if (direct_capable_.load(std::memory_order_relaxed)) return;
  std::shared_ptr<ChunkFd> fd;
  uint64_t generation = 0;
  {
    std::lock_guard lock(mu_);
    auto it = entries_.find(id);
    if (it == entries_.end() || it->second.state != Entry::State::kReady) return;
    fd = it->second.fd;
    generation = it->second.generation;
  }
  if (!fd) {
    fd = std::make_shared<ChunkFd>(::open(ChunkPath(id).c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd->ok()) return;
    std::lock_guard lock(mu_);
    auto it = entries_.find(id);
    if (it != entries_.end() && it->second.generation == generation && !it->second.fd) {
      KeepFdLocked(it->second, id, fd);
    }
  }
  // Only sequential read-ahead advises a chunk: the larger kernel read-ahead of SEQUENTIAL
  // fetches the rest of the file in fewer, larger requests.
  ::posix_fadvise(fd->get(), 0, 0, POSIX_FADV_SEQUENTIAL);
  ::posix_fadvise(fd->get(), 0, 0, POSIX_FADV_WILLNEED);
}

std::shared_ptr<ChunkStore::Buffer> ChunkStore::TakeBuffer(size_t size) {
  std::unique_ptr<Buffer> reused;
  {
    std::lock_guard lock(pool_mu_);
    // The smallest pooled mapping that holds `size` bytes (and wastes at most half of itself).
    auto best = pool_.end();
    for (auto it = pool_.begin(); it != pool_.end(); ++it) {
      const size_t capacity = (*it)->capacity();
      if (capacity >= size && capacity / 2 <= size &&
          (best == pool_.end() || capacity < (*best)->capacity())) {
        best = it;
      }
    }
    if (best != pool_.end()) {
      reused = std::move(*best);
      pool_.erase(best);
      pooled_bytes_ -= reused->capacity();
    }
  }
  if (reused) {
    reused->size = size;  // every byte is overwritten before anyone reads it
  } else {
    reused = std::make_unique<Buffer>(size);
  }
  // The last reference gives the mapping back to the pool, which keeps at most
  // buffer_pool_bytes.
  return std::shared_ptr<Buffer>(reused.release(), [this](Buffer* b) {
    std::unique_ptr<Buffer> owned(b);
    std::lock_guard lock(pool_mu_);
    if (pooled_bytes_ + b->capacity() <= options_.buffer_pool_bytes) {
      pooled_bytes_ += b->capacity();
      pool_.push_back(std::move(owned));
    }
  });
}

void ChunkStore::UnstageLocked(Entry& e) {
  if (!e.staged) return;
  if (!e.staged_read) counters_.staged_unread++;
  staged_order_.erase(e.staged_it);
  staged_bytes_ -= std::min(staged_bytes_, e.data_len);
  e.staged.reset();
}

bool ChunkStore::LoadChunk(const ChunkId& id, uint32_t header_len, uint64_t data_len,
                           const std::vector<uint32_t>& crcs, Buffer& out, struct stat& st,
                           bool& corrupt, std::string& why) {
  const std::string path = ChunkPath(id);
  ChunkFd buffered(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!buffered.ok() || ::fstat(buffered.get(), &st) != 0) {
    why = "cannot open: " + ErrnoText(errno);
    return false;
  }
  // Straight from the disk into `out`: one request for the whole chunk and no second copy in
  // the page cache (`out` is what readers get). A file system without O_DIRECT (tmpfs) reads
  // through the page cache.
  ChunkFd direct(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT));
  const bool is_direct = direct.ok();
  const int fd = is_direct ? direct.get() : buffered.get();
  const size_t want = is_direct ? out.size : data_len;  // O_DIRECT: whole 4 KiB blocks
  size_t done = 0;
  while (done < want) {
    ssize_t r =
        ::pread(fd, out.bytes.get() + done, want - done, static_cast<off_t>(header_len + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      why = "read: " + ErrnoText(errno);
      return false;
    }
    if (r == 0) break;
    done += static_cast<size_t>(r);
    if (is_direct && static_cast<size_t>(r) % kDiskBlock != 0) break;  // the end of the file
  }
  if (done < data_len) {
    corrupt = true;
    why = "shorter than its chunk";
    return false;
  }
  const uint64_t bs = options_.block_size;
  for (uint64_t b = 0; b < crcs.size(); ++b) {
    const uint64_t begin = b * bs;
    const uint64_t len = std::min(bs, data_len - begin);
    if (Crc32c(std::span<const std::byte>(out.bytes.get() + begin, len)) != crcs[b]) {
      corrupt = true;
      why = "checksum mismatch in block " + std::to_string(b);
      return false;
    }
  }
  return true;
}

bool ChunkStore::Stage(const ChunkRef& ref) {
  if (options_.stage_max_bytes == 0 || degraded_) {
    Advise(ref.id);
    return false;
  }
  std::shared_ptr<Fill> fill;
  uint64_t generation = 0;
  uint32_t header_len = 0;
  uint64_t data_len = 0;
  std::vector<uint32_t> crcs;
  {
    std::lock_guard lock(mu_);
    auto it = entries_.find(ref.id);
    if (it == entries_.end() || it->second.state != Entry::State::kReady) return false;
    if (it->second.staged) return true;
    header_len = it->second.header_len;
    data_len = it->second.data_len;
  }
  // Data in the page cache (written or read recently) is best read from there by the reader
  // itself: a staged copy would only add a copy.
  if (!options_.stage_cached_pages) {
    ChunkFd fd(::open(ChunkPath(ref.id).c_str(), O_RDONLY | O_CLOEXEC));
    const int64_t pages = static_cast<int64_t>((data_len + kDiskBlock - 1) / kDiskBlock);
    if (fd.ok() && CachedPages(fd.get(), header_len, data_len) >= pages) return false;
  }
  {
    std::lock_guard lock(mu_);
    auto it = entries_.find(ref.id);
    if (it == entries_.end() || it->second.state != Entry::State::kReady) return false;
    Entry& e = it->second;
    if (e.staged) return true;
    const auto now = std::chrono::steady_clock::now();
    // Copies nobody read for a while (the reader went elsewhere or closed) make room.
    while (staged_bytes_ + e.data_len > options_.stage_max_bytes && !staged_order_.empty()) {
      auto oldest = entries_.find(staged_order_.front());
      if (oldest == entries_.end() || now - oldest->second.staged_at < kStageMaxAge) break;
      UnstageLocked(oldest->second);
    }
    if (staged_bytes_ + e.data_len <= options_.stage_max_bytes) {
      fill = std::make_shared<Fill>();
      e.staged = fill;
      e.staged_at = now;
      e.staged_read = false;
      e.staged_it = staged_order_.insert(staged_order_.end(), ref.id);
      staged_bytes_ += e.data_len;
      generation = e.generation;
      header_len = e.header_len;
      data_len = e.data_len;
      crcs = e.crcs;
    }
  }
  if (!fill) {
    Advise(ref.id);
    return false;
  }
  counters_.staged++;
  bool loaded = false;
  bool corrupt = false;
  std::string why;
  std::shared_ptr<Buffer> buffer;
  Status allocated = CatchAll("cache: stage buffer", [&]() -> Status {
    buffer = TakeBuffer(RoundUp(data_len, kDiskBlock));
    return Ok();
  });
  struct stat st {};
  if (allocated) {
    loaded = LoadChunk(ref.id, header_len, data_len, crcs, *buffer, st, corrupt, why);
  }

  std::lock_guard lock(mu_);
  fill->done = true;
  auto it = entries_.find(ref.id);
  const bool current =
      it != entries_.end() && it->second.generation == generation && it->second.staged == fill;
  if (loaded && current) {
    fill->data = buffer;
    fill->has_data = true;
    // The file, as this identity, was checked whole: later reads of it need no checks.
    Entry& e = it->second;
    e.identity_known = true;
    e.ino = st.st_ino;
    e.mtime = st.st_mtim;
    e.verified.assign(e.crcs.size(), true);
  } else if (current && corrupt) {
    counters_.corrupt_chunks++;
    spdlog::warn("cache: discarding chunk {} of '{}': {}; fetching it again", ref.id.index,
                 std::string(ref.path), why);
    EraseLocked(it, /*evicted=*/false);
  } else if (current) {
    UnstageLocked(it->second);
  }
  fill_cv_.notify_all();
  return loaded && current;
}

Result<size_t> ChunkStore::ReadData(const ChunkId& id, const ChunkFd& fd, std::span<std::byte> out,
                                    uint64_t file_offset) {
  if (options_.direct_read_min > 0 && out.size() >= options_.direct_read_min &&
      !direct_unsupported_.load(std::memory_order_relaxed)) {
    // Whether the caller's buffers can take O_DIRECT is a property of the caller; the length
    // is not (the tail of a file is any size), so only the address decides direct_capable_.
    const bool address_aligned = reinterpret_cast<uintptr_t>(out.data()) % kDirectAlign == 0;
    direct_capable_.store(address_aligned, std::memory_order_relaxed);
    const bool aligned =
        address_aligned && out.size() % kDirectAlign == 0 && file_offset % kDirectAlign == 0;
    // Pages already in the page cache (just written, or read by someone else) are cheaper to
    // copy from there; an O_DIRECT read of a range with dirty pages would also wait for their
    // writeback first.
    if (aligned && CachedPages(fd.get(), file_offset, out.size()) == 0) {
      ChunkFd direct(::open(ChunkPath(id).c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT));
      if (direct.ok()) {
        auto n = PreadFull(direct.get(), out.data(), out.size(), file_offset);
        if (n) {
          counters_.direct_reads++;
          return n;
        }
        if (n.code() != EINVAL) return n;
        direct_unsupported_ = true;  // the file system takes O_DIRECT opens, not such reads
      } else if (errno == EINVAL) {
        direct_unsupported_ = true;  // tmpfs: no O_DIRECT
      }
      if (direct_unsupported_) direct_capable_ = false;
    }
  }
  return PreadFull(fd.get(), out.data(), out.size(), file_offset);
}

Result<bool> ChunkStore::ReadCached(const ChunkRef& ref, uint64_t offset,
                                    std::span<std::byte> out) {
  const uint64_t bs = options_.block_size;
  uint64_t generation = 0;
  uint32_t header_len = 0;
  uint64_t data_len = 0;
  std::vector<uint32_t> crcs;
  std::vector<bool> verified;
  bool identity_known = false;
  ino_t ino = 0;
  timespec mtime{};
  std::shared_ptr<ChunkFd> fd;
  {
    std::lock_guard lock(mu_);
    auto it = entries_.find(ref.id);
    if (it == entries_.end() || it->second.state != Entry::State::kReady) return false;
    Entry& e = it->second;
    e.pins++;
    e.prefetched_unread = false;
    lru_.splice(lru_.end(), lru_, e.lru_it);
    generation = e.generation;
    header_len = e.header_len;
    data_len = e.data_len;
    identity_known = e.identity_known;
    ino = e.ino;
    mtime = e.mtime;
    fd = e.fd;
    const uint64_t first = offset / bs;
    const uint64_t last = out.empty() ? first : (offset + out.size() - 1) / bs;
    for (uint64_t b = first; b <= last && b < e.verified.size(); ++b) {
      if (!e.verified[b]) {
        crcs = e.crcs;  // copied only when something must be checked
        verified = e.verified;
        break;
      }
    }
  }

  enum class Outcome { kServed, kCorrupt, kGone };
  Outcome outcome = Outcome::kServed;
  std::string why;
  struct stat st {};
  uint64_t first_block = 0;
  uint64_t last_block = 0;
  const bool opened_here = !fd;
  if (opened_here)
    fd = std::make_shared<ChunkFd>(::open(ChunkPath(ref.id).c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd->ok()) {
    outcome = Outcome::kGone;
    why = "cannot open: " + ErrnoText(errno);
  } else if (offset + out.size() > data_len) {
    outcome = Outcome::kCorrupt;
    why = "shorter than its chunk";
  } else if (::fstat(fd->get(), &st) != 0) {
    outcome = Outcome::kGone;
    why = "cannot stat";
  } else {
    const bool same_file = identity_known && st.st_ino == ino &&
                           st.st_mtim.tv_sec == mtime.tv_sec && st.st_mtim.tv_nsec == mtime.tv_nsec;
    if (!same_file && crcs.empty()) {
      // Changed on disk since it was verified: check again what this read touches.
      std::lock_guard lock(mu_);
      auto it = entries_.find(ref.id);
      if (it != entries_.end() && it->second.generation == generation) {
        crcs = it->second.crcs;
        verified.assign(crcs.size(), false);
      }
    } else if (!same_file) {
      verified.assign(crcs.size(), false);
    }
    if (crcs.empty()) {
      if (out.size() < bs) {
        // A small read brings its whole checksum block into the page cache (one request, about
        // the cost of the small one): random reads after a direct sequential read, which left
        // the page cache cold, then hit it from the second read of a block on.
        const uint64_t begin = offset / bs * bs;
        const uint64_t len = std::min(bs, data_len - begin);
        ::posix_fadvise(fd->get(), static_cast<off_t>(header_len + begin), static_cast<off_t>(len),
                        POSIX_FADV_WILLNEED);
      }
      auto n = ReadData(ref.id, *fd, out, header_len + offset);
      if (!n || *n != out.size()) {
        outcome = Outcome::kCorrupt;
        why = "short read";
      }
    } else {
      first_block = offset / bs;
      last_block = out.empty() ? first_block : (offset + out.size() - 1) / bs;
      const uint64_t begin = first_block * bs;
      const uint64_t end = std::min((last_block + 1) * bs, data_len);
      // A read of whole blocks (the usual FUSE read) is verified in place; otherwise the
      // blocks it touches go through a scratch buffer.
      const bool in_place = offset == begin && offset + out.size() == end;
      std::unique_ptr<Buffer> scratch;
      std::span<std::byte> blocks = out;
      if (!in_place) {
        scratch = std::make_unique<Buffer>(end - begin);
        blocks = scratch->span();
      }
      auto n = ReadData(ref.id, *fd, blocks, header_len + begin);
      if (!n || *n != blocks.size()) {
        outcome = Outcome::kCorrupt;
        why = "short read";
      } else {
        for (uint64_t b = first_block; b <= last_block && outcome == Outcome::kServed; ++b) {
          const uint64_t b_begin = b * bs - begin;
          const uint64_t b_len = std::min(bs, data_len - b * bs);
          if (b >= crcs.size() || Crc32c(blocks.subspan(b_begin, b_len)) != crcs[b]) {
            outcome = Outcome::kCorrupt;
            why = "checksum mismatch in block " + std::to_string(b);
          }
        }
        if (outcome == Outcome::kServed && !in_place) {
          std::memcpy(out.data(), blocks.data() + (offset - begin), out.size());
        }
      }
    }
  }

  std::lock_guard lock(mu_);
  auto it = entries_.find(ref.id);
  const bool current = it != entries_.end() && it->second.generation == generation;
  if (current) it->second.pins--;
  if (outcome == Outcome::kServed) {
    if (current && opened_here && !it->second.fd) KeepFdLocked(it->second, ref.id, std::move(fd));
    if (current && !crcs.empty()) {
      Entry& e = it->second;
      if (!e.identity_known || e.ino != st.st_ino || e.mtime.tv_sec != st.st_mtim.tv_sec ||
          e.mtime.tv_nsec != st.st_mtim.tv_nsec) {
        e.verified.assign(e.crcs.size(), false);
      }
      e.identity_known = true;
      e.ino = st.st_ino;
      e.mtime = st.st_mtim;
      for (uint64_t b = first_block; b <= last_block && b < e.verified.size(); ++b) {
        e.verified[b] = true;
      }
    }
    return true;
  }
  if (outcome == Outcome::kCorrupt) {
    counters_.corrupt_chunks++;
    spdlog::warn("cache: discarding chunk {} of '{}': {}; fetching it again", ref.id.index,
                 std::string(ref.path), why);
  }
  if (current) EraseLocked(it, /*evicted=*/false);
  return false;
}

Result<std::shared_ptr<const ChunkStore::Buffer>> ChunkStore::Download(
    const ChunkRef& ref, const std::shared_ptr<Fill>& fill, uint64_t generation, const Fetch& fetch,
    bool prefetch) {
  std::shared_ptr<Buffer> buffer;
  Status fetched = CatchAll("cache: chunk buffer", [&]() -> Status {
    buffer = TakeBuffer(ref.length);
    return fetch(buffer->span());
  });
  if (!fetched) {
    FailFill(ref, fill, generation, fetched);
    return fetched.error();
  }
  Publish(ref, fill, generation, buffer, prefetch);
  return std::shared_ptr<const Buffer>(buffer);
}

void ChunkStore::FailFill(const ChunkRef& ref, const std::shared_ptr<Fill>& fill,
                          uint64_t generation, const Status& error) {
  counters_.fetch_errors++;
  std::lock_guard lock(mu_);
  fill->done = true;
  fill->status = error;
  auto it = entries_.find(ref.id);
  if (it != entries_.end() && it->second.generation == generation) EraseLocked(it, false);
  fill_cv_.notify_all();
}

void ChunkStore::Publish(const ChunkRef& ref, const std::shared_ptr<Fill>& fill,
                         uint64_t generation, const std::shared_ptr<Buffer>& buffer,
                         bool prefetch) {
  counters_.bytes_from_lower += static_cast<int64_t>(ref.length);
  if (prefetch) counters_.prefetches++;
  {
    std::lock_guard lock(mu_);
    fill->data = buffer;
    fill->has_data = true;
  }
  fill_cv_.notify_all();

  // Read-ahead hands the disk write to the writer thread, so its next fetch starts at once
  // (the lower sees an uninterrupted stream); readers meanwhile copy from the buffer.
  if (prefetch && !degraded_) {
    std::unique_lock lock(write_mu_);
    if (writer_.joinable() && !writer_stop_ && write_queue_.size() < kMaxQueuedWrites) {
      PendingWrite w;
      w.id = ref.id;
      w.length = ref.length;
      w.chunk_size = ref.chunk_size;
      w.path = std::string(ref.path);
      w.version = std::string(ref.version);
      w.fill = fill;
      w.generation = generation;
      w.buffer = buffer;
      write_queue_.push_back(std::move(w));
      lock.unlock();
      write_cv_.notify_all();
      return;
    }
  }
  Commit(ref, fill, generation, *buffer, prefetch);
}

void ChunkStore::Commit(const ChunkRef& ref, const std::shared_ptr<Fill>& fill, uint64_t generation,
                        const Buffer& data, bool prefetch) {
  const Buffer* buffer = &data;
  // Keep it: reserve room, write under tmp/, rename into chunks/ (under mu_, so an eviction or
  // an invalidation never races the rename).
  const uint64_t header_len = HeaderLen(ref);
  const uint64_t disk_bytes = header_len + RoundUp(ref.length, kDiskBlock);
  const std::string hex = KeyHex(ref.id.file);
  const std::string subdir = hex.substr(0, 2);
  bool keep = !degraded_;
  if (keep) {
    std::lock_guard lock(mu_);
    auto it = entries_.find(ref.id);
    const uint64_t need = disk_bytes + (subdirs_.count(subdir) ? 0 : kDiskBlock);
    if (it == entries_.end() || it->second.generation != generation || !MakeRoomLocked(need)) {
      keep = false;
    } else {
      it->second.disk_bytes = disk_bytes;
      used_bytes_ += disk_bytes;
    }
  }
  std::string tmp;
  std::vector<uint32_t> crcs;
  if (keep) {
    auto written = WriteTempChunk(ref, *buffer, header_len, crcs);
    if (!written) {
      WarnDisk(written.error().message());
      keep = false;
    } else {
      tmp = std::move(*written);
    }
  }

  std::lock_guard lock(mu_);
  auto it = entries_.find(ref.id);
  const bool current = it != entries_.end() && it->second.generation == generation;
  if (keep && current && !subdirs_.count(subdir)) {
    const std::string sub_path = options_.dir + "/chunks/" + subdir;
    if (::mkdir(sub_path.c_str(), 0755) == 0 || errno == EEXIST) {
      subdirs_.insert(subdir);
      used_bytes_ += kDiskBlock;
    } else {
      WarnDisk("cannot create " + sub_path + ": " + ErrnoText(errno));
      keep = false;
    }
  }
  if (keep && current && ::rename(tmp.c_str(), ChunkPath(ref.id).c_str()) != 0) {
    WarnDisk("cannot rename a chunk into " + ChunkPath(ref.id) + ": " + ErrnoText(errno));
    keep = false;
  }
  if (keep && current) {
    Entry& e = it->second;
    e.state = Entry::State::kReady;
    e.fill.reset();
    e.data_len = ref.length;
    e.header_len = static_cast<uint32_t>(header_len);
    e.crcs = std::move(crcs);
    e.verified.assign(e.crcs.size(), true);  // written from the bytes in memory
    e.identity_known = false;                // the first read records the file's identity
    e.prefetched_unread = prefetch && !fill->consumed;
    e.lru_it = lru_.insert(lru_.end(), ref.id);
    e.in_lru = true;
  } else {
    if (!tmp.empty()) ::unlink(tmp.c_str());
    if (current) EraseLocked(it, /*evicted=*/false);  // returns the reserved bytes
  }
  fill->done = true;
  fill_cv_.notify_all();
}

void ChunkStore::RunWriter() {
  for (;;) {
    PendingWrite w;
    {
      std::unique_lock lock(write_mu_);
      write_cv_.wait(lock, [&] { return writer_stop_ || !write_queue_.empty(); });
      if (write_queue_.empty()) return;  // stopping, and everything is written
      w = std::move(write_queue_.front());
      write_queue_.pop_front();
      writing_ = true;
    }
    ChunkRef ref;
    ref.id = w.id;
    ref.length = w.length;
    ref.chunk_size = w.chunk_size;
    ref.path = w.path;
    ref.version = w.version;
    Commit(ref, w.fill, w.generation, *w.buffer, /*prefetch=*/true);
    {
      std::lock_guard lock(write_mu_);
      writing_ = false;
    }
    write_cv_.notify_all();
  }
}

void ChunkStore::WaitForWrites() {
  std::unique_lock lock(write_mu_);
  write_cv_.wait(lock, [&] { return write_queue_.empty() && !writing_; });
}

Result<size_t> ChunkStore::Read(const ChunkRef& ref, uint64_t offset, std::span<std::byte> out,
                                const Fetch& fetch, LentBytes* lend) {
  if (offset + out.size() > ref.length) {
    return Err(EINVAL, "cache: read of [" + std::to_string(offset) + ", +" +
                           std::to_string(out.size()) + ") outside chunk of " +
                           std::to_string(ref.length) + " bytes");
  }
  // The reader's bytes from a buffer in memory: lent when the caller takes them so.
  auto serve = [&](const std::shared_ptr<const Buffer>& data) -> size_t {
    if (lend) {
      lend->bytes = {data->bytes.get() + offset, out.size()};
      lend->owner = data;
    } else {
      std::memcpy(out.data(), data->bytes.get() + offset, out.size());
    }
    return out.size();
  };
  // A chunk that fails verification is dropped and fetched again; twice in a row means the
  // folder itself is failing, so the last attempt bypasses it.
  for (int attempt = 0; attempt < 3; ++attempt) {
    std::unique_lock lock(mu_);
    auto it = entries_.find(ref.id);
    if (it != entries_.end() && it->second.state == Entry::State::kReady && it->second.staged) {
      // Staged by read-ahead: wait for the load in flight, then copy from memory.
      std::shared_ptr<Fill> staged = it->second.staged;
      fill_cv_.wait(lock, [&] { return staged->done; });
      if (!staged->has_data) continue;  // the load failed (and dropped the copy or the chunk)
      std::shared_ptr<const Buffer> data = staged->data;
      auto again = entries_.find(ref.id);
      if (again != entries_.end() && again->second.staged == staged) {
        Entry& e = again->second;
        e.prefetched_unread = false;
        e.staged_read = true;
        if (e.in_lru) lru_.splice(lru_.end(), lru_, e.lru_it);
        // A sequential reader is done with the chunk once it read its end.
        if (offset + out.size() == ref.length) UnstageLocked(e);
      }
      lock.unlock();
      counters_.hits++;
      return serve(data);
    }
    if (it != entries_.end() && it->second.state == Entry::State::kReady) {
      lock.unlock();
      HFVFS_ASSIGN_OR_RETURN(bool served, ReadCached(ref, offset, out));
      if (served) {
        counters_.hits++;
        return out.size();
      }
      continue;
    }
    if (it != entries_.end()) {  // filling: wait for the downloader
      std::shared_ptr<Fill> fill = it->second.fill;
      counters_.fill_waits++;
      fill_cv_.wait(lock, [&] { return fill->has_data || fill->done; });
      if (!fill->has_data) return fill->status.error();
      fill->consumed = true;
      std::shared_ptr<const Buffer> data = fill->data;
      lock.unlock();
      return serve(data);
    }
    if (attempt == 2) break;
    uint64_t generation = 0;
    std::shared_ptr<Fill> fill = ClaimLocked(ref, generation);
    lock.unlock();
    counters_.misses++;
    HFVFS_ASSIGN_OR_RETURN(auto data, Download(ref, fill, generation, fetch, false));
    return serve(data);
  }
  Buffer direct(ref.length);
  HFVFS_RETURN_IF_ERROR(fetch(direct.span()));
  counters_.bytes_from_lower += static_cast<int64_t>(ref.length);
  std::memcpy(out.data(), direct.bytes.get() + offset, out.size());
  return out.size();
}

Status ChunkStore::Prefetch(const ChunkRef& ref, const Fetch& fetch) {
  std::shared_ptr<Fill> fill;
  uint64_t generation = 0;
  {
    std::unique_lock lock(mu_);
    auto it = entries_.find(ref.id);
    if (it != entries_.end()) {
      const bool ready = it->second.state == Entry::State::kReady;
      lock.unlock();
      if (ready) Advise(ref.id);
      return Ok();
    }
    fill = ClaimLocked(ref, generation);
  }
  auto data = Download(ref, fill, generation, fetch, true);
  if (!data) return data.error();
  return Ok();
}

Result<bool> ChunkStore::FillForReader(const ChunkRef& ref, const Fetch& fetch) {
  std::shared_ptr<Fill> fill;
  uint64_t generation = 0;
  {
    std::lock_guard lock(mu_);
    if (entries_.count(ref.id)) return false;
    fill = ClaimLocked(ref, generation);
    fill->consumed = true;  // its reader has its bytes: not read-ahead waste
  }
  counters_.misses++;
  HFVFS_RETURN_IF_ERROR(Download(ref, fill, generation, fetch, false));
  return true;
}

std::shared_ptr<ChunkStore::Fill> ChunkStore::ClaimLocked(const ChunkRef& ref,
                                                          uint64_t& generation) {
  auto fill = std::make_shared<Fill>();
  Entry entry;
  entry.generation = generation = next_generation_++;
  entry.fill = fill;
  entry.path = std::string(ref.path);
  path_chunks_[entry.path].insert(ref.id);
  entries_.emplace(ref.id, std::move(entry));
  return fill;
}

}  // namespace hfvfs::cache

namespace hfvfs::cache {

Status ChunkStore::PrefetchRun(std::span<const ChunkRef> refs, const RangeFetch& fetch) {
  struct Claimed {
    const ChunkRef* ref;
    std::shared_ptr<Fill> fill;
    uint64_t generation;
  };
  std::vector<Claimed> claimed;
  std::vector<ChunkId> cached;
  {
    std::lock_guard lock(mu_);
    for (const ChunkRef& ref : refs) {
      auto it = entries_.find(ref.id);
      if (it != entries_.end()) {
        if (it->second.state == Entry::State::kReady) cached.push_back(ref.id);
        continue;
      }
      uint64_t generation = 0;
      std::shared_ptr<Fill> fill = ClaimLocked(ref, generation);
      claimed.push_back({&ref, std::move(fill), generation});
    }
  }
  for (const ChunkId& id : cached) Advise(id);
  Status result = Ok();
  for (size_t begin = 0; begin < claimed.size();) {
    size_t end = begin + 1;
    uint64_t total = claimed[begin].ref->length;
    while (end < claimed.size() &&
           claimed[end].ref->id.index == claimed[end - 1].ref->id.index + 1) {
      total += claimed[end].ref->length;
      ++end;
    }
    std::shared_ptr<Buffer> whole;
    Status fetched = CatchAll("cache: read-ahead buffer", [&]() -> Status {
      whole = TakeBuffer(total);
      return fetch(claimed[begin].ref->id.index, whole->span());
    });
    uint64_t offset = 0;
    for (size_t k = begin; k < end; ++k) {
      const Claimed& c = claimed[k];
      if (!fetched) {
        FailFill(*c.ref, c.fill, c.generation, fetched);
        continue;
      }
      auto view = std::make_shared<Buffer>(whole, offset, c.ref->length);
      offset += c.ref->length;
      Publish(*c.ref, c.fill, c.generation, view, /*prefetch=*/true);
    }
    if (!fetched && result) result = fetched;
    begin = end;
  }
  return result;
}

}  // namespace hfvfs::cache
