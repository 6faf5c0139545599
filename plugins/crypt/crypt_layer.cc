#include "crypt_layer.h"

#include <fcntl.h>
#include <sodium.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include "hfvfs/path.h"

namespace hfvfs::crypt {
namespace {

// Records sealed per lower write when rewriting a range: 4 MiB of plaintext.
constexpr uint64_t kRecordsPerBatch = 64;
// Reads up to this much ciphertext reuse a pooled buffer; larger ones allocate their own.
constexpr uint64_t kScratchLimit = 4 << 20;
constexpr uint64_t kPage = 4096;

// A place for `bytes` bytes of the object starting at object offset `offset`, inside `buffer`
// (grown as needed), whose address is congruent to `offset` modulo the page size: the kernel's
// copies between the page cache and this buffer then have source and destination equally
// aligned, which `rep movsb` on some CPUs (AMD Zen) needs to run at full speed. Without it the
// pread copy was half the crypt daemon's CPU on a cold read.
uint8_t* AlignedLike(std::vector<uint8_t>& buffer, uint64_t offset, uint64_t bytes) {
  if (buffer.size() < bytes + 2 * kPage) buffer.resize(bytes + 2 * kPage);
  auto addr = reinterpret_cast<uintptr_t>(buffer.data());
  uintptr_t page = (addr + kPage - 1) & ~uintptr_t(kPage - 1);
  return reinterpret_cast<uint8_t*>(page + offset % kPage);
}

}  // namespace

ReadPlan PlanRecordReads(size_t records, size_t threads) {
  if (records == 0) return {0, 0};
  size_t pieces =
      std::clamp<size_t>(records / kRecordsPerLowerRead, 1, std::max<size_t>(threads, 1));
  return {pieces, (records + pieces - 1) / pieces};
}

namespace {

std::span<const std::byte> AsBytes(std::span<const uint8_t> s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}
std::span<std::byte> AsBytes(std::span<uint8_t> s) {
  return {reinterpret_cast<std::byte*>(s.data()), s.size()};
}

bool WantsWrite(int flags) { return (flags & O_ACCMODE) != O_RDONLY; }

Error Named(const Error& e, std::string_view path) {
  return e.With("crypt: '" + std::string(path) + "'");
}

// Reads exactly buf.size() bytes at `offset` of a lower file; a short read means the object
// is shorter than its records say.
Status ReadExact(File& lower, uint64_t offset, std::span<uint8_t> buf) {
  Result<size_t> n = lower.read(offset, AsBytes(buf));
  if (!n) return n.error();
  if (*n != buf.size()) return Err(EIO, "the encrypted object is shorter than expected");
  return Ok();
}

Status WriteExact(File& lower, uint64_t offset, std::span<const uint8_t> data) {
  Result<size_t> n = lower.write(offset, AsBytes(data));
  if (!n) return n.error();
  if (*n != data.size()) return Err(EIO, "short write to the lower layer");
  return Ok();
}

}  // namespace

// ---- WriterFirstMutex ----

WriterFirstMutex::WriterFirstMutex() {
  pthread_rwlockattr_t attr;
  pthread_rwlockattr_init(&attr);
  pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init(&lock_, &attr);
  pthread_rwlockattr_destroy(&attr);
}
WriterFirstMutex::~WriterFirstMutex() { pthread_rwlock_destroy(&lock_); }
void WriterFirstMutex::lock() { pthread_rwlock_wrlock(&lock_); }
void WriterFirstMutex::unlock() { pthread_rwlock_unlock(&lock_); }
void WriterFirstMutex::lock_shared() { pthread_rwlock_rdlock(&lock_); }
void WriterFirstMutex::unlock_shared() { pthread_rwlock_unlock(&lock_); }

// ---- RecordPool ----

RecordPool::RecordPool(unsigned threads) {
  if (threads == 0) threads = std::min(8u, std::max(1u, std::thread::hardware_concurrency()));
  for (unsigned i = 1; i < threads; ++i) workers_.emplace_back([this] { Work(); });
}

RecordPool::~RecordPool() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void RecordPool::Work() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock lock(mu_);
      wake_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // stopping
      job = std::move(jobs_.back());
      jobs_.pop_back();
    }
    job();
  }
}

void RecordPool::ParallelFor(size_t count, const std::function<void(size_t)>& fn) {
  if (count < 2 || workers_.empty()) {
    for (size_t i = 0; i < count; ++i) fn(i);
    return;
  }
  // Shared with the helper jobs, which may run (and find nothing to do) after the caller
  // returned. The caller never waits for a helper that has not started: once it has drained
  // the indices itself it closes the loop, and a helper that starts later leaves at once (the
  // workers may be busy with other readers' records, and waiting for them would idle a core).
  struct Shared {
    std::atomic<size_t> next{0};
    std::mutex mu;  // guards `active` and `closed`
    std::condition_variable done;
    size_t active = 0;  // helpers inside fn
    bool closed = false;
  };
  auto shared = std::make_shared<Shared>();
  const std::function<void(size_t)>* body = &fn;
  size_t helpers = std::min(workers_.size(), count - 1);
  {
    std::lock_guard lock(mu_);
    for (size_t h = 0; h < helpers; ++h) {
      jobs_.push_back([shared, count, body] {
        {
          std::lock_guard l(shared->mu);
          if (shared->closed) return;
          ++shared->active;
        }
        for (size_t i; (i = shared->next.fetch_add(1)) < count;) (*body)(i);
        std::lock_guard l(shared->mu);
        if (--shared->active == 0) shared->done.notify_all();
      });
    }
  }
  wake_.notify_all();
  for (size_t i; (i = shared->next.fetch_add(1)) < count;) fn(i);
  std::unique_lock l(shared->mu);
  shared->closed = true;
  shared->done.wait(l, [&] { return shared->active == 0; });
}

// ---- ScratchPool ----

ScratchPool::Lease ScratchPool::Take() {
  std::unique_ptr<std::vector<uint8_t>> buffer;
  {
    std::lock_guard lock(mu_);
    if (!free_.empty()) {
      buffer = std::move(free_.back());
      free_.pop_back();
    }
  }
  if (!buffer) buffer = std::make_unique<std::vector<uint8_t>>();
  return Lease(*this, std::move(buffer));
}

void ScratchPool::Return(std::unique_ptr<std::vector<uint8_t>> buffer) {
  std::lock_guard lock(mu_);
  if (free_.size() < keep_) free_.push_back(std::move(buffer));
}

size_t ScratchPool::idle() const {
  std::lock_guard lock(mu_);
  return free_.size();
}

// ---- CryptFile ----

