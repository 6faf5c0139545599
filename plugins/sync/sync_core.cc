#include "sync_core.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>

#include <spdlog/spdlog.h>

#include "hfvfs/path.h"

namespace hfvfs::sync {
namespace {

constexpr size_t kMaxPendingChanges = 10000;
constexpr size_t kMaxSnapshots = 20000;
constexpr size_t kMaxListings = 4096;
// Files uploaded at once (each by its own thread; one upload per file).
constexpr size_t kUploaders = 4;
// Files up to this size are journaled with their content in the record: one fdatasync of the
// journal (shared with concurrent closes) instead of three (data, its folder, the journal).
constexpr uint64_t kInlineMax = 16 << 10;

Error SysErr(int e, const std::string& what) {
  return Err(e ? e : EIO, "sync: " + what + ": " + std::strerror(e));
}

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Status PwriteAll(int fd, const std::byte* data, size_t len, uint64_t off) {
  size_t done = 0;
  while (done < len) {
    ssize_t n = ::pwrite(fd, data + done, len - done, static_cast<off_t>(off + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return SysErr(errno, "write to staging");
    }
    done += static_cast<size_t>(n);
  }
  return Ok();
}

// Reads up to len bytes; fewer only at the end of the staging file.
Result<size_t> PreadAll(int fd, std::byte* data, size_t len, uint64_t off) {
  size_t done = 0;
  while (done < len) {
    ssize_t n = ::pread(fd, data + done, len - done, static_cast<off_t>(off + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return SysErr(errno, "read from staging");
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return done;
}

Status FsyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return SysErr(errno, "open " + dir);
  int rc = ::fsync(fd);
  int e = errno;
  ::close(fd);
  if (rc != 0) return SysErr(e, "fsync " + dir);
  return Ok();
}

std::string Fingerprint(const Attr& a) {
  char kind = a.is_dir() ? 'd' : a.is_symlink() ? 'l' : 'f';
  if (a.is_dir()) return std::string(1, kind);
  if (!a.version.empty()) return std::string(1, kind) + a.version;
  return std::string(1, kind) + std::to_string(a.size) + ":" + std::to_string(a.mtime_ns);
}

std::string UtcStamp() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

// A file open on a staged entry.
class SyncFile : public File {
 public:
  SyncFile(std::shared_ptr<SyncCore> core, std::shared_ptr<Staged> e, bool writable)
      : core_(std::move(core)), e_(std::move(e)), writable_(writable) {}
  ~SyncFile() override {
    if (!closed_) (void)core_->CloseStaged(e_);
  }

  Result<size_t> read(uint64_t offset, std::span<std::byte> buf) override {
    return core_->ReadStaged(*e_, offset, buf);
  }
  Result<size_t> write(uint64_t offset, std::span<const std::byte> data) override {
    if (!writable_) return Err(EBADF, "sync: file not open for writing");
    return core_->WriteStaged(*e_, offset, data);
  }
  Status truncate(uint64_t size) override {
    if (!writable_) return Err(EBADF, "sync: file not open for writing");
    return core_->TruncateStaged(*e_, size);
  }
  Status flush() override { return core_->FlushStaged(*e_); }
  Status fsync(bool) override { return core_->FsyncStaged(*e_); }
  Status close() override {
    closed_ = true;
    return core_->CloseStaged(e_);
  }
  Result<Attr> stat() override { return core_->AttrOf(*e_); }

 private:
  std::shared_ptr<SyncCore> core_;
  std::shared_ptr<Staged> e_;
  bool writable_;
  bool closed_ = false;
};

// The journal's S record of a staged file (its content, if inline, is added by the caller).
JournalRecord StagedRecord(const Staged& e) {
  JournalRecord r;
  r.op = JournalRecord::Op::kStaged;
  r.id = e.id;
  r.mode = e.mode;
  r.base_exists = e.base_exists;
  r.base_version = e.base_version;
  r.path = e.path;
  return r;
}

}  // namespace

Staged::~Staged() {
  if (fd >= 0) ::close(fd);
}

SyncCore::SyncCore(std::shared_ptr<Layer> lower, Host& host, SyncOptions options)
    : lower_(std::move(lower)), host_(host), opt_(std::move(options)) {}

SyncCore::~SyncCore() {
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

Capabilities SyncCore::capabilities() const {
  Capabilities c = lower_->capabilities();
  if (c.writable) {
    c.random_write = true;
    c.rename = true;  // staged files are renamed here; others below
    c.atomic_rename = false;
  }
  if (opt_.poll_interval.count() > 0) c.changes = true;
  return c;
}

std::shared_ptr<Staged> SyncCore::FindLocked(const std::string& path) const {
  auto it = staged_.find(path);
  return it == staged_.end() ? nullptr : it->second;
}

std::string SyncCore::DataPath(uint64_t id) const { return dir_ + "/data/" + std::to_string(id); }

// ---------------------------------------------------------------------------------------------
// start / shutdown

Status SyncCore::Start() {
  std::string mount_id =
      opt_.staging_name.empty() ? std::string(host_.mount_id()) : opt_.staging_name;
  if (mount_id.empty()) mount_id = "default";
  dir_ = opt_.staging_dir + "/" + mount_id;
  std::error_code ec;
  std::filesystem::create_directories(dir_ + "/data", ec);
  if (ec)
    return Err(ec.value(), "sync: cannot create staging folder " + dir_ + ": " + ec.message());
  std::string lock_path = dir_ + "/lock";
  lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd_ < 0) return SysErr(errno, "open " + lock_path);
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    return Err(EBUSY, "sync: staging folder " + dir_ +
                          " is in use by another mount of the same spec (lock " + lock_path + ")");
  }
  HFVFS_ASSIGN_OR_RETURN(journal_, Journal::Open(dir_));
  HFVFS_RETURN_IF_ERROR(lower_->start());

  // Replay: every live S record becomes a dirty staged file, due for upload at once; it is
  // served from staging until it is uploaded, so no path concerned shows older content.
  std::vector<JournalRecord> live = journal_->Live();
  std::set<uint64_t> referenced;
  std::vector<uint64_t> retire;
  size_t files = 0, removals = 0;
  {
    std::lock_guard lock(mu_);
    auto now = Clock::now();
    for (const JournalRecord& r : live) {
      if (r.op == JournalRecord::Op::kRemove) {
        if (pending_removes_.count(r.path)) retire.push_back(pending_removes_[r.path]);
        pending_removes_[r.path] = r.seq;
        ++removals;
        continue;
      }
      int fd = -1;
      if (r.has_content) {
        // The record holds the bytes; the staging file may be missing or older.
        fd = ::open(DataPath(r.id).c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd >= 0 && !PwriteAll(fd, reinterpret_cast<const std::byte*>(r.content.data()),
                                  r.content.size(), 0)) {
          ::close(fd);
          fd = -1;
        }
      } else {
        fd = ::open(DataPath(r.id).c_str(), O_RDWR | O_CLOEXEC);
      }
      if (fd < 0) {
        spdlog::error("sync: journal names {} for '{}' but it is missing ({}); skipped",
                      DataPath(r.id), r.path, std::strerror(errno));
        retire.push_back(r.seq);
        continue;
      }
      struct stat st {};
      ::fstat(fd, &st);
      auto e = std::make_shared<Staged>();
      e->state = Staged::State::kReady;
      e->path = r.path;
      e->id = r.id;
      e->fd = fd;
      e->size = static_cast<uint64_t>(st.st_size);
      e->mode = r.mode ? r.mode : 0644;
      e->mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
      e->base_exists = r.base_exists;
      e->base_version = r.base_version;
      e->generation = 1;
      e->uploaded_generation = 0;
      e->journal_seq = r.seq;
      e->journal_inline = r.has_content;
      e->journaled_generation = e->generation;
      e->closed_since_dirty = true;
      e->first_dirty = now - opt_.flush_max_window;
      e->last_change = now - opt_.flush_debounce;
      auto old = staged_.find(r.path);
      if (old != staged_.end()) retire.push_back(old->second->journal_seq);  // older record
      staged_[r.path] = e;
      referenced.insert(r.id);
      next_id_ = std::max(next_id_, r.id + 1);
      ++files;
    }
    // A path both staged and pending removal: the staged content is newer (S retires X when
    // written, so this only follows a torn sequence); keep the content.
    for (auto it = pending_removes_.begin(); it != pending_removes_.end();) {
      if (staged_.count(it->first)) {
        retire.push_back(it->second);
        it = pending_removes_.erase(it);
      } else {
        ++it;
      }
    }
  }
  if (!retire.empty()) HFVFS_RETURN_IF_ERROR(journal_->Commit({}, retire));
  // Staging files no live record names are leftovers of handles open at a crash (never
  // accepted by a close) or of entries already uploaded.
  for (const auto& de : std::filesystem::directory_iterator(dir_ + "/data", ec)) {
    uint64_t id = 0;
    try {
      id = std::stoull(de.path().filename().string());
    } catch (...) {
      continue;
    }
    next_id_ = std::max(next_id_, id + 1);
    if (!referenced.count(id)) std::filesystem::remove(de.path(), ec);
  }
  replayed_ = static_cast<int64_t>(files);
  if (files || removals) {
    spdlog::info(
        "sync: journal {}: replaying {} staged file(s) and {} removal(s) left by the "
        "last mount",
        dir_ + "/journal", files, removals);
  }
  {
    std::lock_guard lock(mu_);
    started_ = true;
    workers_running_ = static_cast<int>(kUploaders) + (opt_.poll_interval.count() > 0 ? 1 : 0);
  }
  auto self = shared_from_this();
  for (size_t i = 0; i < kUploaders; ++i) {
    flushers_.emplace_back([self] { self->FlusherLoop(); });
  }
  if (opt_.poll_interval.count() > 0) poller_ = std::thread([self] { self->PollerLoop(); });
  return Ok();
}

Status SyncCore::Shutdown(Clock::time_point deadline) {
  auto own = std::min(deadline, Clock::now() + opt_.shutdown_timeout);
  Status st = FlushAll(own);
  size_t left_files = 0, left_removes = 0;
  uint64_t left_bytes = 0;
  {
    std::lock_guard lock(mu_);
    for (auto& [p, e] : staged_) {
      if (e->state == Staged::State::kReady && !e->removed && e->dirty()) {
        ++left_files;
        left_bytes += e->size;
      }
    }
    left_removes = pending_removes_.size();
    // Kept clean copies do not outlive the mount (start() removes unnamed staging files too).
    std::vector<std::shared_ptr<Staged>> kept;
    for (auto& [p, e] : staged_)
      if (KeptLocked(*e)) kept.push_back(e);
    for (const auto& e : kept) DropLocked(e);
  }
  if (left_files || left_removes) {
    spdlog::warn(
        "sync: stop: {} file(s) ({}) and {} removal(s) not uploaded within the "
        "shutdown timeout; they stay in {} for the next mount of this spec",
        left_files, left_bytes, left_removes, dir_ + "/journal");
  } else if (started_) {
    spdlog::info("sync: stop: everything is uploaded");
  }
  StopWorkers();
  Status lower_st = lower_->shutdown(deadline);
  if (!st) return st;
  return lower_st;
}

void SyncCore::StopWorkers() {
  std::unique_lock lock(mu_);
  if (stopping_ && flushers_.empty() && !poller_.joinable()) return;
  stopping_ = true;
  cv_.notify_all();
  // A worker inside a lower call (a hung store) cannot be interrupted; it is left behind
  // holding its own reference to this core.
  cv_.wait_for(lock, std::chrono::seconds(2),
               [&] { return workers_running_ == 0 && fills_in_flight_ == 0; });
  bool all_left = workers_running_ == 0;
  lock.unlock();
  std::vector<std::thread*> threads{&poller_};
  for (std::thread& t : flushers_) threads.push_back(&t);
  for (std::thread* t : threads) {
    if (!t->joinable()) continue;
    if (all_left) {
      t->join();
    } else {
      t->detach();
    }
  }
  flushers_.clear();
}

Status SyncCore::FlushAll(Clock::time_point deadline) {
  std::unique_lock lock(mu_);
  if (!started_) return Ok();
  draining_ = true;
  int64_t failures_before = upload_failures_.load();
  cv_.notify_all();
  auto all_clean = [&] {
    if (!pending_removes_.empty()) return false;
    for (auto& [p, e] : staged_)
      if (e->state == Staged::State::kReady && !e->removed && e->dirty()) return false;
    return true;
  };
  bool done = cv_.wait_until(lock, deadline, all_clean);
  draining_ = false;
  if (done) return Ok();
  if (upload_failures_.load() != failures_before && last_error_code_ != 0) {
    return Err(last_error_code_, "sync: flush incomplete: " + last_error_);
  }
  return Err(ETIMEDOUT, "sync: flush incomplete at the deadline");
}

// ---------------------------------------------------------------------------------------------
// metadata

Attr SyncCore::AttrOfLocked(const Staged& e) const {
  Attr a;
  a.type = FileType::kFile;
  a.size = e.size;
  a.mtime_ns = e.mtime_ns;
  a.mode = e.mode;
  if (e.dirty() || e.base_version.empty()) {
    a.version = "sync:" + std::to_string(e.id) + ":" + std::to_string(e.generation);
  } else {
    a.version = e.base_version;
  }
  return a;
}

Attr SyncCore::AttrOf(Staged& e) {
  std::lock_guard lock(mu_);
  return AttrOfLocked(e);
}

void SyncCore::TouchedLocked(const std::string& path) {
  attr_cache_.erase(path);
  std::string parent(ParentPath(path));
  auto l = listed_.find(parent);
  if (l != listed_.end()) l->second.names[std::string(BaseName(path))] = std::nullopt;
  if (snapshots_.count(parent)) self_touched_.insert(path);
}

void SyncCore::ForgetListingsLocked(const std::string& dir) {
  for (auto it = listed_.begin(); it != listed_.end();) {
    it = IsUnder(it->first, dir) ? listed_.erase(it) : std::next(it);
  }
}

Result<Attr> SyncCore::StatBelow(const std::string& path) {
  if (opt_.metadata_ttl.count() > 0 && !path.empty()) {
    std::lock_guard lock(mu_);
    auto now = Clock::now();
    auto c = attr_cache_.find(path);
    if (c != attr_cache_.end()) {
      if (now < c->second.expires) return c->second.attr;
      attr_cache_.erase(c);
    }
    // A fresh listing of the parent answers without asking below: a name it lacks does not
    // exist (as of the listing, at most metadata_ttl ago); a name we changed is asked below.
    auto l = listed_.find(std::string(ParentPath(path)));
    if (l != listed_.end()) {
      if (now >= l->second.expires) {
        listed_.erase(l);
      } else {
        auto n = l->second.names.find(std::string(BaseName(path)));
        if (n == l->second.names.end()) {
          ++listing_hits_;
          return Err(ENOENT, "sync: no '" + path + "' (listed below)");
        }
        if (n->second) {
          ++listing_hits_;
          return *n->second;
        }
      }
    }
  }
  Result<Attr> r = lower_->stat(path);
  if (r && opt_.metadata_ttl.count() > 0) {
    std::lock_guard lock(mu_);
    auto s = staged_.find(path);
    if ((s == staged_.end() || KeptLocked(*s->second)) && !pending_removes_.count(path)) {
      attr_cache_[path] = CachedAttr{*r, Clock::now() + opt_.metadata_ttl};
    }
  }
  return r;
}

Result<Attr> SyncCore::Stat(const std::string& path) {
  RevalidateKept(path);
  {
    std::unique_lock lock(mu_);
    for (;;) {
      auto it = staged_.find(path);
      if (it == staged_.end()) break;
      if (it->second->state == Staged::State::kLoading) {
        cv_.wait(lock);
        continue;
      }
      return AttrOfLocked(*it->second);
    }
    if (pending_removes_.count(path)) return Err(ENOENT, "sync: '" + path + "' was removed");
  }
  return StatBelow(path);
}

Result<std::vector<DirEntry>> SyncCore::List(const std::string& dir) {
  {
    std::lock_guard lock(mu_);
    if (staged_.count(dir)) return Err(ENOTDIR, "sync: '" + dir + "' is a file");
  }
  // A staged file uploaded and dropped while the listing below was taken would be in neither:
  // list again then (bounded; uploads are far slower than listings).
  std::vector<DirEntry> below;
  std::unique_lock lock(mu_, std::defer_lock);
  for (int attempt = 0;; ++attempt) {
    uint64_t drops;
    {
      std::lock_guard l(mu_);
      drops = drops_;
    }
    HFVFS_ASSIGN_OR_RETURN(below, lower_->list(dir));
    lock.lock();
    if (drops_ == drops || attempt >= 8) break;
    lock.unlock();
  }
  if (opt_.poll_interval.count() > 0) {
    lock.unlock();
    DiffListing(dir, below);
    lock.lock();
  }
  std::vector<DirEntry> out;
  if (opt_.metadata_ttl.count() > 0) {
    if (listed_.size() >= kMaxListings) listed_.clear();
    ListedDir& l = listed_[dir];
    l.names.clear();
    for (const DirEntry& de : below) l.names[de.name] = de.attr;
    l.expires = Clock::now() + opt_.metadata_ttl;
  }
  std::set<std::string> seen;
  for (DirEntry& de : below) {
    std::string path = JoinPath(dir, de.name);
    if (pending_removes_.count(path)) continue;
    auto it = staged_.find(path);
    if (it != staged_.end() && KeptLocked(*it->second) &&
        (de.attr.version.empty() || de.attr.version != it->second->base_version)) {
      DropLocked(it->second);  // changed below: the kept copy is out of date
      it = staged_.end();
    }
    if (it != staged_.end() && it->second->state == Staged::State::kReady) {
      de.attr = AttrOfLocked(*it->second);
    }
    seen.insert(de.name);
    out.push_back(std::move(de));
  }
  // Staged files not yet below. The map is ordered, so the children of `dir` are found by
  // scanning from its prefix.
  std::string prefix = dir.empty() ? "" : dir + "/";
  for (auto it = staged_.lower_bound(prefix); it != staged_.end(); ++it) {
    if (it->first.compare(0, prefix.size(), prefix) != 0) break;
    if (ParentPath(it->first) != dir) continue;
    if (it->second->state != Staged::State::kReady) continue;
    std::string name(BaseName(it->first));
    if (seen.count(name)) continue;
    out.push_back(DirEntry{name, AttrOfLocked(*it->second)});
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// staging

Status SyncCore::FillStaged(Staged& e, const std::string& path, StageHow how, uint32_t mode) {
  Result<Attr> below = how == StageHow::kExisting ? lower_->stat(path) : StatBelow(path);
  if (!below && below.code() != ENOENT) return below.error();
  if (how == StageHow::kExisting) {
    if (!below) return below.error();
    if (below->is_dir()) return Err(EISDIR, "sync: '" + path + "' is a directory");
    if (!below->is_file()) return Err(EINVAL, "sync: '" + path + "' is not a regular file");
  }
  bool exists = below.ok() && below->is_file();
  uint32_t m = exists && below->mode ? below->mode : mode;
  int fd = ::open(DataPath(e.id).c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return SysErr(errno, "create staging file " + DataPath(e.id));
  uint64_t size = 0;
  std::shared_ptr<Fill> fill;
  if (how == StageHow::kExisting && below->size > 0) {
    // The content is fetched lazily (struct Fill): the open only opens the source.
    Result<std::unique_ptr<File>> src = lower_->open(path, O_RDONLY);
    Status st = src ? Ok() : Status(src.error());
    if (st && ::ftruncate(fd, static_cast<off_t>(below->size)) != 0) {
      st = SysErr(errno, "size staging file " + DataPath(e.id));
    }
    if (!st) {
      ::close(fd);
      ::unlink(DataPath(e.id).c_str());
      return st.error().With("sync: staging '" + path + "'");
    }
    size = below->size;
    fill = std::make_shared<Fill>();
    fill->path = path;
    fill->base_size = size;
    fill->final.Add(size, UINT64_MAX);  // bytes past the end are never fetched
    fill->source = std::make_shared<Fill::Source>();
    fill->source->file = std::move(*src);
  }
  std::lock_guard lock(mu_);
  e.fd = fd;
  e.fill = std::move(fill);
  e.size = size;
  e.mode = m & 07777;
  e.mtime_ns = how == StageHow::kExisting ? below->mtime_ns : NowNs();
  e.base_exists = exists;
  e.base_version = exists ? below->version : "";
  return Ok();
}

Result<std::shared_ptr<Staged>> SyncCore::Stage(const std::string& path, StageHow how,
                                                uint32_t mode) {
  std::shared_ptr<Staged> e;
  {
    std::unique_lock lock(mu_);
    for (;;) {
      auto it = staged_.find(path);
      if (it == staged_.end()) break;
      if (it->second->state == Staged::State::kLoading) {
        cv_.wait(lock);
        continue;
      }
      ++it->second->open_handles;
      it->second->last_used = Clock::now();
      return it->second;
    }
    e = std::make_shared<Staged>();
    e->path = path;
    e->id = next_id_++;
    e->last_used = Clock::now();
    staged_[path] = e;
  }
  Status st = FillStaged(*e, path, how, mode);
  // A new or truncated file replaces whatever is below: a pending removal of the name is
  // retired in the same journal write as the new record (see RetireRemoveHeld).
  std::unique_lock<std::mutex> rm;
  if (st && how != StageHow::kExisting) {
    bool has_remove;
    {
      std::lock_guard lock(mu_);
      has_remove = pending_removes_.count(path) > 0;
    }
    if (has_remove) rm = std::unique_lock(removes_mu_);
  }
  {
    std::lock_guard lock(mu_);
    if (st && how != StageHow::kExisting) {
      e->state = Staged::State::kReady;
      MarkDirtyLocked(*e);
      // Journaled at its close(); now only when a pending removal of the name must be
      // retired in the same write (no upload of the new file may race that removal).
      if (rm.owns_lock()) st = JournalDirtyLocked(*e);
    }
    if (!st) {
      if (FindLocked(path) == e) staged_.erase(path);
      e->state = Staged::State::kFailed;
      e->removed = true;
      if (e->fd >= 0) ::unlink(DataPath(e->id).c_str());
      cv_.notify_all();
      return st.error();
    }
    e->state = Staged::State::kReady;
    ++e->open_handles;
    TouchedLocked(path);
    cv_.notify_all();
  }
  if (e->fill) StartFetcher(*e);
  return e;
}

// ---------------------------------------------------------------------------------------------
// lazy fill

void SyncCore::StartFetcher(Staged& e) {
  Fill& f = *e.fill;
  {
    std::lock_guard lock(f.mu);
    if (f.done || f.fetcher_running) return;
    f.fetcher_running = true;
    f.error.reset();
  }
  {
    std::lock_guard lock(mu_);
    ++fills_in_flight_;
  }
  std::thread([self = shared_from_this(), entry = e.shared_from_this()] {
    self->FetcherLoop(entry);
  }).detach();
}

void SyncCore::FetcherLoop(std::shared_ptr<Staged> e) {
  Fill& f = *e->fill;
  uint64_t cursor = 0;
  Status st = Ok();
  bool cancelled = false;
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (stopping_ || e->removed) {
        cancelled = true;
        st = Err(ECANCELED, "sync: the fetch of '" + f.path + "' was stopped");
        break;
      }
    }
    uint64_t begin, end;
    {
      std::lock_guard lock(f.mu);
      auto gap = f.final.FirstGap(cursor, f.base_size);
      if (gap.first >= f.base_size) gap = f.final.FirstGap(0, f.base_size);
      if (gap.first >= f.base_size) break;  // complete
      begin = gap.first;
      end = std::min<uint64_t>(gap.second, begin + opt_.upload_chunk);
    }
    st = FetchRange(*e, begin, end);
    if (!st) break;
    cursor = end;
  }
  std::shared_ptr<Fill::Source> source;  // closed (a lower call) after f.mu is released
  bool complete;
  {
    std::lock_guard lock(f.mu);
    f.fetcher_running = false;
    complete = f.final.Covers(0, f.base_size);
    if (complete) {
      f.done = true;
      source.swap(f.source);
    } else {
      f.error = st ? Err(EIO, "sync: the fetch of '" + f.path + "' stopped early") : st.error();
    }
    f.cv.notify_all();
  }
  if (!complete && !cancelled) {
    spdlog::warn("sync: fetching '{}' from below failed: {}; retried when it is needed", f.path,
                 st.error().message());
  }
  source.reset();
  std::lock_guard lock(mu_);
  if (!complete && !cancelled) NoteErrorLocked(st.error().With("sync: fetch '" + f.path + "'"));
  --fills_in_flight_;
  cv_.notify_all();
}

Status SyncCore::FetchRange(Staged& e, uint64_t begin, uint64_t end) {
  Fill& f = *e.fill;
  end = std::min(end, f.base_size);
  std::shared_ptr<Fill::Source> src;
  {
    std::lock_guard lock(f.mu);
    if (f.final.Covers(begin, end)) return Ok();
    src = f.source;
  }
  if (!src) return Ok();  // complete meanwhile (the source is let go only then)
  std::vector<std::byte> buf(end - begin);
  HFVFS_ASSIGN_OR_RETURN(size_t n, src->file->read(begin, buf));
  if (n < buf.size()) {
    return Err(EIO, "sync: '" + f.path + "' below is shorter than when it was staged (" +
                        std::to_string(f.base_size) + " bytes): changed meanwhile?");
  }
  bytes_fetched_ += static_cast<int64_t>(n);
  // Exclusive: no write or truncate runs meanwhile, so the gaps stay gaps until Add.
  std::unique_lock io(e.io_mu);
  std::vector<std::pair<uint64_t, uint64_t>> gaps;
  {
    std::lock_guard lock(f.mu);
    for (uint64_t at = begin; at < end;) {
      auto gap = f.final.FirstGap(at, end);
      if (gap.first >= end) break;
      gaps.push_back(gap);
      at = gap.second;
    }
  }
  for (const auto& [gb, ge] : gaps) {
    HFVFS_RETURN_IF_ERROR(PwriteAll(e.fd, buf.data() + (gb - begin), ge - gb, gb));
  }
  std::lock_guard lock(f.mu);
  f.final.Add(begin, end);
  f.cv.notify_all();
  return Ok();
}

Status SyncCore::WaitFilled(Staged& e) {
  if (e.filled()) return Ok();
  StartFetcher(e);  // a new attempt when the last one failed
  Fill& f = *e.fill;
  std::unique_lock lock(f.mu);
  f.cv.wait(lock, [&] { return f.done.load() || !f.fetcher_running; });
  if (f.done) return Ok();
  Error err = f.error ? *f.error : Err(EIO, "sync: the fetch of '" + f.path + "' failed");
  return err.With("sync: the content of '" + f.path +
                  "' could not be fetched from below; the writes stay staged");
}

void SyncCore::MarkDirtyLocked(Staged& e) {
  auto now = Clock::now();
  if (!e.dirty()) e.first_dirty = now;
  ++e.generation;
  e.last_change = now;
  e.closed_since_dirty = false;
}

Status SyncCore::JournalDirtyLocked(Staged& e) {
  if (!e.dirty() || e.journal_seq != 0 || e.removed) return Ok();
  // The journal names complete files only (callers wait with WaitFilled before taking mu_).
  if (!e.filled()) return Err(EIO, "sync: '" + e.path + "' is not fetched completely yet");
  if (e.size > 0 && ::fdatasync(e.fd) != 0) return SysErr(errno, "fdatasync " + DataPath(e.id));
  // The staging file's own name must survive a power loss too, before the record names it.
  HFVFS_RETURN_IF_ERROR(FsyncDir(dir_ + "/data"));
  JournalRecord r = StagedRecord(e);
  std::vector<uint64_t> retire;
  auto rm = pending_removes_.find(e.path);
  if (rm != pending_removes_.end()) retire.push_back(rm->second);
  HFVFS_RETURN_IF_ERROR(journal_->Commit({&r}, retire));
  if (rm != pending_removes_.end()) pending_removes_.erase(rm);
  e.journal_seq = r.seq;
  e.journal_inline = false;
  e.journaled_generation = e.generation;
  return Ok();
}

Status SyncCore::JournalDirty(Staged& e) {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return !e.journaling; });
  if (e.removed || !e.dirty()) return Ok();
  if (e.journal_seq != 0 && e.journaled_generation == e.generation) {
    ++journal_skips_;  // a dup's close, or a flush then a release: already durable
    return Ok();
  }
  if (!e.filled()) return Err(EIO, "sync: '" + e.path + "' is not fetched completely yet");
  e.journaling = true;
  const uint64_t old_seq = e.journal_seq;
  const bool old_inline = e.journal_inline;
  JournalRecord r = StagedRecord(e);
  std::optional<uint64_t> remove_seq;
  if (auto rm = pending_removes_.find(e.path); rm != pending_removes_.end()) {
    remove_seq = rm->second;
  }
  lock.unlock();

  uint64_t gen = 0;
  bool write_record = false;
  Status st = Ok();
  {
    // Size and content stay put while io_mu is held shared (writes take it exclusive).
    std::shared_lock io(e.io_mu);
    uint64_t size;
    {
      std::lock_guard l(mu_);
      size = e.size;
      gen = e.generation;
    }
    if (size <= kInlineMax) {
      r.has_content = true;
      r.content.assign(size, '\0');
      Result<size_t> n = PreadAll(e.fd, reinterpret_cast<std::byte*>(r.content.data()), size, 0);
      if (!n) st = n.error();
      write_record = true;
    }
  }
  if (st && !r.has_content) {
    // Everything written before `gen` was read is covered by this fdatasync.
    if (::fdatasync(e.fd) != 0) st = SysErr(errno, "fdatasync " + DataPath(e.id));
    write_record = old_seq == 0 || old_inline;
    // The staging file's own name must survive a power loss too, before a record names it.
    if (st && write_record) st = FsyncDir(dir_ + "/data");
  }
  if (st && write_record) {
    std::vector<uint64_t> retire;
    if (old_seq) retire.push_back(old_seq);
    if (remove_seq) retire.push_back(*remove_seq);
    st = journal_->Commit({&r}, retire);  // durable; concurrent closes share its fdatasync
  }
  lock.lock();
  e.journaling = false;
  cv_.notify_all();
  HFVFS_RETURN_IF_ERROR(st);
  if (write_record) {
    e.journal_seq = r.seq;
    e.journal_inline = r.has_content;
    if (remove_seq) {
      auto it = pending_removes_.find(r.path);
      if (it != pending_removes_.end() && it->second == *remove_seq) pending_removes_.erase(it);
    }
  }
  e.journaled_generation = std::max(e.journaled_generation, gen);
  return Ok();
}

void SyncCore::MaybeDropLocked(const std::shared_ptr<Staged>& e) {
  if (e->open_handles > 0 || e->state != Staged::State::kReady) return;
  if (!e->removed && (e->dirty() || e->journal_seq != 0)) return;
  if (!e->removed && !e->stale && opt_.max_staging_size > 0 && e->filled()) {
    // Kept as a local copy: reads and re-opens for writing need not fetch it again.
    EvictLocked();
    return;
  }
  DropLocked(e);
}

bool SyncCore::KeptLocked(const Staged& e) const {
  return e.state == Staged::State::kReady && !e.removed && e.open_handles == 0 && !e.dirty() &&
         e.journal_seq == 0 && e.filled();
}

void SyncCore::EvictLocked() {
  if (opt_.max_staging_size == 0) return;
  uint64_t used = 0;
  std::vector<std::shared_ptr<Staged>> kept;
  for (const auto& [p, e] : staged_) {
    if (e->state != Staged::State::kReady || e->removed) continue;
    used += e->size;
    if (KeptLocked(*e)) kept.push_back(e);
  }
  if (used <= opt_.max_staging_size) return;
  std::sort(kept.begin(), kept.end(),
            [](const auto& a, const auto& b) { return a->last_used < b->last_used; });
  for (const auto& e : kept) {
    if (used <= opt_.max_staging_size) break;
    used -= e->size;
    DropLocked(e);
    ++evictions_;
  }
}

void SyncCore::DropKeptLocked(const std::string& path) {
  if (opt_.max_staging_size == 0) return;
  std::vector<std::shared_ptr<Staged>> kept;
  auto it = staged_.find(path);
  if (it != staged_.end() && KeptLocked(*it->second)) kept.push_back(it->second);
  std::string prefix = path.empty() ? "" : path + "/";
  for (it = staged_.lower_bound(prefix); it != staged_.end(); ++it) {
    if (it->first.compare(0, prefix.size(), prefix) != 0) break;
    if (KeptLocked(*it->second)) kept.push_back(it->second);
  }
  for (const auto& e : kept) DropLocked(e);
}

void SyncCore::RevalidateKept(const std::string& path) {
  if (opt_.max_staging_size == 0) return;
  std::shared_ptr<Staged> e;
  std::string base;
  {
    std::lock_guard lock(mu_);
    e = FindLocked(path);
    if (!e || !KeptLocked(*e)) return;
    base = e->base_version;
  }
  Result<Attr> below = StatBelow(path);
  if (below && below->is_file() && !base.empty() && below->version == base) return;
  if (!below && below.code() != ENOENT) return;  // cannot tell now: keep serving the copy
  std::lock_guard lock(mu_);
  if (FindLocked(path) == e && KeptLocked(*e) && e->base_version == base) {
    spdlog::debug("sync: '{}' changed below; its kept local copy is dropped", path);
    DropLocked(e);
  }
}

void SyncCore::DropLocked(std::shared_ptr<Staged> e) {
  auto it = staged_.find(e->path);
  if (it != staged_.end() && it->second == e) {
    staged_.erase(it);
    if (!e->removed) ++drops_;  // now served from below only
  }
  ::unlink(DataPath(e->id).c_str());
  e->removed = true;
}

Result<size_t> SyncCore::ReadStaged(Staged& e, uint64_t offset, std::span<std::byte> buf) {
  for (;;) {
    std::shared_lock io(e.io_mu);
    uint64_t size;
    {
      std::lock_guard lock(mu_);
      size = e.size;
    }
    if (offset >= size) return size_t{0};
    size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), size - offset));
    std::pair<uint64_t, uint64_t> gap{0, 0};
    if (!e.filled()) {
      std::lock_guard lock(e.fill->mu);
      gap = e.fill->final.FirstGap(offset, offset + want);
    }
    if (gap.first == gap.second) {
      HFVFS_ASSIGN_OR_RETURN(size_t n, PreadAll(e.fd, buf.data(), want, offset));
      if (n < want) std::memset(buf.data() + n, 0, want - n);  // never short mid-file
      return want;
    }
    // Not fetched yet: this read fetches what it needs itself, then reads again.
    io.unlock();
    HFVFS_RETURN_IF_ERROR(FetchRange(e, gap.first, offset + want));
  }
}

