#include "cache_layer.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>
#include <utility>

namespace hfvfs::cache {

WorkerPool::WorkerPool(int threads) {
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Run(); });
}

WorkerPool::~WorkerPool() { Stop(); }

void WorkerPool::Submit(std::function<void()> job) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    jobs_.push_back(std::move(job));
  }
  cv_.notify_one();
}

bool WorkerPool::SubmitIfIdle(std::function<void()> job) {
  {
    std::lock_guard lock(mu_);
    if (stopping_ || running_ + jobs_.size() >= threads_.size()) return false;
    jobs_.push_front(std::move(job));
  }
  cv_.notify_one();
  return true;
}

size_t WorkerPool::queued() const {
  std::lock_guard lock(mu_);
  return jobs_.size();
}

void WorkerPool::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    stopping_flag_ = true;
    jobs_.clear();
  }
  cv_.notify_all();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

void WorkerPool::Run() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
      if (stopping_) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
      running_++;
    }
    job();
    job = nullptr;  // its captures go before the thread counts as free
    std::lock_guard lock(mu_);
    running_--;
  }
}

namespace {

bool OpensForWriting(int flags) {
  return (flags & O_ACCMODE) != O_RDONLY || (flags & (O_TRUNC | O_APPEND)) != 0;
}

}  // namespace

// A file read from the lower layer without the store (empty version, no store, or opened for
// writing); writes pass through and drop the path's cached chunks.
class PassThroughFile final : public FileWrapper {
 public:
  PassThroughFile(std::unique_ptr<File> lower, CacheLayer& layer, std::string path)
      : FileWrapper(std::move(lower)), layer_(layer), path_(std::move(path)) {}

  Result<size_t> read(uint64_t offset, std::span<std::byte> buf) override {
    HFVFS_ASSIGN_OR_RETURN(size_t n, lower().read(offset, buf));
    layer_.passthrough_bytes_ += static_cast<int64_t>(n);
    layer_.bytes_served_ += static_cast<int64_t>(n);
    return n;
  }
  Result<size_t> write(uint64_t offset, std::span<const std::byte> data) override {
    auto n = lower().write(offset, data);
    layer_.Invalidate(path_);
    return n;
  }
  Status truncate(uint64_t size) override {
    Status s = lower().truncate(size);
    layer_.Invalidate(path_);
    return s;
  }

 private:
  CacheLayer& layer_;
  std::string path_;
};

// What an open cached file shares with its read-ahead jobs.
struct OpenFileState {
  std::unique_ptr<File> lower;
  std::shared_ptr<Layer> lower_layer;
  std::string path;
  std::string version;
  FileKey key{};
  uint64_t size = 0;
  uint64_t chunk_size = 0;
  uint64_t segment_chunks = 1;  // chunks per read-ahead segment
  int streams = 1;              // read-ahead threads of this file at most
  uint64_t stage_chunks = 0;    // cached chunks closer than this to the reader are staged

  std::mutex mu;  // guards window, queued_until, pending, claiming, workers, closed, inflight,
                  // read_seen
  std::condition_variable idle;
  ReadaheadWindow window;
  uint64_t queued_until = 0;     // read-ahead has been queued for chunks below this index
  std::deque<uint64_t> pending;  // chunks to read ahead, in file order
  // Chunks a lane has taken from `pending` but not yet claimed in the store: their readers wait
  // too (else they would find neither a queued chunk nor a fill, and fetch it alone).
  std::vector<uint64_t> claiming;
  int workers = 0;            // pool jobs draining `pending` (queued or running)
  uint64_t reader_chunk = 0;  // the chunk of the latest read: read-ahead behind it is moot
  // Reads this many chunks behind reader_chunk may still be on their way: the kernel keeps up
  // to read_ahead bytes of reads in flight and FUSE threads deliver them in any order, so
  // read-ahead keeps those chunks queued (their readers wait for it instead of fetching alone).
  uint64_t late_chunks = 0;
  bool read_seen = false;   // a read has arrived (the first one may defer read-ahead)
  bool whole_file = false;  // mode "file": every chunk is wanted, behind the reader too
  bool closed = false;
  int inflight = 0;  // read-ahead jobs running (they use the lower handles)