class CryptFile final : public File {
 public:
  CryptFile(CryptLayer& layer, std::unique_ptr<File> lower, std::shared_ptr<CryptNode> node,
            std::string path, bool writable, bool wanted_write)
      : layer_(layer),
        lower_(std::move(lower)),
        node_(std::move(node)),
        path_(std::move(path)),
        writable_(writable),
        wanted_write_(wanted_write) {}

  Result<size_t> read(uint64_t offset, std::span<std::byte> buf) override;
  Result<size_t> write(uint64_t offset, std::span<const std::byte> data) override;
  Status truncate(uint64_t size) override;
  Status flush() override;
  Status fsync(bool datasync) override { return lower_->fsync(datasync); }
  Status close() override;
  Result<Attr> stat() override;

 private:
  Status Rewrite(uint64_t offset, std::span<const uint8_t> data, uint64_t new_size);
  Status RewriteBatch(uint64_t first, uint64_t last, uint64_t old_size, uint64_t new_size,
                      uint64_t offset, std::span<const uint8_t> data);
  Status Append(std::span<const uint8_t> data);
  // Authenticates the final record (once per change): holds at least a shared lock.
  Status VerifyFinal();
  Status FinalizeLocked();
  Error Fail(const Error& e) const { return Named(e, path_); }
  Error WriteRefusal() const {
    if (!wanted_write_) return Err(EBADF, "not open for writing");
    return Err(EOPNOTSUPP,
               "the lower layer has no random writes, so an existing encrypted file can only be "
               "replaced (O_TRUNC), not modified (stack `sync` below crypt for random writes)");
  }

  CryptLayer& layer_;
  std::unique_ptr<File> lower_;
  std::shared_ptr<CryptNode> node_;
  const std::string path_;  // plaintext path at open, for messages
  const bool writable_;
  const bool wanted_write_;         // opened for writing, though the lower may not allow it
  std::atomic<bool> wrote_{false};  // this handle wrote data (append mode finalises at flush)
};

Result<size_t> CryptFile::read(uint64_t offset, std::span<std::byte> buf) {
  CryptNode& n = *node_;
  std::shared_lock lock(n.mu);
  if (buf.empty()) return size_t{0};
  if (offset >= n.size) {
    HFVFS_RETURN_IF_ERROR(VerifyFinal());
    return size_t{0};
  }
  const uint64_t end = std::min<uint64_t>(offset + buf.size(), n.size);
  const uint64_t first = offset / kChunkBytes;
  const uint64_t last = (end - 1) / kChunkBytes;
  const uint64_t final_index = RecordCount(n.size) - 1;
  // In append mode the final chunk is still in memory.
  const bool pending_tail = n.append_mode && !n.finalized && last == final_index;
  const uint64_t stored_last = pending_tail ? last - 1 : last;
  if (stored_last + 1 > first) {  // some records come from the lower layer
    const uint64_t from = RecordOffset(first);
    const uint64_t to =
        RecordOffset(stored_last) + RecordPlaintextBytes(stored_last, n.size) + kRecordOverhead;
    const size_t count = stored_last - first + 1;
    const ReadPlan plan = PlanRecordReads(count, layer_.pool().size());
    // Ciphertext lands in a pooled buffer (FUSE reads come in 1 MiB pieces): a fresh
    // allocation of that size would be a fresh mmap, faulted in page by page on every read.
    ScratchPool::Lease scratch = layer_.scratch().Take();
    std::vector<uint8_t> large;
    std::vector<uint8_t>& raw_buffer = to - from <= kScratchLimit ? scratch.buffer() : large;
    uint8_t* const raw = AlignedLike(raw_buffer, from, to - from);  // every byte is read over
    std::vector<Status> results(count);
    const std::thread::id caller = std::this_thread::get_id();
    CryptLayer::IoCounters& io = layer_.io();
    io.reads.fetch_add(1, std::memory_order_relaxed);
    io.fetched_bytes.fetch_add(int64_t(to - from), std::memory_order_relaxed);
    io.lower_reads.fetch_add(int64_t(plan.pieces), std::memory_order_relaxed);
    // Ciphertext bytes [a, b) of the range, relative to `from`, of records [k0, k1).
    auto span_of = [&](size_t k0, size_t k1) {
      const uint64_t a = RecordOffset(first + k0) - from;
      const uint64_t b = k1 == count ? to - from : RecordOffset(first + k1) - from;
      return std::pair{a, b};
    };
    auto open_record = [&](size_t k) {
      if (std::this_thread::get_id() != caller) {
        io.records_on_workers.fetch_add(1, std::memory_order_relaxed);
      }
      uint64_t j = first + k;
      size_t len = RecordPlaintextBytes(j, n.size);
      std::span<const uint8_t> record(raw + k * kRecordBytes, len + kRecordOverhead);
      uint64_t chunk_start = j * kChunkBytes;
      uint64_t lo = std::max(offset, chunk_start), hi = std::min(end, chunk_start + len);
      auto* dst = reinterpret_cast<uint8_t*>(buf.data()) + (lo - offset);
      if (lo == chunk_start && hi == chunk_start + len) {  // whole record: decrypt in place
        results[k] = OpenRecord(n.keys, n.file_id, j, j == final_index, record, {dst, len});
        io.records_whole.fetch_add(1, std::memory_order_relaxed);
        return;
      }
      io.records_part.fetch_add(1, std::memory_order_relaxed);
      // Part of a record (a small or unaligned read): verify all, decrypt only that part.
      results[k] = OpenRecordPart(n.keys, n.file_id, j, j == final_index, record, lo - chunk_start,
                                  {dst, hi - lo});
    };
    if (plan.pieces == 1) {
      // One lower read for the whole range, as a plain reader would issue it, so the lower
      // (and its readahead) sees the same stream of large sequential reads. Split reads of one
      // request queued behind the pool workers that every in-flight request shares, and the
      // caller then read the pieces one after the other. The records are then opened in
      // parallel by whichever pool threads are idle.
      Status got = ReadExact(*lower_, from, {raw, to - from});
      if (!got) {
        for (Status& r : results) r = got;
      } else {
        layer_.pool().ParallelFor(count, open_record);
      }
    } else {
      // A large read: each task fetches a run of records and opens them, so that one task's
      // wait on the lower layer overlaps another's decryption.
      layer_.pool().ParallelFor(plan.pieces, [&](size_t t) {
        const size_t k0 = t * plan.per_piece, k1 = std::min(count, k0 + plan.per_piece);
        if (k0 >= k1) return;
        auto [a, b] = span_of(k0, k1);
        Status got = ReadExact(*lower_, from + a, {raw + a, b - a});
        for (size_t k = k0; k < k1; ++k) {
          if (!got) {
            results[k] = got;
          } else {
            open_record(k);
          }
        }
      });
    }
    for (const Status& r : results) {
      if (!r) {
        if (r.code() == EIO) layer_.CountAuthFailure();
        return Fail(r.error().With("bytes " + std::to_string(offset) + ".." + std::to_string(end)));
      }
    }
  }
  if (end == n.size && !pending_tail) {
    if (stored_last == final_index && stored_last + 1 > first) {
      n.final_verified = true;  // just opened above
    } else {
      HFVFS_RETURN_IF_ERROR(VerifyFinal());
    }
  }
  layer_.io().read_bytes.fetch_add(int64_t(end - offset), std::memory_order_relaxed);
  if (pending_tail) {
    uint64_t chunk_start = last * kChunkBytes;
    uint64_t lo = std::max(offset, chunk_start);
    std::memcpy(buf.data() + (lo - offset), n.pending.data() + (lo - chunk_start), end - lo);
  }
  return static_cast<size_t>(end - offset);
}