Result<size_t> SyncCore::WriteStaged(Staged& e, uint64_t offset, std::span<const std::byte> data) {
  std::unique_lock io(e.io_mu);
  HFVFS_RETURN_IF_ERROR(PwriteAll(e.fd, data.data(), data.size(), offset));
  if (!e.filled()) {
    std::lock_guard lock(e.fill->mu);
    e.fill->final.Add(offset, offset + data.size());  // never overwritten by fetched bytes
  }
  std::lock_guard lock(mu_);
  e.size = std::max<uint64_t>(e.size, offset + data.size());
  e.mtime_ns = NowNs();
  MarkDirtyLocked(e);
  return data.size();
}

Status SyncCore::TruncateStaged(Staged& e, uint64_t size) {
  std::unique_lock io(e.io_mu);
  uint64_t old_size;
  {
    std::lock_guard lock(mu_);
    old_size = e.size;  // changes only under io_mu exclusive, which this thread holds
  }
  if (::ftruncate(e.fd, static_cast<off_t>(size)) != 0) {
    return SysErr(errno, "truncate staging file " + DataPath(e.id));
  }
  if (!e.filled()) {
    std::lock_guard lock(e.fill->mu);
    // Cut bytes need no fetch, and bytes a later extension adds are zeros.
    if (size < old_size) {
      e.fill->final.Add(size, UINT64_MAX);
    } else {
      e.fill->final.Add(old_size, size);
    }
  }
  std::lock_guard lock(mu_);
  e.size = size;
  e.mtime_ns = NowNs();
  MarkDirtyLocked(e);
  return Ok();
}