  // Lower handles of read-ahead, opened on first use: segment s is read through
  // readahead_lowers[s % streams], so each handle sees one sequential reader (one stream) when
  // streams is 1, and reads a fixed stride apart otherwise. lowers_mu guards the vector (not
  // the handles, which are thread-safe); taken after `mu` if both.
  std::mutex lowers_mu;
  std::vector<std::unique_ptr<File>> readahead_lowers;

  explicit OpenFileState(const ReadaheadOptions& options) : window(options) {}

  ChunkRef Ref(uint64_t index) const {
    ChunkRef ref;
    ref.id = ChunkId{key, index};
    ref.length = std::min(chunk_size, size - index * chunk_size);
    ref.chunk_size = chunk_size;
    ref.path = path;
    ref.version = version;
    return ref;
  }

  // The read-ahead handle of a segment: a second open of the file, so the demand reads keep
  // their own. Its content must be the version the keys were made with; otherwise read ahead
  // through the reader's handle.
  File* ReadaheadLower(uint64_t segment) {
    std::lock_guard lock(lowers_mu);
    if (readahead_lowers.empty()) readahead_lowers.resize(static_cast<size_t>(streams));
    std::unique_ptr<File>& slot = readahead_lowers[segment % readahead_lowers.size()];
    if (!slot) {
      auto second = lower_layer->open(path, O_RDONLY);
      if (!second) return lower.get();
      auto attr = (*second)->stat();
      if (!attr || attr->version != version || attr->size != size) {
        (void)(*second)->close();
        return lower.get();
      }
      slot = std::move(*second);
    }
    return slot.get();
  }

  void CloseReadaheadLowers() {
    std::lock_guard lock(lowers_mu);
    for (auto& f : readahead_lowers) {
      if (f) (void)f->close();
    }
    readahead_lowers.clear();
  }

  ChunkStore::Fetch Fetcher(uint64_t index, File* file = nullptr) {
    const uint64_t start = index * chunk_size;
    File* source = file ? file : lower.get();
    return [this, source, start](std::span<std::byte> out) -> Status {
      return ReadLower(*source, start, out);
    };
  }

  // Exactly out.size() bytes of the file at `start` from a lower handle, or an error.
  Status ReadLower(File& source, uint64_t start, std::span<std::byte> out) const {
    HFVFS_ASSIGN_OR_RETURN(size_t n, source.read(start, out));
    if (n != out.size()) {
      return Err(EIO, "cache: '" + path + "': the lower layer returned " + std::to_string(n) +
                          " bytes at offset " + std::to_string(start) + ", expected " +
                          std::to_string(out.size()) + " (file changed while open?)");
    }
    return Ok();
  }
};

// The handshake of an early first read (CachedFile::ReadEarly) between its reader and the
// read-ahead thread that fills the chunk.
struct EarlyRead {
  enum class State { kWaiting, kDelivered, kNotServed, kFailed };

  // The filling thread has the reader's bytes: copies them into the reader's buffer.
  void Deliver(std::span<const std::byte> bytes) {
    {
      std::lock_guard lock(mu);
      if (state != State::kWaiting) return;
      std::memcpy(out.data(), bytes.data(), out.size());
      state = State::kDelivered;
    }
    cv.notify_all();
  }

  // Ends a handshake that did not deliver (no effect after Deliver).
  void Finish(State end, Status why) {
    {
      std::lock_guard lock(mu);
      if (state != State::kWaiting) return;
      state = end;
      status = std::move(why);
    }
    cv.notify_all();
  }

  std::mutex mu;  // guards state, status and writes into `out`
  std::condition_variable cv;
  State state = State::kWaiting;
  Status status = Ok();
  // The reader's buffer: written only while state is kWaiting (the reader waits meanwhile).
  std::span<std::byte> out;
};

class CachedFile final : public File {
 public:
  CachedFile(CacheLayer& layer, std::shared_ptr<OpenFileState> state)
      : layer_(layer), state_(std::move(state)) {}

  ~CachedFile() override { StopReadahead(); }

  Result<size_t> read(uint64_t offset, std::span<std::byte> buf) override {
    return ReadPieces(offset, buf, nullptr);
  }