Status CryptFile::VerifyFinal() {
  CryptNode& n = *node_;
  if (n.final_verified || (n.append_mode && !n.finalized)) return Ok();
  const uint64_t index = RecordCount(n.size) - 1;
  const size_t len = RecordPlaintextBytes(index, n.size);
  std::vector<uint8_t> raw(len + kRecordOverhead);
  Status s = ReadExact(*lower_, RecordOffset(index), raw);
  if (s) s = OpenRecordPart(n.keys, n.file_id, index, true, raw, 0, {});  // the tag only
  if (!s) {
    layer_.CountAuthFailure();
    return Fail(s.error().With("end of file"));
  }
  n.final_verified = true;
  return Ok();
}

Result<size_t> CryptFile::write(uint64_t offset, std::span<const std::byte> data) {
  if (!writable_) return Fail(WriteRefusal());
  CryptNode& n = *node_;
  std::unique_lock lock(n.mu);
  std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(data.data()), data.size());
  if (n.append_mode) {
    if (n.finalized || offset != n.size) {
      return Fail(Err(EOPNOTSUPP,
                      "the lower layer has no random writes, so an encrypted file can only be "
                      "written sequentially, once (stack `sync` below crypt for random writes)"));
    }
    HFVFS_RETURN_IF_ERROR(Append(bytes));
    wrote_ = true;
    return data.size();
  }
  if (bytes.empty()) return size_t{0};
  Status s = Rewrite(offset, bytes, std::max<uint64_t>(n.size, offset + bytes.size()));
  if (!s) return Fail(s.error());
  wrote_ = true;
  return data.size();
}

Status CryptFile::truncate(uint64_t size) {
  if (!writable_) return Fail(WriteRefusal());
  CryptNode& n = *node_;
  std::unique_lock lock(n.mu);
  if (size == n.size) return Ok();
  if (n.append_mode) {
    return Fail(Err(EOPNOTSUPP,
                    "the lower layer has no random writes, so an encrypted file cannot be "
                    "truncated (stack `sync` below crypt)"));
  }
  Status s = Rewrite(0, {}, size);
  if (!s) return Fail(s.error());
  return Ok();
}

Status CryptFile::Rewrite(uint64_t offset, std::span<const uint8_t> data, uint64_t new_size) {
  CryptNode& n = *node_;
  const uint64_t old_size = n.size;
  const uint64_t old_last = RecordCount(old_size) - 1;
  const uint64_t new_last = RecordCount(new_size) - 1;
  // Records to seal again, as inclusive ranges: those the data covers, and when the size
  // changes, every record from the old final one (its length or finality changes, and the
  // gap up to the data is zeros) to the new final one.
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  if (new_size != old_size) ranges.emplace_back(std::min(old_last, new_last), new_last);
  if (!data.empty()) {
    ranges.emplace_back(offset / kChunkBytes, (offset + data.size() - 1) / kChunkBytes);
  }
  std::sort(ranges.begin(), ranges.end());
  std::vector<std::pair<uint64_t, uint64_t>> merged;
  for (auto r : ranges) {
    if (!merged.empty() && r.first <= merged.back().second + 1) {
      merged.back().second = std::max(merged.back().second, r.second);
    } else {
      merged.push_back(r);
    }
  }
  Status status = Ok();
  for (auto [a, b] : merged) {
    for (uint64_t start = a; start <= b && status; start += kRecordsPerBatch) {
      uint64_t stop = std::min(b, start + kRecordsPerBatch - 1);
      status = RewriteBatch(start, stop, old_size, new_size, offset, data);
    }
    if (!status) break;
  }
  if (status && CiphertextSize(new_size) < CiphertextSize(old_size)) {
    status = lower_->truncate(CiphertextSize(new_size));
  }
  n.final_verified = false;
  if (status) {
    n.size = new_size;
    return Ok();
  }
  // Part of the change may be on the store: take the size the object now has, when valid.
  if (Result<Attr> a = lower_->stat(); a) {
    if (auto p = PlaintextSize(a->size)) n.size = *p;
  }
  return status;
}

Status CryptFile::RewriteBatch(uint64_t first, uint64_t last, uint64_t old_size, uint64_t new_size,
                               uint64_t offset, std::span<const uint8_t> data) {
  CryptNode& n = *node_;
  const uint64_t old_count = RecordCount(old_size);
  const uint64_t new_final = RecordCount(new_size) - 1;
  const size_t count = last - first + 1;
  const uint64_t data_end = offset + data.size();
  // Old plaintext that survives in each record and that the data does not replace.
  std::vector<std::vector<uint8_t>> old_plain(count);
  for (size_t k = 0; k < count; ++k) {
    uint64_t j = first + k;
    if (j >= old_count) break;
    size_t keep = std::min(RecordPlaintextBytes(j, new_size), RecordPlaintextBytes(j, old_size));
    if (keep == 0) continue;
    uint64_t lo = j * kChunkBytes, hi = lo + keep;
    if (!data.empty() && offset <= lo && data_end >= hi) continue;  // fully overwritten
    size_t old_len = RecordPlaintextBytes(j, old_size);
    std::vector<uint8_t> raw(old_len + kRecordOverhead);
    HFVFS_RETURN_IF_ERROR(ReadExact(*lower_, RecordOffset(j), raw));
    old_plain[k].resize(old_len);
    Status s = OpenRecord(n.keys, n.file_id, j, j == old_count - 1, raw, old_plain[k]);
    if (!s) {
      layer_.CountAuthFailure();
      return s;
    }
    old_plain[k].resize(keep);
  }
  uint64_t out_size = 0;
  for (uint64_t j = first; j <= last; ++j) {
    out_size += RecordPlaintextBytes(j, new_size) + kRecordOverhead;
  }
  // Ciphertext only; pooled like the read buffer (sequential writes come in 1 MiB pieces).
  ScratchPool::Lease scratch = layer_.scratch().Take();
  std::vector<uint8_t> large;
  uint8_t* const out = AlignedLike(out_size <= kScratchLimit ? scratch.buffer() : large,
                                   RecordOffset(first), out_size);
  layer_.pool().ParallelFor(count, [&](size_t k) {
    uint64_t j = first + k;
    size_t len = RecordPlaintextBytes(j, new_size);
    std::span<uint8_t> record(out + k * kRecordBytes, len + kRecordOverhead);
    uint64_t lo = j * kChunkBytes, hi = lo + len;
    if (!data.empty() && offset <= lo && data_end >= hi) {  // seal straight from the data
      SealRecord(n.keys, n.file_id, j, j == new_final, data.subspan(lo - offset, len), record);
      return;
    }
    std::vector<uint8_t> plain(len, 0);
    std::memcpy(plain.data(), old_plain[k].data(), std::min(len, old_plain[k].size()));
    if (!data.empty() && offset < hi && data_end > lo) {
      uint64_t a = std::max(offset, lo), b = std::min(data_end, hi);
      std::memcpy(plain.data() + (a - lo), data.data() + (a - offset), b - a);
    }
    SealRecord(n.keys, n.file_id, j, j == new_final, plain, record);
    sodium_memzero(plain.data(), plain.size());
  });
  for (auto& p : old_plain) sodium_memzero(p.data(), p.size());
  layer_.io().records_sealed.fetch_add(int64_t(count), std::memory_order_relaxed);
  return WriteExact(*lower_, RecordOffset(first), std::span<const uint8_t>(out, out_size));
}