Status SyncCore::FlushStaged(Staged& e) {
  {
    std::lock_guard lock(mu_);
    if (e.removed || !e.dirty()) return Ok();
  }
  HFVFS_RETURN_IF_ERROR(WaitFilled(e));  // only complete content is journaled
  HFVFS_RETURN_IF_ERROR(JournalDirty(e));
  std::lock_guard lock(mu_);
  if (e.removed || !e.dirty()) return Ok();
  e.closed_since_dirty = true;
  e.last_change = Clock::now();
  cv_.notify_all();
  return Ok();
}

Status SyncCore::FsyncStaged(Staged& e) {
  {
    std::lock_guard lock(mu_);
    if (e.removed || !e.dirty()) return Ok();
  }
  HFVFS_RETURN_IF_ERROR(WaitFilled(e));
  HFVFS_RETURN_IF_ERROR(JournalDirty(e));
  std::unique_lock lock(mu_);
  if (e.removed || !e.dirty()) return Ok();
  uint64_t want = e.generation;
  uint64_t attempts = e.upload_attempts;
  e.urgent = true;
  e.closed_since_dirty = true;
  cv_.notify_all();
  // Waits for an upload covering this generation, or for one attempt that failed.
  cv_.wait(lock, [&] {
    return e.removed || e.uploaded_generation >= want || stopping_ ||
           (e.upload_attempts > attempts && e.failures > 0);
  });
  if (e.removed || e.uploaded_generation >= want) return Ok();
  if (stopping_) return Err(EIO, "sync: fsync of '" + e.path + "': the mount is stopping");
  return Err(last_error_code_ ? last_error_code_ : EIO,
             "sync: fsync of '" + e.path + "': upload failed (" + last_error_ +
                 "); the data stays staged and will be retried");
}