  // Bytes of fills in memory go to the kernel's reply as they are: for a cold sequential
  // reader, most reads wait on a read-ahead fill and would copy 1 MiB out of it.
  Status read_lent(uint64_t offset, std::span<std::byte> buf, const Deliver& deliver) override {
    std::vector<LentBytes> lent;
    HFVFS_RETURN_IF_ERROR(ReadPieces(offset, buf, &lent));
    std::vector<std::span<const std::byte>> pieces;
    pieces.reserve(lent.size());
    for (const LentBytes& l : lent) pieces.push_back(l.bytes);
    deliver(pieces);  // `lent` keeps the buffers alive until it returns
    return Ok();
  }

  // read(), or with `lent` the pieces of read_lent, in order: the bytes of each chunk the range
  // covers, lent from memory or read into `buf` (then a view of `buf` without an owner).
  Result<size_t> ReadPieces(uint64_t offset, std::span<std::byte> buf,
                            std::vector<LentBytes>* lent) {
    OpenFileState& st = *state_;
    if (offset >= st.size || buf.empty()) return size_t{0};
    const uint64_t n = std::min<uint64_t>(buf.size(), st.size - offset);
    // The first read of a cold file (time to first byte) is fetched before read-ahead starts:
    // read-ahead's own lower open and fetch would otherwise compete with it at the source.
    bool defer_readahead = false;
    {
      std::lock_guard lock(st.mu);
      if (!st.read_seen) {
        st.read_seen = true;
        defer_readahead = !layer_.store_->Contains(ChunkId{st.key, offset / st.chunk_size});
      }
    }
    if (!defer_readahead) {
      ScheduleReadahead(offset, n);
    } else {
      HFVFS_ASSIGN_OR_RETURN(bool served, ReadEarly(offset, buf.first(n)));
      if (served) {
        if (lent) lent->push_back({nullptr, buf.first(n)});
        ScheduleReadahead(offset, n);
        layer_.bytes_served_ += static_cast<int64_t>(n);
        return static_cast<size_t>(n);
      }
    }
    uint64_t done = 0;
    while (done < n) {
      const uint64_t pos = offset + done;
      const uint64_t index = pos / st.chunk_size;
      const uint64_t in_chunk = pos - index * st.chunk_size;
      const ChunkRef ref = st.Ref(index);
      const uint64_t take = std::min(n - done, ref.length - in_chunk);
      WaitForQueuedReadahead(index);
      // CatchAll: a failed chunk allocation (bad_alloc) becomes ENOMEM, not an exception.
      LentBytes piece;
      HFVFS_RETURN_IF_ERROR(CatchAll("cache: read of '" + st.path + "'", [&]() -> Result<size_t> {
        return layer_.store_->Read(ref, in_chunk, buf.subspan(done, take), st.Fetcher(index),
                                   lent ? &piece : nullptr);
      }));
      if (lent) {
        if (piece.bytes.empty()) piece.bytes = buf.subspan(done, take);
        lent->push_back(std::move(piece));
      }
      done += take;
    }
    if (defer_readahead) ScheduleReadahead(offset, n);
    layer_.bytes_served_ += static_cast<int64_t>(n);
    return static_cast<size_t>(n);
  }

  Status close() override {
    StopReadahead();
    state_->CloseReadaheadLowers();
    return state_->lower->close();
  }

  Result<Attr> stat() override { return state_->lower->stat(); }

  // A chunk that read-ahead will fetch next is waited for rather than fetched here: two readers
  // of one chunk sequence (read-ahead's stream and demand reads racing it) made a streaming
  // source skip and discard what the other had fetched. Bounded: after kMaxWait the reader
  // fetches it itself.
  void WaitForQueuedReadahead(uint64_t index) {
    static constexpr auto kMaxWait = std::chrono::seconds(2);
    OpenFileState& st = *state_;
    if (layer_.store_->Contains(ChunkId{st.key, index})) return;
    std::unique_lock lock(st.mu);
    auto queued = [&] {
      if (st.closed || layer_.pool_->stopping()) return false;
      if (std::find(st.claiming.begin(), st.claiming.end(), index) != st.claiming.end())
        return true;
      return st.workers > 0 && !st.pending.empty() && st.pending.front() <= index &&
             index <= st.pending.back();
    };
    if (!queued()) return;
    st.idle.wait_for(lock, kMaxWait, [&] { return !queued(); });
  }