Status CryptFile::Append(std::span<const uint8_t> data) {
  CryptNode& n = *node_;
  size_t used = 0;
  // Complete the pending chunk first, then seal whole chunks straight from the data.
  std::vector<std::span<const uint8_t>> chunks;
  std::vector<uint8_t> head;
  if (!n.pending.empty()) {
    size_t take = std::min(data.size(), kChunkBytes - n.pending.size());
    n.pending.insert(n.pending.end(), data.begin(), data.begin() + take);
    used = take;
    if (n.pending.size() == kChunkBytes) {
      head.swap(n.pending);
      chunks.emplace_back(head);
    }
  }
  if (n.pending.empty()) {
    while (data.size() - used >= kChunkBytes) {
      chunks.push_back(data.subspan(used, kChunkBytes));
      used += kChunkBytes;
    }
    n.pending.assign(data.begin() + used, data.end());
  }
  if (chunks.empty()) {
    n.size += data.size();
    return Ok();
  }
  const uint64_t first = n.size / kChunkBytes;
  std::vector<uint8_t> out(chunks.size() * kRecordBytes);
  layer_.pool().ParallelFor(chunks.size(), [&](size_t k) {
    SealRecord(n.keys, n.file_id, first + k, false, chunks[k],
               std::span<uint8_t>(out.data() + k * kRecordBytes, kRecordBytes));
  });
  sodium_memzero(head.data(), head.size());
  Status s = WriteExact(*lower_, RecordOffset(first), out);
  if (!s) return Fail(s.error());
  n.size += data.size();
  return Ok();
}

Status CryptFile::FinalizeLocked() {
  CryptNode& n = *node_;
  if (!n.append_mode || n.finalized) return Ok();
  std::vector<uint8_t> record(n.pending.size() + kRecordOverhead);
  uint64_t index = n.size / kChunkBytes;
  SealRecord(n.keys, n.file_id, index, true, n.pending, record);
  Status s = WriteExact(*lower_, RecordOffset(index), record);
  if (!s) return Fail(s.error());
  n.finalized = true;
  n.final_verified = false;
  sodium_memzero(n.pending.data(), n.pending.size());
  n.pending.clear();
  return Ok();
}

Status CryptFile::flush() {
  if (writable_ && wrote_) {
    std::unique_lock lock(node_->mu);
    HFVFS_RETURN_IF_ERROR(FinalizeLocked());
  }
  return lower_->flush();
}

Status CryptFile::close() {
  Status finalized = Ok();
  if (writable_) {
    std::unique_lock lock(node_->mu);
    finalized = FinalizeLocked();
    if (!finalized) spdlog::error("{}", finalized.error().message());
  }
  Status closed = lower_->close();
  return finalized ? closed : finalized;
}

Result<Attr> CryptFile::stat() {
  HFVFS_ASSIGN_OR_RETURN(Attr a, lower_->stat());
  std::shared_lock lock(node_->mu);
  a.size = node_->size;
  return a;
}

// ---- CryptLayer ----

CryptLayer::CryptLayer(std::shared_ptr<Layer> lower, const Key& master, CryptOptions options)
    : LayerWrapper(std::move(lower)),
      keys_(std::make_unique<KeySet>()),
      options_(options),
      pool_(options.threads) {
  sodium_mlock(keys_.get(), sizeof(KeySet));
  DeriveKeySet(master, *keys_);
}

CryptLayer::~CryptLayer() { sodium_munlock(keys_.get(), sizeof(KeySet)); }

Capabilities CryptLayer::capabilities() const {
  Capabilities c = lower().capabilities();
  // Symlinks are stored as lower symlinks with sealed targets.
  c.rename = c.rename && c.writable;
  c.rename_dirs = c.rename;
  // A file rename rewrites the header (path binding) and then renames the object: atomic for
  // the destination when the lower rename is. Without random writes it is a copy.
  c.atomic_rename = c.atomic_rename && c.random_write;
  return c;
}

void CryptLayer::CountAuthFailure() const { auth_failures_.fetch_add(1); }

void CryptLayer::counters(std::vector<std::pair<std::string, int64_t>>& out) const {
  out.emplace_back("auth_failures", auth_failures_.load());
  out.emplace_back("header_reads", io_.header_reads.load());
  out.emplace_back("reads", io_.reads.load());
  out.emplace_back("read_bytes", io_.read_bytes.load());
  out.emplace_back("fetched_bytes", io_.fetched_bytes.load());
  out.emplace_back("lower_reads", io_.lower_reads.load());
  out.emplace_back("records_whole", io_.records_whole.load());
  out.emplace_back("records_part", io_.records_part.load());
  out.emplace_back("records_on_workers", io_.records_on_workers.load());
  out.emplace_back("records_sealed", io_.records_sealed.load());
}

std::shared_ptr<CryptNode> CryptLayer::Node(const std::string& lower_path) {
  std::lock_guard lock(nodes_mu_);
  auto it = nodes_.find(lower_path);
  if (it != nodes_.end()) {
    if (auto node = it->second.lock()) return node;
  }
  // Forget nodes whose handles are all closed, so the map stays as small as the open files.
  for (auto i = nodes_.begin(); i != nodes_.end();) {
    i = i->second.expired() ? nodes_.erase(i) : std::next(i);
  }
  auto node = std::make_shared<CryptNode>();
  nodes_[lower_path] = node;
  return node;
}