Status SyncCore::CloseStaged(const std::shared_ptr<Staged>& e) {
  bool dirty;
  {
    std::lock_guard lock(mu_);
    dirty = !e->removed && e->dirty();
  }
  Status st = dirty ? WaitFilled(*e) : Ok();
  if (st && dirty) st = JournalDirty(*e);  // a close without flush: still accepted
  std::lock_guard lock(mu_);
  if (st && !e->removed && e->dirty()) {
    if (!e->closed_since_dirty) e->last_change = Clock::now();
    e->closed_since_dirty = true;
  }
  --e->open_handles;
  e->last_used = Clock::now();
  MaybeDropLocked(e);
  cv_.notify_all();
  return st;
}

// ---------------------------------------------------------------------------------------------
// namespace operations

Result<std::unique_ptr<File>> SyncCore::Open(const std::string& path, int flags) {
  int acc = flags & O_ACCMODE;
  bool writable = acc == O_WRONLY || acc == O_RDWR;
  if (writable && !lower_->capabilities().writable) return lower_->open(path, flags);
  RevalidateKept(path);
  std::shared_ptr<Staged> e;
  {
    std::unique_lock lock(mu_);
    for (;;) {
      auto it = staged_.find(path);
      if (it == staged_.end() || it->second->state != Staged::State::kLoading) break;
      cv_.wait(lock);
    }
    auto it = staged_.find(path);
    if (it != staged_.end()) {
      e = it->second;
      ++e->open_handles;  // held before leaving the lock: no drop in between
      e->last_used = Clock::now();
    } else if (pending_removes_.count(path)) {
      return Err(ENOENT, "sync: '" + path + "' was removed");
    }
  }
  if (!e) {
    if (!writable) return lower_->open(path, flags);
    bool trunc = (flags & O_TRUNC) != 0;
    HFVFS_ASSIGN_OR_RETURN(e, Stage(path, trunc ? StageHow::kTruncate : StageHow::kExisting, 0644));
  } else if (writable && (flags & O_TRUNC)) {
    Status st = TruncateStaged(*e, 0);
    if (!st) {
      std::lock_guard lock(mu_);
      --e->open_handles;
      MaybeDropLocked(e);
      return st.error();
    }
  }
  return std::unique_ptr<File>(new SyncFile(shared_from_this(), e, writable));
}