  // The first read of a cold file is small (the kernel's first read of a file is a few pages)
  // and its chunk large: waiting for the whole chunk put a fetch of chunk_size before the
  // first byte. Here an idle read-ahead thread fills the chunk instead (one fetch, as for any
  // miss, on the reader's own handle): it reads up to the end of the reader's bytes rounded up
  // to kEarlyPiece, hands the reader its bytes, then reads the rest of the chunk. Ok(false)
  // when this does not apply (the bytes span two chunks, the piece would be the whole chunk, no
  // read-ahead thread is idle, another reader began the chunk meanwhile): the caller reads as
  // usual.
  Result<bool> ReadEarly(uint64_t offset, std::span<std::byte> out) {
    static constexpr uint64_t kEarlyPiece = 64 << 10;
    static constexpr uint64_t kEarlyGap = 4 << 10;
    OpenFileState& st = *state_;
    const uint64_t index = offset / st.chunk_size;
    const uint64_t start = index * st.chunk_size;
    const uint64_t in_chunk = offset - start;
    const ChunkRef ref = st.Ref(index);
    const uint64_t wanted_end = in_chunk + out.size();
    const uint64_t piece = (wanted_end + kEarlyPiece - 1) / kEarlyPiece * kEarlyPiece;
    // Only a first read of a few pages (the kernel's own first read of a file): a larger one
    // keeps one request per chunk.
    if (wanted_end > kEarlyPiece || piece >= ref.length) return false;
    {
      std::lock_guard lock(st.mu);
      if (st.closed) return false;
      st.inflight++;  // the job uses `lower`: close() waits for it
    }
    auto early = std::make_shared<EarlyRead>();
    early->out = out;
    // Whenever the job ends, or is dropped unrun: the reader stops waiting, close() may go on.
    struct JobEnd {
      JobEnd(std::shared_ptr<OpenFileState> s, std::shared_ptr<EarlyRead> e)
          : state(std::move(s)), early(std::move(e)) {}
      JobEnd(const JobEnd&) = delete;
      JobEnd& operator=(const JobEnd&) = delete;
      std::shared_ptr<OpenFileState> state;
      std::shared_ptr<EarlyRead> early;
      ~JobEnd() {
        early->Finish(EarlyRead::State::kNotServed, Ok());
        std::lock_guard lock(state->mu);
        state->inflight--;
        state->idle.notify_all();
      }
    };
    auto end = std::make_shared<JobEnd>(state_, early);
    const bool submitted = layer_.pool_->SubmitIfIdle([state = state_, store = layer_.store_.get(),
                                                       early, end, ref, start, in_chunk, piece] {
      File& lower = *state->lower;
      Result<bool> filled = store->FillForReader(ref, [&](std::span<std::byte> chunk) -> Status {
        HFVFS_RETURN_IF_ERROR(state->ReadLower(lower, start, chunk.first(piece)));
        early->Deliver(chunk.subspan(in_chunk, early->out.size()));
        // The rest from one page past the piece's end, then that page: a lower that takes a
        // read starting where the last one ended for a sequential reader (hub opens an
        // open-ended stream there and keeps it) sees ranges of their own, and every byte is
        // still read once.
        if (piece + kEarlyGap >= chunk.size()) {
          return state->ReadLower(lower, start + piece, chunk.subspan(piece));
        }
        HFVFS_RETURN_IF_ERROR(
            state->ReadLower(lower, start + piece + kEarlyGap, chunk.subspan(piece + kEarlyGap)));
        return state->ReadLower(lower, start + piece, chunk.subspan(piece, kEarlyGap));
      });
      if (!filled) early->Finish(EarlyRead::State::kFailed, filled.error());
    });
    end.reset();  // the job's copy decides when it ends
    if (!submitted) return false;
    std::unique_lock lock(early->mu);
    early->cv.wait(lock, [&] { return early->state != EarlyRead::State::kWaiting; });
    if (early->state == EarlyRead::State::kDelivered) return true;
    if (early->state == EarlyRead::State::kFailed) return early->status.error();
    return false;
  }

  // Queues read-ahead for the whole file (mode "file").
  void PrefetchAll() {
    Queue(0, (state_->size + state_->chunk_size - 1) / state_->chunk_size, state_->streams);
  }