Result<std::string> CryptLayer::EncryptedPath(std::string_view path) const {
  std::string out(kEncDir);
  std::string parent;
  for (std::string_view name : SplitPath(path)) {
    Result<std::string> enc = EncryptName(*keys_, options_.names, parent, name);
    if (!enc) return Named(enc.error(), path);
    out = JoinPath(out, *enc);
    parent = JoinPath(parent, name);
  }
  return out;
}

std::optional<std::string> CryptLayer::DecryptedPath(std::string_view lower_path) const {
  std::vector<std::string_view> parts = SplitPath(lower_path);
  if (parts.empty() || parts[0] != kEncDir) return std::nullopt;
  std::string plain;
  for (size_t i = 1; i < parts.size(); ++i) {
    auto name = DecryptName(*keys_, options_.names, plain, parts[i]);
    if (!name) return std::nullopt;
    plain = JoinPath(plain, *name);
  }
  return plain;
}

Result<Attr> CryptLayer::EncryptedAttr(Attr a, std::string_view path, std::string_view lower_path) {
  if (a.is_file()) {
    // A size that no container has (truncated, foreign) is shown as is: reading it fails
    // with EIO rather than looking like an empty file.
    if (auto p = PlaintextSize(a.size)) a.size = *p;
  } else if (a.is_symlink()) {
    // The size of a link is the length of its target; the padded lower target does not say
    // it. A target that does not authenticate shows size 0 and readlink answers EIO.
    a.size = 0;
    if (Result<std::string> stored = lower().readlink(lower_path); stored) {
      if (Result<std::string> t = DecryptLinkTarget(*keys_, path, *stored); t) a.size = t->size();
    }
  }
  return a;
}

Result<CryptLayer::Place> CryptLayer::Find(std::string_view path, Attr* lower_attr) {
  Result<std::string> enc = EncryptedPath(path);
  if (enc) {
    Result<Attr> a = lower().stat(*enc);
    if (a) {
      if (lower_attr) *lower_attr = *a;
      return Place{*enc, true};
    }
    // ENOTDIR: an encrypted component on the way is a file, so the path is ours and wrong.
    if (a.code() != ENOENT) return Named(a.error(), path);
  }
  std::vector<std::string_view> parts = SplitPath(path);
  bool plaintext_possible =
      options_.plaintext != PlaintextFiles::kHidden && !parts.empty() && parts[0] != kEncDir;
  if (plaintext_possible && parts.size() > 1) {
    // Below an encrypted top-level folder there is nothing plaintext.
    Result<std::string> top = EncryptedPath(parts[0]);
    if (top && lower().stat(*top)) plaintext_possible = false;
  }
  if (!plaintext_possible) {
    if (!enc) return enc.error();
    return Err(ENOENT, "crypt: '" + std::string(path) + "': no such file or folder");
  }
  Result<Attr> a = lower().stat(path);
  if (!a) return Named(a.error(), path);
  if (lower_attr) *lower_attr = *a;
  return Place{std::string(path), false};
}

Status CryptLayer::CheckPlaintextWritable(std::string_view path, std::string_view what) const {
  if (options_.plaintext == PlaintextFiles::kReadWrite) return Ok();
  return Err(EROFS, "crypt: " + std::string(what) + " '" + std::string(path) +
                        "': plaintext files beside .enc/ are read-only (plaintext_files = "
                        "\"read-write\" allows writing them)");
}

Result<CryptLayer::Place> CryptLayer::PlaceForNew(std::string_view path) {
  std::vector<std::string_view> parts = SplitPath(path);
  if (parts.empty()) return Err(EEXIST, "crypt: the root exists");
  Result<std::string> enc = EncryptedPath(path);
  if (!enc) return enc.error();
  if (parts.size() == 1) return Place{*enc, true};
  HFVFS_ASSIGN_OR_RETURN(std::string top, EncryptedPath(parts[0]));
  Result<Attr> t = lower().stat(top);
  if (t) return Place{*enc, true};
  if (t.code() != ENOENT) return Named(t.error(), path);
  if (options_.plaintext != PlaintextFiles::kHidden && parts[0] != kEncDir) {
    if (lower().stat(parts[0])) {
      HFVFS_RETURN_IF_ERROR(CheckPlaintextWritable(path, "create"));
      return Place{std::string(path), false};
    }
  }
  return Err(ENOENT, "crypt: '" + std::string(ParentPath(path)) + "': no such folder");
}

Status CryptLayer::EnsureEncRoot() {
  Status s = lower().mkdir(kEncDir, 0755);
  if (!s && s.code() != EEXIST) return s.error().With("crypt: creating .enc/");
  return Ok();
}

Result<Attr> CryptLayer::stat(std::string_view path) {
  if (path.empty()) return lower().stat(path);
  Attr a;
  HFVFS_ASSIGN_OR_RETURN(Place place, Find(path, &a));
  if (!place.encrypted) return a;
  return EncryptedAttr(a, path, place.lower);
}

Result<std::vector<DirEntry>> CryptLayer::list(std::string_view dir) {
  std::vector<DirEntry> out;
  auto decrypt_into = [&](const std::vector<DirEntry>& entries, std::string_view parent,
                          std::string_view lower_parent) {
    for (const DirEntry& e : entries) {
      auto name = DecryptName(*keys_, options_.names, parent, e.name);
      if (!name) continue;  // another key's entry, or not ours
      Result<Attr> a =
          EncryptedAttr(e.attr, JoinPath(parent, *name), JoinPath(lower_parent, e.name));
      out.push_back({std::move(*name), *a});
    }
  };
  if (dir.empty()) {
    Result<std::vector<DirEntry>> enc = lower().list(kEncDir);
    if (enc) {
      decrypt_into(*enc, "", kEncDir);
    } else if (enc.code() != ENOENT) {
      return enc.error().With("crypt: listing .enc/");
    }
    if (options_.plaintext != PlaintextFiles::kHidden) {
      HFVFS_ASSIGN_OR_RETURN(std::vector<DirEntry> plain, lower().list(""));
      std::vector<std::string> seen;
      for (const DirEntry& e : out) seen.push_back(e.name);
      std::sort(seen.begin(), seen.end());
      for (DirEntry& e : plain) {
        if (e.name == kEncDir || std::binary_search(seen.begin(), seen.end(), e.name)) continue;
        out.push_back(std::move(e));
      }
    }
    return out;
  }
  Attr a;
  HFVFS_ASSIGN_OR_RETURN(Place place, Find(dir, &a));
  if (!a.is_dir()) return Err(ENOTDIR, "crypt: '" + std::string(dir) + "' is not a folder");
  HFVFS_ASSIGN_OR_RETURN(std::vector<DirEntry> entries, lower().list(place.lower));
  if (!place.encrypted) return entries;
  decrypt_into(entries, dir, place.lower);
  return out;
}