Result<std::unique_ptr<File>> SyncCore::Create(const std::string& path, uint32_t mode, int flags) {
  if (!lower_->capabilities().writable) return lower_->create(path, mode, flags);
  std::string parent(ParentPath(path));
  HFVFS_ASSIGN_OR_RETURN(Attr pa, Stat(parent));
  if (!pa.is_dir()) return Err(ENOTDIR, "sync: '" + parent + "' is not a directory");
  Result<Attr> existing = Stat(path);
  if (existing) {
    if (flags & O_EXCL) return Err(EEXIST, "sync: '" + path + "' exists");
    if (existing->is_dir()) return Err(EISDIR, "sync: '" + path + "' is a directory");
    return Open(path, (flags & ~O_CREAT) | ((flags & O_ACCMODE) == O_RDONLY ? O_RDWR : 0));
  }
  if (existing.code() != ENOENT) return existing.error();
  HFVFS_ASSIGN_OR_RETURN(auto e, Stage(path, StageHow::kCreate, mode & 07777));
  // Writable whatever the flags: creat(2) with O_RDONLY still makes the file.
  return std::unique_ptr<File>(new SyncFile(shared_from_this(), e, true));
}

Status SyncCore::Mkdir(const std::string& path, uint32_t mode) {
  {
    std::lock_guard lock(mu_);
    if (staged_.count(path)) return Err(EEXIST, "sync: '" + path + "' exists");
  }
  HFVFS_RETURN_IF_ERROR(lower_->mkdir(path, mode));
  std::lock_guard lock(mu_);
  TouchedLocked(path);
  if (opt_.metadata_ttl.count() > 0) {
    // A folder just made is empty: creates in it need not ask below name by name.
    listed_[path] = ListedDir{{}, Clock::now() + opt_.metadata_ttl};
  }
  return Ok();
}

Status SyncCore::Rmdir(const std::string& path) {
  {
    std::lock_guard lock(mu_);
    DropKeptLocked(path);
    if (staged_.count(path)) return Err(ENOTDIR, "sync: '" + path + "' is a file");
    std::string prefix = path + "/";
    auto it = staged_.lower_bound(prefix);
    if (it != staged_.end() && it->first.compare(0, prefix.size(), prefix) == 0) {
      return Err(ENOTEMPTY, "sync: '" + path + "' holds files not yet uploaded");
    }
  }
  HFVFS_RETURN_IF_ERROR(lower_->rmdir(path));
  std::lock_guard lock(mu_);
  TouchedLocked(path);
  snapshots_.erase(path);
  ForgetListingsLocked(path);
  return Ok();
}

Status SyncCore::Symlink(const std::string& target, const std::string& path) {
  {
    std::lock_guard lock(mu_);
    if (staged_.count(path)) return Err(EEXIST, "sync: '" + path + "' exists");
  }
  {
    std::lock_guard rm(removes_mu_);
    HFVFS_RETURN_IF_ERROR(RetireRemoveHeld(path));
  }
  HFVFS_RETURN_IF_ERROR(lower_->symlink(target, path));
  std::lock_guard lock(mu_);
  TouchedLocked(path);
  return Ok();
}

Status SyncCore::RetireRemoveHeld(const std::string& path) {
  std::lock_guard lock(mu_);
  auto it = pending_removes_.find(path);
  if (it == pending_removes_.end()) return Ok();
  HFVFS_RETURN_IF_ERROR(journal_->Commit({}, {it->second}));
  pending_removes_.erase(it);
  return Ok();
}

Status SyncCore::Remove(const std::string& path) {
  std::shared_ptr<Staged> e;
  {
    std::unique_lock lock(mu_);
    DropKeptLocked(path);  // only a local copy: the file is removed below as any other
    for (;;) {
      auto it = staged_.find(path);
      if (it == staged_.end()) break;
      if (it->second->state == Staged::State::kLoading) {
        cv_.wait(lock);
        continue;
      }
      e = it->second;
      break;
    }
    if (!e && pending_removes_.count(path)) return Err(ENOENT, "sync: '" + path + "' was removed");
  }
  if (!e) {
    HFVFS_RETURN_IF_ERROR(lower_->remove(path));
    std::lock_guard lock(mu_);
    TouchedLocked(path);
    return Ok();
  }
  std::unique_lock up(e->upload_mu);  // no upload of this name lands after the removal
  std::unique_lock rm(removes_mu_);
  bool below;
  {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return !e->journaling; });
    if (e->removed || FindLocked(path) != e) {
      // Uploaded and dropped (or replaced) meanwhile: start again from the current state.
      lock.unlock();
      rm.unlock();
      up.unlock();
      return Remove(path);
    }
    std::vector<uint64_t> retire;
    if (e->journal_seq) retire.push_back(e->journal_seq);
    HFVFS_RETURN_IF_ERROR(journal_->Commit({}, retire));
    e->journal_seq = 0;
    e->removed = true;
    staged_.erase(path);
    below = e->base_exists || e->uploaded_generation > 0;
    if (e->open_handles == 0) ::unlink(DataPath(e->id).c_str());
    TouchedLocked(path);
    cv_.notify_all();
  }
  if (!below) {
    // Never uploaded; a file created below by someone else meanwhile is theirs.
    return Ok();
  }
  Status st = lower_->remove(path);
  if (st || st.code() == ENOENT) return Ok();
  // The unlink is accepted; the removal below is retried by the flusher.
  spdlog::warn("sync: remove '{}' below failed ({}); retrying in the background", path,
               st.error().message());
  JournalRecord r;
  r.op = JournalRecord::Op::kRemove;
  r.path = path;
  std::lock_guard lock(mu_);
  HFVFS_RETURN_IF_ERROR(journal_->Commit({&r}, {}));
  pending_removes_[path] = r.seq;
  cv_.notify_all();
  return Ok();
}