 private:
  void ScheduleReadahead(uint64_t offset, uint64_t length) {
    OpenFileState& st = *state_;
    uint64_t first = 0;
    uint64_t end_index = 0;
    int lanes = 1;
    {
      std::lock_guard lock(st.mu);
      const uint64_t window = st.window.OnRead(offset, length);
      st.reader_chunk = offset / st.chunk_size;
      st.idle.notify_all();  // read-ahead lanes waiting for the reader to come near
      if (window == 0) {
        st.queued_until = 0;
        st.pending.clear();  // random access: fetch only what is asked
        return;
      }
      const uint64_t read_end = offset + length;
      const uint64_t target = std::min(st.size, read_end + window);
      if (target <= read_end) return;
      // From the chunk after the last one this read touches: those the read itself fetches (on
      // the reader's open handle), so the first byte never waits for read-ahead's own lower
      // open and a whole segment.
      first = std::max((read_end + st.chunk_size - 1) / st.chunk_size, st.queued_until);
      end_index = (target - 1) / st.chunk_size + 1;
      if (first >= end_index) return;
      st.queued_until = end_index;
      lanes = static_cast<int>(std::min<uint64_t>(static_cast<uint64_t>(st.streams),
                                                  window / (st.segment_chunks * st.chunk_size)));
    }
    Queue(first, end_index, lanes);
  }

  // Read-ahead of one file runs as jobs that take its chunks in file order, a segment at a time
  // (one lower read each); `lanes` jobs at most run at once for this file, so a small window is
  // one sequential reader and a large one several ranged streams. fetch_concurrency bounds the
  // jobs of all files.
  void Queue(uint64_t first, uint64_t end_index, int lanes) {
    int start_jobs = 0;
    {
      std::lock_guard lock(state_->mu);
      if (state_->closed) return;
      for (uint64_t index = first; index < end_index; ++index) state_->pending.push_back(index);
      lanes = std::clamp(lanes, 1, state_->streams);
      start_jobs = std::max(0, lanes - state_->workers);
      state_->workers += start_jobs;
    }
    for (int i = 0; i < start_jobs; ++i) {
      layer_.pool_->Submit([state = state_, store = layer_.store_.get(),
                            pool = layer_.pool_.get()] { RunReadahead(*state, *store, *pool); });
    }
  }

  static void RunReadahead(OpenFileState& state, ChunkStore& store, WorkerPool& pool) {
    {
      std::lock_guard lock(state.mu);
      if (state.closed) {
        state.workers--;
        state.idle.notify_all();
        return;
      }
      state.inflight++;
    }
    std::vector<ChunkRef> run;
    for (;;) {
      run.clear();
      uint64_t segment = 0;
      {
        std::lock_guard lock(state.mu);
        // A job that fell behind the reader must not fetch again what the reader already
        // read (and the budget may have evicted since); chunks of reads still in flight stay.
        while (!state.whole_file && !state.pending.empty() &&
               state.pending.front() + state.late_chunks < state.reader_chunk) {
          state.pending.pop_front();
        }
        if (state.closed || state.pending.empty() || pool.stopping()) {
          state.workers--;
          state.inflight--;
          break;
        }
        segment = state.pending.front() / state.segment_chunks;
        while (!state.pending.empty() && state.pending.front() / state.segment_chunks == segment &&
               (run.empty() || state.pending.front() == run.back().id.index + 1)) {
          run.push_back(state.Ref(state.pending.front()));
          state.claiming.push_back(state.pending.front());
          state.pending.pop_front();
        }
      }
      // Once the run's chunks are claimed in the store (fills readers wait on), or found there,
      // its readers stop waiting here.
      bool unclaimed = true;
      auto claimed = [&] {
        if (!std::exchange(unclaimed, false)) return;
        std::lock_guard lock(state.mu);
        for (const ChunkRef& ref : run) std::erase(state.claiming, ref.id.index);
        state.idle.notify_all();  // demand readers waiting for these chunks
      };
      // Cached chunks are staged in memory once the reader is near them (several lanes at
      // once, one request per chunk); ones further ahead wait for it, so the stage budget holds
      // what the reader needs next. A reader that does not come near in time (it stopped or
      // went elsewhere) gets the kernel's read-ahead instead.
      if (state.stage_chunks > 0 && !state.whole_file && store.AllCached(run)) {
        const bool near = WaitForReader(state, pool, run.front().id.index);
        claimed();
        (void)CatchAll("cache: staging", [&]() -> Status {
          for (const ChunkRef& ref : run) {
            if (!near) {
              store.Advise(ref.id);
            } else if (!ReaderPassed(state, ref.id.index)) {
              store.Stage(ref);
            }
          }
          return Ok();
        });
        continue;
      }
      // A failure is not the reader's: the demand read retries and reports it.
      // The handle is opened only when something must be fetched (not for cached chunks).
      (void)CatchAll("cache: read-ahead", [&]() -> Status {
        return store.PrefetchRun(run, [&](uint64_t first, std::span<std::byte> out) {
          claimed();  // PrefetchRun claims every chunk of the run before its first fetch
          return state.Fetcher(first, state.ReadaheadLower(segment))(out);
        });
      });
      claimed();
    }
    state.idle.notify_all();
  }