Status CryptLayer::StartContainer(CryptNode& node, File& lower_file, std::string_view path) {
  const bool random = lower_random_write();
  node.loaded = false;
  randombytes_buf(node.file_id.data(), node.file_id.size());
  DeriveFileKeys(*keys_, node.file_id, node.keys);
  HFVFS_RETURN_IF_ERROR(WriteExact(lower_file, 0, EncodeHeader(node.keys, node.file_id, path)));
  if (random) {
    // The empty final record now; append-only lowers get it when the file is finalised.
    std::array<uint8_t, kRecordOverhead> final_record;
    SealRecord(node.keys, node.file_id, 0, true, {}, final_record);
    HFVFS_RETURN_IF_ERROR(WriteExact(lower_file, kHeaderBytes, final_record));
  }
  node.size = 0;
  node.append_mode = !random;
  node.finalized = false;
  node.final_verified = random;
  node.pending.clear();
  node.loaded = true;
  return Ok();
}

Result<std::unique_ptr<File>> CryptLayer::open(std::string_view path, int flags) {
  if (path.empty()) return Err(EISDIR, "crypt: the root is a folder");
  Attr a;
  HFVFS_ASSIGN_OR_RETURN(Place place, Find(path, &a));
  if (!place.encrypted) {
    if (WantsWrite(flags) || (flags & O_TRUNC)) {
      HFVFS_RETURN_IF_ERROR(CheckPlaintextWritable(path, "open for writing"));
    }
    return lower().open(place.lower, flags);
  }
  if (a.is_dir()) return Err(EISDIR, "crypt: '" + std::string(path) + "' is a folder");
  if (a.is_symlink()) return Err(ELOOP, "crypt: '" + std::string(path) + "' is a symlink");
  const bool random = lower_random_write();
  const bool truncating = (flags & O_TRUNC) && WantsWrite(flags);
  // Writers read too (records are rewritten whole). Without random writes only a truncating
  // open can write: it starts a new container.
  const bool writable = WantsWrite(flags) && (random || truncating);
  int lower_flags = flags & ~(O_APPEND | O_ACCMODE | O_TRUNC | O_CREAT | O_EXCL);
  if (writable) {
    lower_flags |= random ? O_RDWR : (flags & O_ACCMODE);
    if (truncating) lower_flags |= O_TRUNC;
  } else {
    lower_flags |= O_RDONLY;
  }
  HFVFS_ASSIGN_OR_RETURN(std::unique_ptr<File> lf, lower().open(place.lower, lower_flags));
  std::shared_ptr<CryptNode> node = Node(place.lower);
  {
    std::unique_lock lock(node->mu);
    if (truncating) {
      Status s = StartContainer(*node, *lf, path);
      if (!s) {
        (void)lf->close();
        return Named(s.error(), path);
      }
    } else if (!node->loaded) {
      Result<Attr> la = lf->stat();
      std::array<uint8_t, kHeaderBytes> header{};
      Status s = la ? ReadExact(*lf, 0, header) : Status(la.error());
      io_.header_reads.fetch_add(1, std::memory_order_relaxed);
      if (s) s = DecodeHeader(*keys_, header, path, node->file_id, node->keys);
      std::optional<uint64_t> size = la ? PlaintextSize(la->size) : std::nullopt;
      if (s && !size) {
        s = Err(EIO, "object size " + std::to_string(la->size) +
                         " is not a container size (truncated or extended)");
      }
      if (s && *size % kChunkBytes == 0) {
        // An empty final record is never read for data (a zero-length file is never read at
        // all): authenticate it now, so an object cut at a record boundary cannot pass for a
        // shorter file.
        uint64_t index = RecordCount(*size) - 1;
        std::array<uint8_t, kRecordOverhead> final_record{};
        s = ReadExact(*lf, RecordOffset(index), final_record);
        if (s) s = OpenRecord(node->keys, node->file_id, index, true, final_record, {});
        if (s) node->final_verified = true;
      }
      if (!s) {
        CountAuthFailure();
        (void)lf->close();
        return Named(s.error(), path);
      }
      node->size = *size;
      node->append_mode = false;
      node->loaded = true;
    }
  }
  // Without random writes, a non-truncating writer reads fine and each write answers
  // EOPNOTSUPP with the reason.
  return std::unique_ptr<File>(std::make_unique<CryptFile>(
      *this, std::move(lf), std::move(node), std::string(path), writable, WantsWrite(flags)));
}

Result<std::unique_ptr<File>> CryptLayer::create(std::string_view path, uint32_t mode, int flags) {
  HFVFS_ASSIGN_OR_RETURN(Place place, PlaceForNew(path));
  if (!place.encrypted) return lower().create(place.lower, mode, flags);
  if (Result<Attr> existing = lower().stat(place.lower); existing) {
    // Created by someone else since the caller looked: O_EXCL fails, otherwise open it (a
    // new header over old records would leave an object of the wrong size).
    if (flags & O_EXCL) return Err(EEXIST, "crypt: '" + std::string(path) + "' exists");
    return open(path, flags & ~O_CREAT);
  }
  const bool random = lower_random_write();
  // O_TRUNC: an object that appears between the check and the create starts empty.
  int lower_flags =
      (flags & ~(O_APPEND | O_ACCMODE)) | O_TRUNC | O_CREAT | (random ? O_RDWR : O_WRONLY);
  Result<std::unique_ptr<File>> lf = lower().create(place.lower, mode, lower_flags);
  if (!lf && lf.code() == ENOENT && SplitPath(path).size() == 1) {
    HFVFS_RETURN_IF_ERROR(EnsureEncRoot());
    lf = lower().create(place.lower, mode, lower_flags);
  }
  if (!lf) return Named(lf.error(), path);
  std::shared_ptr<CryptNode> node = Node(place.lower);
  std::unique_lock lock(node->mu);
  Status s = StartContainer(*node, **lf, path);
  if (!s) {
    (void)(*lf)->close();
    (void)lower().remove(place.lower);
    return Named(s.error(), path);
  }
  lock.unlock();
  return std::unique_ptr<File>(std::make_unique<CryptFile>(*this, std::move(*lf), std::move(node),
                                                           std::string(path), true, true));
}

Status CryptLayer::mkdir(std::string_view path, uint32_t mode) {
  HFVFS_ASSIGN_OR_RETURN(Place place, PlaceForNew(path));
  Status s = lower().mkdir(place.lower, mode);
  if (!s && s.code() == ENOENT && place.encrypted && SplitPath(path).size() == 1) {
    HFVFS_RETURN_IF_ERROR(EnsureEncRoot());
    s = lower().mkdir(place.lower, mode);
  }
  if (!s) return Named(s.error(), path);
  return Ok();
}