Status SyncCore::Rename(const std::string& from, const std::string& to, bool noreplace) {
  if (from == to) return Ok();
  if (IsUnder(to, from)) return Err(EINVAL, "sync: cannot move '" + from + "' into itself");
  {
    // Kept clean copies are only caches: the rename goes below as for files never staged.
    std::lock_guard lock(mu_);
    DropKeptLocked(from);
    DropKeptLocked(to);
  }
  HFVFS_ASSIGN_OR_RETURN(Attr src, Stat(from));
  Result<Attr> dst = Stat(to);
  if (dst && noreplace) return Err(EEXIST, "sync: '" + to + "' exists");
  if (!dst && dst.code() != ENOENT) return dst.error();
  if (dst && dst->is_dir() && !src.is_dir()) return Err(EISDIR, "sync: '" + to + "' is a dir");
  if (dst && !dst->is_dir() && src.is_dir()) return Err(ENOTDIR, "sync: '" + to + "' not a dir");
  if (!dst) {
    HFVFS_ASSIGN_OR_RETURN(Attr to_parent, Stat(std::string(ParentPath(to))));
    if (!to_parent.is_dir()) return Err(ENOTDIR, "sync: the parent of '" + to + "' is a file");
  }
  Capabilities below = lower_->capabilities();

  if (src.is_dir()) {
    // Below first, then the staged files under it are relabelled (locked against uploads).
    std::vector<std::shared_ptr<Staged>> moved;
    {
      std::lock_guard lock(mu_);
      std::string prefix = from + "/";
      for (auto it = staged_.lower_bound(prefix); it != staged_.end(); ++it) {
        if (it->first.compare(0, prefix.size(), prefix) != 0) break;
        moved.push_back(it->second);
      }
    }
    // Files still being fetched finish first: their source is the old name below.
    for (auto& m : moved) HFVFS_RETURN_IF_ERROR(WaitFilled(*m));
    std::vector<std::unique_lock<std::mutex>> held;
    for (auto& m : moved) held.emplace_back(m->upload_mu);  // path order
    HFVFS_RETURN_IF_ERROR(lower_->rename(from, to, noreplace));
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] {
      for (auto& m : moved)
        if (m->journaling) return false;
      return true;
    });
    std::vector<JournalRecord> recs(moved.size());
    std::vector<JournalRecord*> add;
    std::vector<uint64_t> retire;
    for (size_t i = 0; i < moved.size(); ++i) {
      Staged& m = *moved[i];
      if (m.removed || FindLocked(m.path).get() != &m) continue;
      staged_.erase(m.path);
      m.path = to + m.path.substr(from.size());
      staged_[m.path] = moved[i];
      if (m.journal_seq) {
        recs[i] = JournalRecord{JournalRecord::Op::kStaged,
                                0,
                                m.id,
                                m.mode,
                                m.base_exists,
                                m.base_version,
                                m.path,
                                false,
                                {}};
        if (m.journal_inline) {
          std::optional<std::string> content = journal_->Content(m.journal_seq);
          recs[i].has_content = content.has_value();
          if (content) recs[i].content = std::move(*content);
        }
        add.push_back(&recs[i]);
        retire.push_back(m.journal_seq);
      }
    }
    Status st = journal_->Commit(add, retire);
    for (size_t i = 0; i < moved.size(); ++i) {
      if (recs[i].seq) {
        moved[i]->journal_seq = recs[i].seq;
        moved[i]->journal_inline = recs[i].has_content;
      }
    }
    for (auto it = snapshots_.begin(); it != snapshots_.end();) {
      it = IsUnder(it->first, from) ? snapshots_.erase(it) : std::next(it);
    }
    attr_cache_.clear();
    ForgetListingsLocked(from);
    ForgetListingsLocked(to);
    TouchedLocked(from);
    TouchedLocked(to);
    return st;
  }

  std::shared_ptr<Staged> e_from, e_to;
  {
    std::lock_guard lock(mu_);
    if (staged_.count(from)) e_from = staged_[from];
    if (staged_.count(to)) e_to = staged_[to];
  }
  bool staged_here = false;
  if (!e_from && src.is_file() && !below.rename) {
    staged_here = true;
    // The lower layer cannot rename: stage the file, relabel it here, remove the old name.
    HFVFS_ASSIGN_OR_RETURN(e_from, Stage(from, StageHow::kExisting, 0644));
  }
  // Stage counted a handle for us; it is released when the rename is over.
  struct Release {
    SyncCore* core;
    std::shared_ptr<Staged> e;
    ~Release() {
      if (e) (void)core->CloseStaged(e);
    }
  } release{this, staged_here ? e_from : nullptr};
  if (!e_from) {
    // Not staged: below renames it. A staged target is replaced.
    std::unique_lock<std::mutex> up_to;
    if (e_to) up_to = std::unique_lock(e_to->upload_mu);
    {
      std::lock_guard rm(removes_mu_);
      HFVFS_RETURN_IF_ERROR(RetireRemoveHeld(to));
    }
    HFVFS_RETURN_IF_ERROR(lower_->rename(from, to, noreplace));
    std::unique_lock lock(mu_);
    if (e_to) cv_.wait(lock, [&] { return !e_to->journaling; });
    if (e_to && !e_to->removed && FindLocked(to) == e_to) {
      if (e_to->journal_seq) (void)journal_->Commit({}, {e_to->journal_seq});
      e_to->journal_seq = 0;
      e_to->removed = true;
      staged_.erase(to);
      if (e_to->open_handles == 0) ::unlink(DataPath(e_to->id).c_str());
    }
    TouchedLocked(from);
    TouchedLocked(to);
    return Ok();
  }

  // A staged file: relabel here; the old name is removed below (if it is there). Its record
  // under the new name needs the whole content.
  HFVFS_RETURN_IF_ERROR(WaitFilled(*e_from));
  std::unique_lock<std::mutex> up_a, up_b;
  if (e_to && e_to != e_from && to < from) {
    up_a = std::unique_lock(e_to->upload_mu);
    up_b = std::unique_lock(e_from->upload_mu);
  } else {
    up_a = std::unique_lock(e_from->upload_mu);
    if (e_to && e_to != e_from) up_b = std::unique_lock(e_to->upload_mu);
  }
  // Taken under the upload locks: no upload of `to` can move its version meanwhile.
  Result<Attr> to_below = lower_->stat(to);
  std::unique_lock rm(removes_mu_);
  bool remove_from_below;
  {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return !e_from->journaling && (!e_to || !e_to->journaling); });
    bool to_changed = e_to && e_to != e_from && staged_.count(to) && FindLocked(to) != e_to;
    if (e_from->removed || FindLocked(from) != e_from || to_changed ||
        (!e_to && staged_.count(to) && FindLocked(to) != e_from)) {
      // Uploaded and dropped, or replaced, meanwhile: start again from the current state.
      lock.unlock();
      rm.unlock();
      if (up_b.owns_lock()) up_b.unlock();
      up_a.unlock();
      return Rename(from, to, noreplace);
    }
    remove_from_below = e_from->base_exists || e_from->uploaded_generation > 0;
    std::vector<uint64_t> retire;
    if (e_from->journal_seq) retire.push_back(e_from->journal_seq);
    if (e_to && e_to != e_from && !e_to->removed && FindLocked(to) == e_to && e_to->journal_seq) {
      retire.push_back(e_to->journal_seq);
    }
    auto prm = pending_removes_.find(to);
    if (prm != pending_removes_.end()) retire.push_back(prm->second);
    // The content must reach `to` below: the entry is dirty under its new name.
    if (!e_from->dirty()) MarkDirtyLocked(*e_from);
    e_from->closed_since_dirty = true;
    if (::fdatasync(e_from->fd) != 0) return SysErr(errno, "fdatasync " + DataPath(e_from->id));
    // A small file journaled with its content may never have had its name synced.
    HFVFS_RETURN_IF_ERROR(FsyncDir(dir_ + "/data"));
    JournalRecord s{JournalRecord::Op::kStaged,
                    0,
                    e_from->id,
                    e_from->mode,
                    to_below.ok() && to_below->is_file(),
                    to_below.ok() ? to_below->version : std::string(),
                    to,
                    false,
                    {}};
    JournalRecord x;
    x.op = JournalRecord::Op::kRemove;
    x.path = from;
    std::vector<JournalRecord*> add{&s};
    if (remove_from_below) add.push_back(&x);
    HFVFS_RETURN_IF_ERROR(journal_->Commit(add, retire));
    if (prm != pending_removes_.end()) pending_removes_.erase(prm);
    if (e_to && e_to != e_from && FindLocked(to) == e_to) {
      e_to->journal_seq = 0;
      e_to->removed = true;
      if (e_to->open_handles == 0) ::unlink(DataPath(e_to->id).c_str());
    }
    staged_.erase(from);
    staged_[to] = e_from;
    e_from->path = to;
    e_from->journal_seq = s.seq;
    e_from->journal_inline = false;
    e_from->journaled_generation = e_from->generation;
    e_from->base_exists = s.base_exists;
    e_from->base_version = s.base_version;
    if (remove_from_below) pending_removes_[from] = x.seq;
    TouchedLocked(from);
    TouchedLocked(to);
    cv_.notify_all();
  }
  if (remove_from_below) {
    Status st = lower_->remove(from);
    if (st || st.code() == ENOENT) {
      std::lock_guard lock(mu_);
      auto it = pending_removes_.find(from);
      if (it != pending_removes_.end() && journal_->Commit({}, {it->second})) {
        pending_removes_.erase(it);
      }
    }
  }
  return Ok();
}

Status SyncCore::Setattr(const std::string& path, const SetAttr& change) {
  std::shared_ptr<Staged> e;
  if (change.set_size) {
    if (!lower_->capabilities().writable) return lower_->setattr(path, change);
    HFVFS_ASSIGN_OR_RETURN(Attr a, Stat(path));
    if (a.is_dir()) return Err(EISDIR, "sync: '" + path + "' is a directory");
    HFVFS_ASSIGN_OR_RETURN(
        e, Stage(path, change.size == 0 ? StageHow::kTruncate : StageHow::kExisting, 0644));
    Status st = TruncateStaged(*e, change.size);
    if (st) st = FlushStaged(*e);  // truncate(2) has no close: accepted = journaled now
    (void)CloseStaged(e);
    HFVFS_RETURN_IF_ERROR(st);
  }
  if (!change.set_mode && !change.set_mtime) return Ok();
  {
    std::lock_guard lock(mu_);
    auto it = staged_.find(path);
    if (it != staged_.end() && it->second->state == Staged::State::kReady) e = it->second;
    if (e && e->dirty()) {
      if (change.set_mode) {
        e->mode = change.mode & 07777;
        e->mode_set_here = true;
      }
      if (change.set_mtime) {
        e->mtime_ns = change.mtime_ns;
        e->mtime_set_here = true;
      }
      return Ok();
    }
  }
  SetAttr rest = change;
  rest.set_size = false;
  HFVFS_RETURN_IF_ERROR(lower_->setattr(path, rest));
  std::lock_guard lock(mu_);
  if (e && !e->removed) {
    if (change.set_mode) e->mode = change.mode & 07777;
    if (change.set_mtime) e->mtime_ns = change.mtime_ns;
  }
  TouchedLocked(path);
  return Ok();
}