  // Waits (bounded) until the reader is within stage_chunks of chunk `index`; true if it is.
  static bool WaitForReader(OpenFileState& state, WorkerPool& pool, uint64_t index) {
    static constexpr auto kMaxWait = std::chrono::milliseconds(200);
    std::unique_lock lock(state.mu);
    auto near = [&] { return index < state.reader_chunk + state.stage_chunks; };
    state.idle.wait_for(lock, kMaxWait, [&] { return near() || state.closed || pool.stopping(); });
    return near() && !state.closed;
  }

  static bool ReaderPassed(OpenFileState& state, uint64_t index) {
    std::lock_guard lock(state.mu);
    return index < state.reader_chunk;
  }

  // Queued jobs see `closed` and skip; running ones are waited for, since they use `lower`.
  void StopReadahead() {
    std::unique_lock lock(state_->mu);
    state_->closed = true;
    state_->idle.notify_all();  // lanes waiting for the reader
    state_->idle.wait(lock, [&] { return state_->inflight == 0; });
  }

  CacheLayer& layer_;
  std::shared_ptr<OpenFileState> state_;
};

namespace {

// Read-ahead beyond a quarter of the budget would evict its own chunks before they are read
// (and count as waste), so the window is capped there.
CacheOptions Normalized(CacheOptions options) {
  const uint64_t cap = std::max(options.chunk_size, options.max_size / 4);
  options.readahead.max = std::min(options.readahead.max, cap);
  options.readahead.min = std::min(options.readahead.min, options.readahead.max);
  return options;
}

}  // namespace

CacheLayer::CacheLayer(std::shared_ptr<Layer> lower, CacheOptions options)
    : LayerWrapper(std::move(lower)), options_(Normalized(std::move(options))) {}

CacheLayer::~CacheLayer() {
  if (pool_) pool_->Stop();
}

Status CacheLayer::start() {
  HFVFS_RETURN_IF_ERROR(LayerWrapper::start());
  ChunkStoreOptions store_options;
  store_options.dir = options_.dir;
  store_options.max_bytes = options_.max_size;
  store_options.stage_max_bytes = options_.warm_readahead;
  store_options.stage_cached_pages = options_.stage_cached_pages;
  if (!options_.direct_reads) store_options.direct_read_min = 0;
  // Room to reuse what one sequential reader's read-ahead has in flight, plus the stage budget.
  store_options.buffer_pool_bytes = static_cast<uint64_t>(options_.readahead_streams) *
                                        std::max(options_.chunk_size, options_.readahead_segment) +
                                    options_.warm_readahead;
  HFVFS_ASSIGN_OR_RETURN(store_, ChunkStore::Open(store_options));
  pool_ = std::make_unique<WorkerPool>(options_.fetch_concurrency);
  return Ok();
}

Status CacheLayer::shutdown(std::chrono::steady_clock::time_point deadline) {
  if (pool_) pool_->Stop();
  return LayerWrapper::shutdown(deadline);
}