Status CryptLayer::remove(std::string_view path) {
  HFVFS_ASSIGN_OR_RETURN(Place place, Find(path));
  if (!place.encrypted) HFVFS_RETURN_IF_ERROR(CheckPlaintextWritable(path, "remove"));
  Status s = lower().remove(place.lower);
  if (!s) return Named(s.error(), path);
  return Ok();
}

Status CryptLayer::rmdir(std::string_view path) {
  if (path.empty()) return Err(EBUSY, "crypt: cannot remove the root");
  HFVFS_ASSIGN_OR_RETURN(Place place, Find(path));
  if (!place.encrypted) HFVFS_RETURN_IF_ERROR(CheckPlaintextWritable(path, "rmdir"));
  if (place.encrypted) {
    // Entries of other keys are invisible to us; do not let them make a folder that looks
    // empty impossible to remove without saying why.
    HFVFS_ASSIGN_OR_RETURN(std::vector<DirEntry> entries, lower().list(place.lower));
    if (!entries.empty()) {
      bool ours = false;
      for (const DirEntry& e : entries)
        ours = ours || DecryptName(*keys_, options_.names, path, e.name);
      if (!ours) {
        return Err(ENOTEMPTY,
                   "crypt: '" + std::string(path) + "' holds entries encrypted with another key");
      }
    }
  }
  Status s = lower().rmdir(place.lower);
  if (!s) return Named(s.error(), path);
  return Ok();
}

Status CryptLayer::WriteHeaderFor(const std::string& lower_path, std::string_view old_path,
                                  std::string_view new_path) {
  HFVFS_ASSIGN_OR_RETURN(std::unique_ptr<File> lf, lower().open(lower_path, O_RDWR));
  std::array<uint8_t, kHeaderBytes> header{};
  FileId id{};
  FileKeys fk;
  Status s = ReadExact(*lf, 0, header);
  // Verify first: a rename must not launder contents that were moved here by someone else.
  if (s) s = DecodeHeader(*keys_, header, old_path, id, fk);
  if (s) s = WriteExact(*lf, 0, EncodeHeader(fk, id, new_path));
  if (s) s = lf->flush();
  Status c = lf->close();
  if (!s) return Named(s.error(), old_path);
  return c;
}

Status CryptLayer::CopyEncryptedFile(const std::string& lower_from, std::string_view from,
                                     const std::string& lower_to, std::string_view to) {
  HFVFS_ASSIGN_OR_RETURN(std::unique_ptr<File> in, lower().open(lower_from, O_RDONLY));
  HFVFS_ASSIGN_OR_RETURN(Attr a, in->stat());
  std::array<uint8_t, kHeaderBytes> header{};
  FileId id{};
  FileKeys fk;
  Status s = ReadExact(*in, 0, header);
  if (s) s = DecodeHeader(*keys_, header, from, id, fk);
  if (!s) {
    (void)in->close();
    return Named(s.error(), from);
  }
  Result<std::unique_ptr<File>> out =
      lower().create(lower_to, a.mode ? a.mode : 0644, O_WRONLY | O_TRUNC);
  if (!out) {
    (void)in->close();
    return Named(out.error(), to);
  }
  s = WriteExact(**out, 0, EncodeHeader(fk, id, to));
  std::vector<uint8_t> buf(16 * kRecordBytes);
  for (uint64_t off = kHeaderBytes; s && off < a.size;) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), a.size - off));
    s = ReadExact(*in, off, std::span<uint8_t>(buf.data(), n));
    if (s) s = WriteExact(**out, off, std::span<const uint8_t>(buf.data(), n));
    off += n;
  }
  if (s) s = (*out)->flush();
  Status c1 = (*out)->close();
  (void)in->close();
  if (s) s = c1;
  if (!s) {
    (void)lower().remove(lower_to);
    return Named(s.error(), to);
  }
  return Ok();
}

Status CryptLayer::RenameEncryptedFile(std::string_view from, const std::string& lower_from,
                                       std::string_view to, const std::string& lower_to,
                                       bool noreplace) {
  if (noreplace && lower().stat(lower_to)) {
    return Err(EEXIST, "crypt: rename: '" + std::string(to) + "' exists");
  }
  if (!lower_random_write()) {
    HFVFS_RETURN_IF_ERROR(CopyEncryptedFile(lower_from, from, lower_to, to));
    return lower().remove(lower_from);
  }
  // Bind the contents to the new path first, then move: readers of `to` see the old target or
  // the new file, never a file bound to another path.
  HFVFS_RETURN_IF_ERROR(WriteHeaderFor(lower_from, from, to));
  Status s = lower().rename(lower_from, lower_to, noreplace);
  if (!s) {
    Status back = WriteHeaderFor(lower_from, to, from);
    if (!back)
      spdlog::error("crypt: rename of '{}' failed and its header could not be restored: {}", from,
                    back.error().message());
    return Named(s.error(), from);
  }
  std::lock_guard lock(nodes_mu_);
  auto it = nodes_.find(lower_from);
  if (it != nodes_.end()) {
    nodes_[lower_to] = it->second;
    nodes_.erase(it);
  }
  return Ok();
}

Status CryptLayer::RenameEncryptedDir(std::string_view from, const std::string& lower_from,
                                      std::string_view to, const std::string& lower_to,
                                      bool noreplace) {
  if (IsUnder(to, from)) {
    return Err(EINVAL, "crypt: cannot move '" + std::string(from) + "' into itself");
  }
  Result<Attr> target = lower().stat(lower_to);
  if (target) {
    if (noreplace) return Err(EEXIST, "crypt: rename: '" + std::string(to) + "' exists");
    if (!target->is_dir())
      return Err(ENOTDIR, "crypt: rename: '" + std::string(to) + "' is not a folder");
    HFVFS_RETURN_IF_ERROR(lower().rmdir(lower_to));  // ENOTEMPTY when it holds anything
  }
  HFVFS_ASSIGN_OR_RETURN(Attr self, lower().stat(lower_from));
  HFVFS_RETURN_IF_ERROR(lower().mkdir(lower_to, self.mode ? self.mode : 0755));
  // Names are bound to their parent path: every descendant is renamed under its new parent.
  HFVFS_ASSIGN_OR_RETURN(std::vector<DirEntry> entries, lower().list(lower_from));
  for (const DirEntry& e : entries) {
    std::string child_lower_from = JoinPath(lower_from, e.name);
    auto name = DecryptName(*keys_, options_.names, from, e.name);
    if (!name) {
      // Another key's entry: it cannot be re-encrypted; keep it with the folder.
      HFVFS_RETURN_IF_ERROR(lower().rename(child_lower_from, JoinPath(lower_to, e.name), true));
      continue;
    }
    std::string child_from = JoinPath(from, *name), child_to = JoinPath(to, *name);
    HFVFS_ASSIGN_OR_RETURN(std::string enc, EncryptName(*keys_, options_.names, to, *name));
    std::string child_lower_to = JoinPath(lower_to, enc);
    if (e.attr.is_dir()) {
      HFVFS_RETURN_IF_ERROR(
          RenameEncryptedDir(child_from, child_lower_from, child_to, child_lower_to, true));
    } else if (e.attr.is_symlink()) {
      HFVFS_RETURN_IF_ERROR(
          RenameEncryptedLink(child_from, child_lower_from, child_to, child_lower_to, true));
    } else {
      HFVFS_RETURN_IF_ERROR(
          RenameEncryptedFile(child_from, child_lower_from, child_to, child_lower_to, true));
    }
  }
  return lower().rmdir(lower_from);
}