// ---------------------------------------------------------------------------------------------
// uploads

void SyncCore::RecordFailure(Staged& e, const Error& error) {
  // Requires mu_.
  ++e.failures;
  ++e.upload_attempts;
  e.urgent = false;  // a waiting fsync has its answer; retries follow the backoff
  auto delay = opt_.retry_initial * (1 << std::min(e.failures - 1, 6));
  e.next_attempt =
      Clock::now() + std::min<std::chrono::milliseconds>(delay, std::chrono::seconds(60));
  ++upload_failures_;
  NoteErrorLocked(error);
}

void SyncCore::NoteErrorLocked(const Error& error) {
  last_error_ = error.message();
  last_error_code_ = error.code();
  last_error_at_ = std::chrono::system_clock::now();
  ++errors_;
}

Status SyncCore::KeepRemoteCopy(const std::string& path) {
  std::string copy = path + ".conflict-" + UtcStamp();
  if (lower_->capabilities().rename) {
    HFVFS_RETURN_IF_ERROR(lower_->rename(path, copy, true));
  } else {
    HFVFS_ASSIGN_OR_RETURN(std::unique_ptr<File> in, lower_->open(path, O_RDONLY));
    HFVFS_ASSIGN_OR_RETURN(std::unique_ptr<File> out,
                           lower_->create(copy, 0644, O_WRONLY | O_CREAT | O_EXCL));
    std::vector<std::byte> buf(opt_.upload_chunk);
    uint64_t off = 0;
    for (;;) {
      HFVFS_ASSIGN_OR_RETURN(size_t n, in->read(off, buf));
      if (n == 0) break;
      HFVFS_RETURN_IF_ERROR(out->write(off, std::span(buf.data(), n)));
      off += n;
    }
    (void)in->close();
    HFVFS_RETURN_IF_ERROR(out->flush());
    HFVFS_RETURN_IF_ERROR(out->close());
  }
  spdlog::warn(
      "sync: '{}' changed below while it had local changes: the remote version is "
      "kept as '{}', the local one uploaded",
      path, copy);
  std::lock_guard lock(mu_);
  TouchedLocked(copy);
  return Ok();
}

Status SyncCore::Upload(const std::shared_ptr<Staged>& e) {
  std::lock_guard up(e->upload_mu);
  std::string path;
  uint64_t gen, size;
  uint32_t mode;
  bool base_exists, set_mode, set_mtime;
  std::string base_version;
  int64_t mtime_ns;
  {
    std::lock_guard lock(mu_);
    if (e->removed || !e->dirty() || e->state != Staged::State::kReady) return Ok();
  }
  if (Status filled = WaitFilled(*e); !filled) {
    std::lock_guard lock(mu_);
    RecordFailure(*e, filled.error());
    cv_.notify_all();
    return filled;
  }
  {
    std::lock_guard lock(mu_);
    if (e->removed || !e->dirty() || e->state != Staged::State::kReady) return Ok();
    path = e->path;
    gen = e->generation;
    size = e->size;
    mode = e->mode;
    base_exists = e->base_exists;
    base_version = e->base_version;
    set_mode = e->mode_set_here;
    set_mtime = e->mtime_set_here;
    mtime_ns = e->mtime_ns;
  }
  ++uploads_in_flight_;
  struct InFlight {
    std::atomic<int64_t>& n;
    ~InFlight() { --n; }
  } in_flight{uploads_in_flight_};

  auto attempt = [&]() -> Status {
    // A remote change since staging is a conflict: the local write wins; with keep-both the
    // remote version is first kept beside it.
    Result<Attr> now_below = lower_->stat(path);
    if (!now_below && now_below.code() != ENOENT) return now_below.error();
    if (now_below && now_below->is_file() && (!base_exists || now_below->version != base_version)) {
      ++conflicts_;
      if (opt_.conflict == ConflictPolicy::kKeepBoth) {
        HFVFS_RETURN_IF_ERROR(KeepRemoteCopy(path));
      } else {
        spdlog::warn(
            "sync: '{}' changed below while it had local changes; the local version "
            "wins (conflict = \"local-wins\")",
            path);
      }
    }
    Result<std::unique_ptr<File>> out = lower_->create(path, mode, O_WRONLY | O_CREAT | O_TRUNC);
    if (!out && out.code() == EEXIST) out = lower_->open(path, O_WRONLY | O_TRUNC);
    if (!out) return out.error();
    std::vector<std::byte> buf(std::min<uint64_t>(opt_.upload_chunk, std::max<uint64_t>(size, 1)));
    uint64_t off = 0;
    Status st = Ok();
    while (off < size) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), size - off));
      Result<size_t> n = [&]() -> Result<size_t> {
        std::shared_lock io(e->io_mu);
        return PreadAll(e->fd, buf.data(), want, off);
      }();
      if (!n) {
        st = n.error();
        break;
      }
      if (*n == 0) break;  // truncated meanwhile: the generation moved, it uploads again
      Result<size_t> w = (*out)->write(off, std::span<const std::byte>(buf.data(), *n));
      if (!w) {
        st = w.error();
        break;
      }
      off += *n;
    }
    if (st) st = (*out)->flush();
    Status closed = (*out)->close();
    if (st && !closed) st = closed;
    HFVFS_RETURN_IF_ERROR(st);
    bytes_uploaded_ += static_cast<int64_t>(off);
    if (set_mode || set_mtime) {
      Capabilities c = lower_->capabilities();
      SetAttr sa;
      sa.set_mode = set_mode && c.set_mode;
      sa.mode = mode;
      sa.set_mtime = set_mtime && c.set_mtime;
      sa.mtime_ns = mtime_ns;
      if (sa.set_mode || sa.set_mtime) (void)lower_->setattr(path, sa);
    }
    return Ok();
  };
  Status st = attempt();
  Result<Attr> after = st ? lower_->stat(path) : Result<Attr>(st.error());
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return !e->journaling; });  // journal_seq is settled
  if (!after) {
    RecordFailure(*e, after.error().With("sync: upload '" + path + "'"));
    spdlog::warn("sync: upload '{}' failed (attempt {}): {}", path, e->failures,
                 after.error().message());
    cv_.notify_all();
    return after.error();
  }
  ++uploads_done_;
  ++e->upload_attempts;
  e->failures = 0;
  e->urgent = false;
  e->base_exists = true;
  e->base_version = after->version;
  e->uploaded_generation = gen;
  e->stale = false;  // what is below is our content now
  TouchedLocked(path);
  if (!e->dirty()) {
    if (e->journal_seq) {
      // Not synced: lost only with a power loss, and then the next mount uploads it again.
      if (journal_->Commit({}, {e->journal_seq}, /*durable=*/false)) e->journal_seq = 0;
    }
    e->mode_set_here = e->mtime_set_here = false;
    MaybeDropLocked(e);
  } else if (e->journal_seq) {
    // Written during the upload: the record now carries the new base (no false conflict).
    JournalRecord r{
        JournalRecord::Op::kStaged, 0, e->id, e->mode, true, e->base_version, path, false, {}};
    if (e->journal_inline) {
      std::optional<std::string> content = journal_->Content(e->journal_seq);
      r.has_content = content.has_value();
      if (content) r.content = std::move(*content);
    }
    // Not synced: if it is lost, the older record stays and only its base is older.
    if (journal_->Commit({&r}, {e->journal_seq}, /*durable=*/false)) {
      e->journal_seq = r.seq;
      e->journal_inline = r.has_content;
    }
  }
  cv_.notify_all();
  lock.unlock();
  (void)journal_->MaybeCompact();
  return Ok();
}

Status SyncCore::RunPendingRemove(const std::string& path) {
  std::lock_guard rm(removes_mu_);
  {
    std::lock_guard lock(mu_);
    if (!pending_removes_.count(path)) return Ok();
  }
  Status st = lower_->remove(path);
  std::lock_guard lock(mu_);
  if (st || st.code() == ENOENT) {
    auto it = pending_removes_.find(path);
    if (it != pending_removes_.end()) {
      HFVFS_RETURN_IF_ERROR(journal_->Commit({}, {it->second}));
      pending_removes_.erase(it);
    }
    remove_failures_ = 0;
    TouchedLocked(path);
    cv_.notify_all();
    return Ok();
  }
  ++remove_failures_;
  ++upload_failures_;
  NoteErrorLocked(st.error().With("sync: remove '" + path + "' below"));
  auto delay = opt_.retry_initial * (1 << std::min(remove_failures_ - 1, 6));
  removes_next_attempt_ =
      Clock::now() + std::min<std::chrono::milliseconds>(delay, std::chrono::seconds(60));
  cv_.notify_all();
  return st;
}