Result<std::unique_ptr<File>> CacheLayer::open(std::string_view path, int flags) {
  HFVFS_ASSIGN_OR_RETURN(std::unique_ptr<File> file, lower().open(path, flags));
  if (OpensForWriting(flags)) Invalidate(path);
  if (!store_ || OpensForWriting(flags)) {
    return std::unique_ptr<File>(
        std::make_unique<PassThroughFile>(std::move(file), *this, std::string(path)));
  }
  auto attr = file->stat();
  if (!attr) {
    (void)file->close();
    return attr.error();
  }
  if (attr->version.empty() || !attr->is_file()) {
    return std::unique_ptr<File>(
        std::make_unique<PassThroughFile>(std::move(file), *this, std::string(path)));
  }
  auto state = std::make_shared<OpenFileState>(options_.readahead);
  state->lower = std::move(file);
  state->lower_layer = lower_ptr();
  state->path = std::string(path);
  state->version = attr->version;
  state->size = attr->size;
  state->chunk_size = options_.chunk_size;
  state->key = MakeFileKey(state->path, state->version, state->chunk_size);
  state->whole_file = options_.whole_file;
  state->segment_chunks = std::max<uint64_t>(1, options_.readahead_segment / state->chunk_size);
  state->late_chunks = options_.readahead.backward_tolerance / state->chunk_size;
  state->streams = std::max(1, options_.readahead_streams);
  if (options_.warm_readahead > 0) {
    // The budget holds the reader's distance plus the segment a lane is staging past it.
    const uint64_t segment_bytes = state->segment_chunks * state->chunk_size;
    const uint64_t distance = options_.warm_readahead > segment_bytes
                                  ? options_.warm_readahead - segment_bytes
                                  : options_.warm_readahead;
    state->stage_chunks = std::max<uint64_t>(1, distance / state->chunk_size);
  }
  auto cached = std::make_unique<CachedFile>(*this, std::move(state));
  if (options_.whole_file) cached->PrefetchAll();
  return std::unique_ptr<File>(std::move(cached));
}

Result<std::unique_ptr<File>> CacheLayer::create(std::string_view path, uint32_t mode, int flags) {
  HFVFS_ASSIGN_OR_RETURN(std::unique_ptr<File> file, lower().create(path, mode, flags));
  Invalidate(path);
  return std::unique_ptr<File>(
      std::make_unique<PassThroughFile>(std::move(file), *this, std::string(path)));
}

Status CacheLayer::remove(std::string_view path) {
  Status s = lower().remove(path);
  Invalidate(path);
  return s;
}

Status CacheLayer::rmdir(std::string_view path) {
  Status s = lower().rmdir(path);
  InvalidateTree(path);
  return s;
}

Status CacheLayer::rename(std::string_view from, std::string_view to, bool noreplace) {
  Status s = lower().rename(from, to, noreplace);
  InvalidateTree(from);
  InvalidateTree(to);
  return s;
}

Status CacheLayer::setattr(std::string_view path, const SetAttr& change) {
  Status s = lower().setattr(path, change);
  if (change.set_size) Invalidate(path);
  return s;
}

void CacheLayer::Invalidate(std::string_view path) {
  if (store_) store_->InvalidatePath(path);
}

void CacheLayer::InvalidateTree(std::string_view path) {
  if (store_) store_->InvalidateTree(path);
}

void CacheLayer::counters(std::vector<std::pair<std::string, int64_t>>& out) const {
  out.emplace_back("bytes_served", bytes_served_.load());
  if (!store_) {
    out.emplace_back("bytes_from_lower", passthrough_bytes_.load());
    return;
  }
  const ChunkStoreCounters& c = store_->counters();
  out.emplace_back("hits", c.hits.load());
  out.emplace_back("misses", c.misses.load());
  out.emplace_back("fill_waits", c.fill_waits.load());
  out.emplace_back("prefetches", c.prefetches.load());
  out.emplace_back("bytes_from_lower", c.bytes_from_lower.load() + passthrough_bytes_.load());
  out.emplace_back("evictions", c.evictions.load());
  out.emplace_back("readahead_waste", c.readahead_waste.load());
  out.emplace_back("corrupt_chunks", c.corrupt_chunks.load());
  out.emplace_back("fetch_errors", c.fetch_errors.load());
  out.emplace_back("disk_errors", c.disk_errors.load());
  out.emplace_back("staged_chunks", c.staged.load());
  out.emplace_back("staged_unread", c.staged_unread.load());
  out.emplace_back("direct_reads", c.direct_reads.load());
  out.emplace_back("cached_bytes", static_cast<int64_t>(store_->used_bytes()));
  out.emplace_back("cached_chunks", static_cast<int64_t>(store_->chunk_count()));
  out.emplace_back("degraded", store_->degraded() ? 1 : 0);
}

}  // namespace hfvfs::cache