Status CryptLayer::rename(std::string_view from, std::string_view to, bool noreplace) {
  if (from == to) return Ok();
  Attr a;
  HFVFS_ASSIGN_OR_RETURN(Place src, Find(from, &a));
  HFVFS_ASSIGN_OR_RETURN(Place dst, PlaceForNew(to));
  if (src.encrypted != dst.encrypted) {
    return Err(EXDEV, "crypt: rename between encrypted and plaintext folders ('" +
                          std::string(from) + "' -> '" + std::string(to) + "')");
  }
  if (!src.encrypted) {
    HFVFS_RETURN_IF_ERROR(CheckPlaintextWritable(from, "rename"));
    return lower().rename(src.lower, dst.lower, noreplace);
  }
  if (a.is_dir()) return RenameEncryptedDir(from, src.lower, to, dst.lower, noreplace);
  if (a.is_symlink()) return RenameEncryptedLink(from, src.lower, to, dst.lower, noreplace);
  return RenameEncryptedFile(from, src.lower, to, dst.lower, noreplace);
}

Status CryptLayer::setattr(std::string_view path, const SetAttr& change) {
  Attr a;
  HFVFS_ASSIGN_OR_RETURN(Place place, Find(path, &a));
  if (!place.encrypted) {
    HFVFS_RETURN_IF_ERROR(CheckPlaintextWritable(path, "setattr"));
    return lower().setattr(place.lower, change);
  }
  if (change.set_size) {
    if (!a.is_file())
      return Err(EISDIR, "crypt: truncate: '" + std::string(path) + "' is a folder");
    HFVFS_ASSIGN_OR_RETURN(std::unique_ptr<File> f, open(path, O_RDWR));
    Status s = f->truncate(change.size);
    Status c = f->close();
    HFVFS_RETURN_IF_ERROR(s);
    HFVFS_RETURN_IF_ERROR(c);
  }
  if (change.set_mode || change.set_mtime) {
    SetAttr rest = change;
    rest.set_size = false;
    return lower().setattr(place.lower, rest);
  }
  return Ok();
}

Status CryptLayer::symlink(std::string_view target, std::string_view path) {
  HFVFS_ASSIGN_OR_RETURN(Place place, PlaceForNew(path));
  if (!place.encrypted) return lower().symlink(target, place.lower);
  if (!lower().capabilities().symlinks) {
    return Err(EOPNOTSUPP,
               "crypt: symlink '" + std::string(path) + "': the lower layer has no symlinks");
  }
  Result<std::string> stored = EncryptLinkTarget(*keys_, path, target);
  if (!stored) return Named(stored.error(), path);
  Status s = lower().symlink(*stored, place.lower);
  if (!s && s.code() == ENOENT && SplitPath(path).size() == 1) {
    HFVFS_RETURN_IF_ERROR(EnsureEncRoot());
    s = lower().symlink(*stored, place.lower);
  }
  if (!s) return Named(s.error(), path);
  return Ok();
}

Result<std::string> CryptLayer::readlink(std::string_view path) {
  Attr a;
  HFVFS_ASSIGN_OR_RETURN(Place place, Find(path, &a));
  if (!place.encrypted) return lower().readlink(place.lower);
  if (!a.is_symlink()) return Err(EINVAL, "crypt: '" + std::string(path) + "' is not a symlink");
  Result<std::string> stored = lower().readlink(place.lower);
  if (!stored) return Named(stored.error(), path);
  Result<std::string> target = DecryptLinkTarget(*keys_, path, *stored);
  if (!target) {
    CountAuthFailure();
    return Named(target.error(), path);
  }
  return target;
}

Status CryptLayer::RenameEncryptedLink(std::string_view from, const std::string& lower_from,
                                       std::string_view to, const std::string& lower_to,
                                       bool noreplace) {
  if (noreplace && lower().stat(lower_to)) {
    return Err(EEXIST, "crypt: rename: '" + std::string(to) + "' exists");
  }
  // The target is bound to the link's path: seal it again for `to` (after authenticating it
  // for `from`), as a new link beside the destination, then move that over the destination
  // (atomic for `to` when the lower rename is) and remove the old link.
  HFVFS_ASSIGN_OR_RETURN(std::string target, readlink(from));
  Result<std::string> stored = EncryptLinkTarget(*keys_, to, target);
  if (!stored) return Named(stored.error(), to);
  // A name that is never an encrypted name ('.' is in neither alphabet): listings skip it.
  uint8_t rnd[8];
  randombytes_buf(rnd, sizeof rnd);
  char hex[2 * sizeof rnd + 1];
  sodium_bin2hex(hex, sizeof hex, rnd, sizeof rnd);
  const std::string temp = JoinPath(ParentPath(lower_to), std::string(".hfvfs-link-") + hex);
  Status s = lower().symlink(*stored, temp);
  if (!s) return Named(s.error(), to);
  s = lower().rename(temp, lower_to, noreplace);
  if (!s) {
    (void)lower().remove(temp);
    return Named(s.error(), from);
  }
  s = lower().remove(lower_from);
  if (!s) return Named(s.error(), from);
  return Ok();
}

Result<FsStats> CryptLayer::statfs() {
  HFVFS_ASSIGN_OR_RETURN(FsStats s, lower().statfs());
  s.name_max = static_cast<uint32_t>(MaxNameBytes(options_.names));
  return s;
}

Result<Changes> CryptLayer::changes() {
  HFVFS_ASSIGN_OR_RETURN(Changes below, lower().changes());
  Changes out;
  out.rescan = below.rescan;
  out.token = below.token;
  for (Change& c : below.changes) {
    std::vector<std::string_view> parts = SplitPath(c.path);
    if (!parts.empty() && parts[0] == kEncDir) {
      if (auto plain = DecryptedPath(c.path); plain && !plain->empty()) {
        out.changes.push_back({c.kind, std::move(*plain)});
      }
    } else if (options_.plaintext != PlaintextFiles::kHidden && !parts.empty()) {
      out.changes.push_back(std::move(c));
    }
  }
  return out;
}

}  // namespace hfvfs::crypt