void SyncCore::FlusherLoop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    auto now = Clock::now();
    Clock::time_point next = now + std::chrono::seconds(60);
    std::shared_ptr<Staged> due;
    for (auto& [p, e] : staged_) {
      if (e->state != Staged::State::kReady || e->removed || !e->dirty() || e->uploading) {
        continue;
      }
      Clock::time_point when;
      if (draining_ || e->urgent) {
        when = now;
      } else {
        when = e->first_dirty + opt_.flush_max_window;
        if (e->closed_since_dirty) when = std::min(when, e->last_change + opt_.flush_debounce);
      }
      if (e->failures > 0 && !e->urgent) when = std::max(when, e->next_attempt);
      if (when <= now) {
        due = e;
        break;
      }
      next = std::min(next, when);
    }
    std::string remove_path;
    if (!due && !pending_removes_.empty() && !removes_running_) {
      Clock::time_point when = remove_failures_ ? removes_next_attempt_ : now;
      if (when <= now) {
        remove_path = pending_removes_.begin()->first;
      } else {
        next = std::min(next, when);
      }
    }
    if (due) {
      due->uploading = true;  // one uploader per file
      lock.unlock();
      (void)Upload(due);
      lock.lock();
      due->uploading = false;
      MaybeDropLocked(due);  // a kept copy now counts for eviction
      cv_.notify_all();
    } else if (!remove_path.empty()) {
      removes_running_ = true;
      lock.unlock();
      (void)RunPendingRemove(remove_path);
      lock.lock();
      removes_running_ = false;
      cv_.notify_all();
    } else {
      cv_.wait_until(lock, next);
    }
  }
  --workers_running_;
  cv_.notify_all();
}

// ---------------------------------------------------------------------------------------------
// polling

void SyncCore::Deliver(std::vector<Invalidate>& invalidations) {
  if (host_.shutting_down()) return;
  for (const Invalidate& inv : invalidations) host_.invalidate(inv.path, inv.what);
}

void SyncCore::DiffListing(const std::string& dir, const std::vector<DirEntry>& entries) {
  std::map<std::string, std::string> now;
  for (const DirEntry& de : entries) now[de.name] = Fingerprint(de.attr);
  std::vector<Invalidate> inv;
  {
    std::lock_guard lock(mu_);
    auto it = snapshots_.find(dir);
    if (it == snapshots_.end()) {
      if (snapshots_.size() < kMaxSnapshots) snapshots_.emplace(dir, std::move(now));
      return;
    }
    std::map<std::string, std::string>& old = it->second;
    auto report = [&](const std::string& name, Change::Kind kind) {
      std::string path = JoinPath(dir, name);
      if (self_touched_.erase(path)) return;  // our own change below
      attr_cache_.erase(path);
      auto st = staged_.find(path);
      if (st != staged_.end() && KeptLocked(*st->second)) {
        DropLocked(st->second);  // a kept clean copy, now out of date: reported as unstaged
      } else if (st != staged_.end() && st->second->state == Staged::State::kReady &&
                 !st->second->dirty() && !st->second->removed) {
        // Clean but open: its handles keep their view; dropped once they are closed.
        st->second->stale = true;
      } else if (st != staged_.end()) {
        // Served from staging; a conflict is settled at its upload.
        spdlog::info("sync: '{}' changed below while staged here; the local copy is served", path);
        return;
      }
      ++remote_changes_;
      if (pending_changes_.size() < kMaxPendingChanges) {
        pending_changes_.push_back(Change{kind, path});
      } else {
        changes_overflow_ = true;
      }
      if (kind == Change::Kind::kModified) {
        inv.push_back({path, Invalidation::kContent});
      } else {
        inv.push_back({path, Invalidation::kEntry});
        inv.push_back({dir, Invalidation::kChildren});
      }
      if (kind == Change::Kind::kRemoved) {
        for (auto s = snapshots_.begin(); s != snapshots_.end();) {
          s = (s->first != dir && IsUnder(s->first, path)) ? snapshots_.erase(s) : std::next(s);
        }
      }
    };
    for (const auto& [name, fp] : now) {
      auto o = old.find(name);
      if (o == old.end()) {
        report(name, Change::Kind::kAdded);
      } else if (o->second != fp) {
        report(name, Change::Kind::kModified);
      }
    }
    for (const auto& [name, fp] : old) {
      if (!now.count(name)) report(name, Change::Kind::kRemoved);
    }
    // Self-touched names in this folder that did not show a difference are settled too.
    std::string prefix = dir.empty() ? "" : dir + "/";
    for (auto s = self_touched_.lower_bound(prefix); s != self_touched_.end();) {
      if (s->compare(0, prefix.size(), prefix) != 0) break;
      s = ParentPath(*s) == dir ? self_touched_.erase(s) : std::next(s);
    }
    if (!inv.empty()) listed_.erase(dir);
    auto again = snapshots_.find(dir);
    if (again != snapshots_.end()) again->second = std::move(now);
  }
  Deliver(inv);
}

Status SyncCore::PollOnce() {
  Result<Changes> probe = lower_->changes();
  bool relist = false;
  if (!probe) {
    if (probe.code() != ENOSYS) {
      ++poll_errors_;
      spdlog::debug("sync: poll: probe failed: {}", probe.error().message());
      std::lock_guard lock(mu_);
      NoteErrorLocked(probe.error().With("sync: poll: probing for changes below"));
      return probe.error();
    }
    relist = true;  // the lower cannot tell: re-list every time
  } else {
    relist = probe->rescan;
    std::lock_guard lock(mu_);
    if (!probe->token.empty()) last_token_ = probe->token;
  }
  ++polls_;
  if (probe && !probe->changes.empty()) {
    // Known paths: the folders holding them are re-listed (a deletion then counts only when
    // the parent listing succeeded).
    std::set<std::string> dirs;
    {
      std::lock_guard lock(mu_);
      for (const Change& c : probe->changes) {
        std::string parent(ParentPath(c.path));
        attr_cache_.erase(c.path);
        listed_.erase(parent);
        if (snapshots_.count(parent)) dirs.insert(parent);
      }
    }
    if (!relist) {
      for (const std::string& d : dirs) {
        Result<std::vector<DirEntry>> l = lower_->list(d);
        if (l) DiffListing(d, *l);
      }
    }
  }
  if (!relist) return Ok();
  std::vector<std::string> dirs;
  {
    std::lock_guard lock(mu_);
    for (const auto& [d, snap] : snapshots_) dirs.push_back(d);
  }
  for (const std::string& d : dirs) {
    if (host_.shutting_down()) break;
    Result<std::vector<DirEntry>> l = lower_->list(d);
    if (l) {
      DiffListing(d, *l);
    } else if (l.code() == ENOENT || l.code() == ENOTDIR) {
      // Gone: its parent's listing reports the removal.
      std::lock_guard lock(mu_);
      snapshots_.erase(d);
    }
  }
  return Ok();
}

void SyncCore::PollerLoop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    cv_.wait_for(lock, opt_.poll_interval, [&] { return stopping_; });
    if (stopping_ || host_.shutting_down()) break;
    lock.unlock();
    (void)PollOnce();
    lock.lock();
  }
  --workers_running_;
  cv_.notify_all();
}

Result<Changes> SyncCore::TakeChanges() {
  std::lock_guard lock(mu_);
  Changes c;
  c.rescan = changes_overflow_;
  c.token = last_token_;
  c.changes = std::move(pending_changes_);
  pending_changes_.clear();
  changes_overflow_ = false;
  return c;
}

void SyncCore::Counters(std::vector<std::pair<std::string, int64_t>>& out) const {
  int64_t dirty_files = 0, dirty_bytes = 0, staged = 0, staged_bytes = 0;
  int64_t removes, last_code;
  {
    std::lock_guard lock(mu_);
    for (const auto& [p, e] : staged_) {
      if (e->state != Staged::State::kReady || e->removed) continue;
      ++staged;
      staged_bytes += static_cast<int64_t>(e->size);
      if (e->dirty()) {
        ++dirty_files;
        dirty_bytes += static_cast<int64_t>(e->size);
      }
    }
    removes = static_cast<int64_t>(pending_removes_.size());
    last_code = last_error_code_;
  }
  out.emplace_back("staged_files", staged);
  out.emplace_back("staged_bytes", staged_bytes);
  out.emplace_back("evictions", evictions_.load());
  out.emplace_back("fills_in_flight", fills_in_flight_.load());
  out.emplace_back("bytes_fetched", bytes_fetched_.load());
  out.emplace_back("journal_syncs", journal_ ? static_cast<int64_t>(journal_->syncs()) : 0);
  out.emplace_back("journal_skips", journal_skips_.load());
  out.emplace_back("dirty_files", dirty_files);
  out.emplace_back("dirty_bytes", dirty_bytes);
  out.emplace_back("pending_removes", removes);
  out.emplace_back("uploads_in_flight", uploads_in_flight_.load());
  out.emplace_back("uploads_done", uploads_done_.load());
  out.emplace_back("bytes_uploaded", bytes_uploaded_.load());
  out.emplace_back("upload_retries", upload_failures_.load());
  out.emplace_back("conflicts", conflicts_.load());
  out.emplace_back("replayed_files", replayed_.load());
  out.emplace_back("listing_hits", listing_hits_.load());
  out.emplace_back("polls", polls_.load());
  out.emplace_back("poll_errors", poll_errors_.load());
  out.emplace_back("remote_changes", remote_changes_.load());
  out.emplace_back("last_error_errno", last_code);
}

void SyncCore::StatusNotes(std::vector<std::string>& out) const {
  std::lock_guard lock(mu_);
  if (errors_ == 0) {
    out.push_back("last error: none");
    return;
  }
  std::time_t t = std::chrono::system_clock::to_time_t(last_error_at_);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char when[32];
  std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm);
  out.push_back("last error (" + std::string(when) + ", errno " + std::to_string(last_error_code_) +
                " " + std::strerror(last_error_code_) + "): " + last_error_);
}

}  // namespace hfvfs::sync
