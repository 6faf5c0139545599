#include "s3_layer.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <future>
#include <map>
#include <set>
#include <utility>

#include "hfvfs/path.h"
#include "segment_reader.h"

namespace hfvfs::s3 {
namespace {

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Attr FileAttr(const ObjectInfo& o) {
  Attr a;
  a.type = FileType::kFile;
  a.size = o.size;
  a.mtime_ns = o.mtime_ns;
  a.version = o.etag;
  return a;
}

constexpr auto kKnownDirTtl = std::chrono::seconds(5);
// Recent listings (S3Layer::listed): a name missing from a listing this young is ENOENT without
// a request (the kernel's own negative entries live as long); a listing up to kListingKept old
// is refreshed on a miss; folders above kListingMaxNames names, or beyond kMaxListings folders,
// are not kept.
constexpr auto kListingFresh = std::chrono::seconds(1);
constexpr auto kListingKept = std::chrono::seconds(30);
constexpr size_t kListingMaxNames = 1000;
constexpr size_t kMaxListings = 256;
// A HEAD this young serves the open that follows it (S3Core::recent_head): the kernel opens a
// file microseconds after its lookup. At most kMaxRecentHeads are kept (then all are dropped).
constexpr auto kHeadFresh = std::chrono::seconds(1);
constexpr size_t kMaxRecentHeads = 1024;
// Largest piece a stream skips over in one step (a FUSE read is at most 1 MiB).
constexpr size_t kSkipPiece = 1 << 20;
// A read starting at most this far after the furthest byte read so far is sequential (the
// kernel's read-ahead asks for a few 1 MiB blocks at once; the cache's read-ahead segments, 4 MiB
// apart on different handles, must not look sequential).
constexpr uint64_t kSequentialSlack = 2 << 20;
// How many times one read reopens a stream that broke (each open is itself retried).
constexpr int kStreamReopens = 5;
// A segment's GET body is read in pieces of this size: a dropped segment's fetch stops after
// the piece it is in, and the reader may copy what has arrived. The first piece of each GET is
// smaller, so a reader's first bytes (a file's first read is a few pages) come sooner.
constexpr size_t kSegmentPiece = 256 << 10;
constexpr size_t kFirstSegmentPiece = 64 << 10;

// One segment of a sequential reader (segment_reader.h): bytes [offset, offset + into.size())
// with one ranged GET under If-Match, reopened where it stopped when its body breaks (a bounded
// number of times; each open is itself retried by the client). ESTALE when the object changed.
Status FetchSegment(S3Core& core, const std::string& key, const std::string& path,
                    const std::string& etag, uint64_t offset, std::span<std::byte> into,
                    SegmentProgress& progress) {
  S3Counters& counters = core.client().counters();
  const uint64_t end = offset + into.size();
  size_t filled = 0;
  int failures = 0;
  while (filled < into.size() && !progress.cancelled()) {
    Result<std::unique_ptr<HttpStream>> stream =
        core.client().open_get(key, offset + filled, etag, end);
    if (!stream) return stream.error().With("s3: " + path);
    if (!*stream) {
      return Err(EIO, "s3: " + path + ": object shorter than its size (" +
                          std::to_string(offset + filled) + ")");
    }
    Status step = Ok();
    size_t piece_size = kFirstSegmentPiece;
    while (filled < into.size() && !progress.cancelled()) {
      const size_t piece = std::min(std::exchange(piece_size, kSegmentPiece), into.size() - filled);
      Result<size_t> n = (*stream)->read(into.subspan(filled, piece));
      if (!n || *n == 0) {
        step = n ? Err(EIO, "the body ended early") : n.error();
        break;
      }
      filled += *n;
      counters.bytes_received += static_cast<int64_t>(*n);
      progress.received(filled);
      failures = 0;
    }
    if (step) continue;
    if (++failures > kStreamReopens) {
      return step.error().With("s3: " + path + " at byte " + std::to_string(offset + filled));
    }
    counters.retries++;
  }
  return Ok();
}

// One open object. Three modes: kRead (an existing object, never written through this handle),
// kWrite (new content being written: create, O_TRUNC, or truncate(0) of a kRead handle), and
// kDone-with-multipart (a completed multipart object; more writes are EOPNOTSUPP).
class S3File : public File {
 public:
  // A reader of an existing object.
  S3File(std::shared_ptr<S3Core> layer, std::string path, ObjectInfo info, bool writable)
      : layer_(std::move(layer)),
        path_(std::move(path)),
        key_(layer_->key(path_)),
        info_(std::move(info)),
        writable_(writable) {}

  // A writer of new content.
  S3File(std::shared_ptr<S3Core> layer, std::string path)
      : layer_(std::move(layer)), path_(std::move(path)), key_(layer_->key(path_)) {
    writable_ = true;
    start_writing();
  }

  ~S3File() override {
    // Parts still in flight reference this object's buffers: wait for them.
    std::lock_guard<std::mutex> lock(mu_);
    (void)wait_all_parts();
  }

  // Reads of an existing object. A read that starts at, or a little after (kSequentialSlack),
  // the furthest byte read so far is sequential: it is served by one open-ended GET whose body
  // is read straight into the callers' buffers, and the next reads continue on it. The
  // kernel's read-ahead has several reads of one handle in flight and they arrive in any order,
  // so a read up to `seek_window` ahead of the stream skips forward on it and keeps the bytes
  // it skipped for the reads that ask for them next. Any other read is one ranged GET of
  // exactly its bytes, made without holding the stream, so random reads of one handle run in
  // parallel; a jump forward past `seek_window` also closes the stream (the reader is not
  // sequential any more: with the cache above, each read-ahead handle reads segments a fixed
  // stride apart, and every one of those reads is a ranged GET).
  Result<size_t> read(uint64_t offset, std::span<std::byte> buf) override {
    uint64_t size = 0;
    std::string etag;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (writing_) {
        // The bytes of a small new file are all here; a multipart one has sent its parts away.
        if (!upload_id_.empty() || multipart_done_) {
          return Err(EOPNOTSUPP, "s3: " + path_ + ": reading a large file while writing it");
        }
        if (offset >= size_) return size_t{0};
        size_t n = std::min<uint64_t>(buf.size(), size_ - offset);
        std::memcpy(buf.data(), current_.data() + offset, n);
        return n;
      }
      size = info_.size;
      etag = info_.etag;
    }
    if (offset >= size || buf.empty()) return size_t{0};
    buf = buf.first(static_cast<size_t>(std::min<uint64_t>(buf.size(), size - offset)));
    if (take_saved(offset, buf)) return buf.size();
    if (layer_->options().read_streams > 1) return read_segmented(offset, buf, etag, size);
    {
      std::lock_guard<std::mutex> lock(stream_mu_);
      // Another read may have skipped over these bytes while this one waited.
      if (take_saved(offset, buf)) return buf.size();
      const uint64_t window = layer_->options().seek_window;
      const uint64_t end = offset + buf.size();
      const bool ahead = stream_ && offset >= stream_pos_ && offset - stream_pos_ <= window;
      const bool near = offset >= high_end_ && offset - high_end_ <= kSequentialSlack;
      if (ahead || near) {
        if (!ahead) {  // a new stream, from the furthest byte read (the gap is about to be read)
          stream_.reset();
          stream_pos_ = high_end_;
        }
        Result<size_t> n = read_stream_locked(offset, buf, etag, size);
        if (n) high_end_ = std::max(high_end_, end);
        return n;
      }
      if (stream_ && offset > stream_pos_) stream_.reset();
      // A read behind the furthest one keeps it; a jump elsewhere starts a new run there.
      if (end > high_end_ || offset + window < high_end_) high_end_ = end;
    }
    return read_exact(offset, buf, etag, size);
  }

  Result<size_t> write(uint64_t offset, std::span<const std::byte> data) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!writable_) return Err(EBADF, "s3: " + path_ + ": not open for writing");
    if (!writing_) {
      return Err(EOPNOTSUPP, "s3: " + path_ +
                                 ": writing into an existing object is not supported (only new "
                                 "files, or O_TRUNC); stack the `sync` layer for this");
    }
    if (!failure_.ok()) return failure_.error();
    if (multipart_done_) {
      return Err(EOPNOTSUPP, "s3: " + path_ +
                                 ": appending to a large file after it was flushed is not "
                                 "supported; write it in one go");
    }
    if (offset != size_) {
      return Err(EOPNOTSUPP, "s3: " + path_ + ": non-sequential write at offset " +
                                 std::to_string(offset) + " (file size " + std::to_string(size_) +
                                 "); only sequential writes are supported, stack the `sync` "
                                 "layer for random writes");
    }
    const uint64_t part_size = layer_->options().part_size;
    size_t done = 0;
    while (done < data.size()) {
      // current_ holds the whole small file, then (once a multipart upload runs) the part
      // being filled: never more than part_size bytes.
      size_t room = part_size - current_.size();
      size_t n = std::min(room, data.size() - done);
      current_.append(reinterpret_cast<const char*>(data.data() + done), n);
      done += n;
      if (current_.size() == part_size) {
        Status s = send_part();
        if (!s) {
          fail(s.error());
          return failure_.error();
        }
      }
    }
    size_ += data.size();
    dirty_ = true;
    update_pending();
    return data.size();
  }

  Status truncate(uint64_t size) override {
    std::lock_guard<std::mutex> lock(mu_);
    uint64_t current = writing_ ? size_ : info_.size;
    if (size == current) return Ok();
    if (!writable_) return Err(EBADF, "s3: " + path_ + ": not open for writing");
    if (size == 0) {
      abort_upload();
      start_writing();
      return Ok();
    }
    return Err(EOPNOTSUPP, "s3: " + path_ + ": truncate to " + std::to_string(size) +
                               " bytes is not supported (only to 0); stack the `sync` layer");
  }

  Status flush() override {
    std::lock_guard<std::mutex> lock(mu_);
    return flush_locked();
  }

  Status fsync(bool) override { return flush(); }

  Status close() override {
    {
      std::lock_guard<std::mutex> lock(stream_mu_);
      stream_.reset();  // its socket goes now, not when the kernel drops the handle
      if (segments_) segments_->stop();
    }
    std::lock_guard<std::mutex> lock(mu_);
    Status s = Ok();
    if (writing_ && dirty_) s = flush_locked();
    if (!upload_id_.empty()) abort_upload();  // a failed upload leaves no parts behind
    if (pending_) {
      layer_->unregister_pending(path_, pending_.get());
      pending_.reset();
    }
    return s;
  }

  Result<Attr> stat() override {
    std::lock_guard<std::mutex> lock(mu_);
    if (writing_) {
      Attr a;
      a.size = size_;
      a.mtime_ns = mtime_ns_;
      a.version = dirty_ ? std::string() : info_.etag;
      return a;
    }
    return FileAttr(info_);
  }

 private:
  void start_writing() {
    writing_ = true;
    dirty_ = true;  // even an empty new file must be created
    multipart_done_ = false;
    failure_ = Ok();
    size_ = 0;
    current_.clear();
    parts_.clear();
    etags_.clear();
    mtime_ns_ = NowNs();
    if (!pending_) {
      pending_ = std::make_shared<PendingWrite>();
      layer_->register_pending(path_, pending_);
    }
    update_pending();
  }

  void update_pending() {
    if (!pending_) return;
    std::lock_guard<std::mutex> lock(pending_->mu);
    pending_->size = size_;
    pending_->mtime_ns = mtime_ns_;
  }

  void fail(const Error& e) {
    if (failure_.ok()) failure_ = Err(EIO, e.message());
    abort_upload();
  }

  // Sends current_ as the next part (starting the multipart upload first if needed); waits for
  // the oldest part when upload_concurrency are in flight.
  Status send_part() {
    S3Client& client = layer_->client();
    if (upload_id_.empty()) {
      HFVFS_ASSIGN_OR_RETURN(upload_id_, client.create_multipart(key_));
    }
    auto data = std::make_shared<std::string>(std::move(current_));
    current_.clear();
    current_.reserve(layer_->options().part_size);
    int number = static_cast<int>(etags_.size() + parts_.size()) + 1;
    while (static_cast<int>(parts_.size()) >= layer_->options().upload_concurrency) {
      HFVFS_RETURN_IF_ERROR(reap_oldest());
    }
    auto layer = layer_;
    std::string key = key_;
    std::string id = upload_id_;
    client.counters().uploads_in_flight++;
    parts_.push_back(std::async(std::launch::async, [layer, key, id, number, data]() {
      Result<std::string> etag = layer->client().upload_part(
          key, id, number, std::as_bytes(std::span<const char>(data->data(), data->size())));
      layer->client().counters().uploads_in_flight--;
      return etag;
    }));
    return Ok();
  }

  Status reap_oldest() {
    Result<std::string> etag = parts_.front().get();
    parts_.pop_front();
    if (!etag) return etag.error();
    etags_.push_back(*etag);
    return Ok();
  }

  Status wait_all_parts() {
    Status first = Ok();
    while (!parts_.empty()) {
      Status s = reap_oldest();
      if (!s && first.ok()) first = s;
    }
    return first;
  }

  void abort_upload() {
    (void)wait_all_parts();
    if (!upload_id_.empty()) {
      Status s = layer_->client().abort_multipart(key_, upload_id_);
      if (!s) {
        spdlog::warn("s3: {}: abort of a failed upload: {} (retried later)", path_,
                     s.error().message());
        layer_->defer_abort(key_, upload_id_);
      }
      upload_id_.clear();
    }
  }

  Status flush_locked() {
    if (!writing_ || !dirty_) return failure_;
    if (!failure_.ok()) return failure_;
    S3Client& client = layer_->client();
    Result<std::string> etag = std::string();
    if (upload_id_.empty()) {
      etag =
          client.put(key_, std::as_bytes(std::span<const char>(current_.data(), current_.size())));
      if (!etag) {
        // Nothing was created; the bytes are still here, so a later flush may try again.
        return Err(EIO, etag.error().message());
      }
    } else {
      Status s = current_.empty() ? Status(Ok()) : send_part();
      if (s) s = wait_all_parts();
      if (s) {
        etag = client.complete_multipart(key_, upload_id_, etags_);
        if (!etag) s = etag.error();
      }
      if (!s) {
        fail(s.error());
        return Err(EIO,
                   "s3: " + path_ + ": upload failed, nothing was written: " + s.error().message());
      }
      upload_id_.clear();
      multipart_done_ = true;
      current_.clear();
      current_.shrink_to_fit();
    }
    info_.etag = *etag;
    info_.size = size_;
    dirty_ = false;
    return Ok();
  }

  // read() with read_streams > 1: a sequential read (as in read()) is copied out of the
  // segments received ahead of it (segment_reader.h), moving their window; a read inside the
  // window but whose segment was dropped meanwhile, and any other read, is one ranged GET of
  // exactly its bytes. A jump forward past the window drops it.
  Result<size_t> read_segmented(uint64_t offset, std::span<std::byte> buf, const std::string& etag,
                                uint64_t size) {
    const uint64_t end = offset + buf.size();
    std::vector<std::shared_ptr<Segment>> segments;
    {
      std::lock_guard<std::mutex> lock(stream_mu_);
      if (!segments_) {
        const S3LayerOptions& o = layer_->options();
        segments_ = std::make_unique<SegmentReader>(
            size,
            SegmentReaderOptions{.segment_size = o.stream_segment,
                                 .streams = o.read_streams,
                                 .budget = layer_->read_budget()},
            [core = layer_, key = key_, path = path_, etag](uint64_t at, std::span<std::byte> into,
                                                            SegmentProgress& progress) {
              return FetchSegment(*core, key, path, etag, at, into, progress);
            });
      }
      // Inside the window, and no farther than seek_window past the furthest read: a reader
      // striding farther (the cache's read-ahead lanes, one handle each) is not sequential.
      const bool ahead = segments_->holds(offset) && segments_->holds(end - 1) &&
                         offset <= high_end_ + layer_->options().seek_window;
      const bool near = offset >= high_end_ && offset - high_end_ <= kSequentialSlack;
      if (ahead || near) {
        const int64_t before = segments_->segments_started();
        if (!ahead) segments_->start(high_end_);  // the gap up to offset is about to be read
        segments_->advance(offset, buf.size());
        layer_->client().counters().segments += segments_->segments_started() - before;
        segments = segments_->segments(offset, buf.size());
        high_end_ = std::max(high_end_, end);
      } else {
        if (segments_->running() && !segments_->before(offset)) segments_->stop();
        // A read behind the furthest one keeps it; a jump elsewhere starts a new run there.
        if (end > high_end_ || offset + layer_->options().seek_window < high_end_) {
          high_end_ = end;
        }
      }
    }
    size_t done = 0;
    for (const std::shared_ptr<Segment>& segment : segments) {
      const uint64_t at = offset + done;
      const size_t n = static_cast<size_t>(
          std::min<uint64_t>(buf.size() - done, segment->offset() + segment->size() - at));
      Result<size_t> copied = segment->copy(at, buf.subspan(done, n));
      if (!copied) {
        if (copied.error().code() == ECANCELED) break;  // dropped meanwhile: a GET of its own
        return copied.error().With("s3: " + path_ + " at byte " + std::to_string(at));
      }
      done += n;
    }
    if (done == buf.size()) return done;
    HFVFS_RETURN_IF_ERROR(read_exact(offset + done, buf.subspan(done), etag, size));
    return buf.size();
  }

  // One ranged GET of exactly buf.size() bytes at `offset` (of an object of `size` bytes).
  Result<size_t> read_exact(uint64_t offset, std::span<std::byte> buf, const std::string& etag,
                            uint64_t size) {
    size_t done = 0;
    HFVFS_ASSIGN_OR_RETURN(done, layer_->client().get(key_, offset, buf, etag));
    if (done < buf.size()) {
      return Err(EIO, "s3: " + path_ + ": object shorter than its size (" +
                          std::to_string(offset + done) + " of " + std::to_string(size) + ")");
    }
    return done;
  }

  // Reads buf.size() bytes at `offset` from the stream (opened at stream_pos_ when there is
  // none), skipping forward to `offset` first. A stream that breaks or ends early is reopened
  // where it stopped, a bounded number of times. Requires stream_mu_.
  Result<size_t> read_stream_locked(uint64_t offset, std::span<std::byte> buf,
                                    const std::string& etag, uint64_t size) {
    S3Counters& counters = layer_->client().counters();
    int failures = 0;
    size_t done = 0;
    while (done < buf.size()) {
      Status step = Ok();
      if (!stream_) {
        HFVFS_ASSIGN_OR_RETURN(stream_, layer_->client().open_get(key_, stream_pos_, etag));
        if (!stream_) break;  // the object ends here
      }
      const uint64_t target = offset + done;
      while (stream_pos_ < target) {
        // Skipped bytes go straight into the piece that keeps them.
        std::vector<std::byte> piece(std::min<uint64_t>(target - stream_pos_, kSkipPiece));
        Result<size_t> n = stream_->read(piece);
        if (!n || *n == 0) {
          step = n ? Err(EIO, "the body ended early") : n.error();
          break;
        }
        piece.resize(*n);
        counters.bytes_received += static_cast<int64_t>(*n);
        save(stream_pos_, std::move(piece));
        stream_pos_ += *n;
      }
      if (step) {
        Result<size_t> n = stream_->read(buf.subspan(done));
        if (n && *n > 0) {
          counters.bytes_received += static_cast<int64_t>(*n);
          done += *n;
          stream_pos_ += *n;
          failures = 0;
          continue;
        }
        step = n ? Err(EIO, "the body ended early") : n.error();
      }
      stream_.reset();
      if (++failures > kStreamReopens) {
        return step.error().With("s3: " + path_ + " at byte " + std::to_string(stream_pos_));
      }
      counters.retries++;
    }
    if (done < buf.size()) {
      return Err(EIO, "s3: " + path_ + ": object shorter than its size (" +
                          std::to_string(offset + done) + " of " + std::to_string(size) + ")");
    }
    return done;
  }

  // Keeps bytes a stream skipped over (at most twice `seek_window`, the oldest dropped first).
  void save(uint64_t offset, std::vector<std::byte> bytes) {
    std::lock_guard<std::mutex> lock(saved_mu_);
    saved_bytes_ += bytes.size();
    saved_.emplace(offset, std::move(bytes));
    while (saved_bytes_ > 2 * layer_->options().seek_window && !saved_.empty()) {
      saved_bytes_ -= saved_.begin()->second.size();
      saved_.erase(saved_.begin());
    }
  }

  // Copies [offset, offset + buf.size()) out of saved pieces when they hold all of it, and
  // drops the pieces wholly read (the kernel asks for each byte once). False when they don't.
  bool take_saved(uint64_t offset, std::span<std::byte> buf) {
    std::lock_guard<std::mutex> lock(saved_mu_);
    if (saved_.empty()) return false;
    auto it = saved_.upper_bound(offset);
    if (it == saved_.begin()) return false;
    --it;
    const uint64_t end = offset + buf.size();
    uint64_t covered = it->first;
    for (auto j = it; j != saved_.end() && j->first == covered && covered < end; ++j) {
      covered += j->second.size();
    }
    if (covered < end) return false;
    size_t done = 0;
    while (done < buf.size()) {
      size_t skip = static_cast<size_t>(offset + done - it->first);
      size_t take = std::min(buf.size() - done, it->second.size() - skip);
      std::memcpy(buf.data() + done, it->second.data() + skip, take);
      done += take;
      if (skip + take == it->second.size()) {
        saved_bytes_ -= it->second.size();
        it = saved_.erase(it);
      }
    }
    return true;
  }

  std::shared_ptr<S3Core> layer_;
  const std::string path_;
  const std::string key_;

  // Lock order: stream_mu_, then saved_mu_; mu_ is never held while taking another lock.
  // stream_mu_ guards the sequential reader's stream: held across a read from it, never
  // across a ranged GET.
  std::mutex stream_mu_;
  std::unique_ptr<HttpStream> stream_;
  uint64_t stream_pos_ = 0;  // offset in the object of the stream's next byte
  uint64_t high_end_ = 0;    // end of the furthest read of the current run of reads
  // With read_streams > 1, instead of stream_: the segments received ahead of the reader
  // (created at the first read; its fetch threads touch only their segments, never a lock here).
  std::unique_ptr<SegmentReader> segments_;
  // saved_mu_ guards saved_ (offset -> bytes a stream skipped) and saved_bytes_.
  std::mutex saved_mu_;
  std::map<uint64_t, std::vector<std::byte>> saved_;
  uint64_t saved_bytes_ = 0;

  std::mutex mu_;    // guards everything below
  ObjectInfo info_;  // the object as last seen or written (etag = version)
  bool writable_ = false;
  // Writing.
  bool writing_ = false;
  bool dirty_ = false;
  bool multipart_done_ = false;
  Status failure_ = Ok();  // sticky: the first failed upload
  uint64_t size_ = 0;
  int64_t mtime_ns_ = 0;
  std::string current_;  // not yet sent: the whole small file, or the current part
  std::string upload_id_;
  std::deque<std::future<Result<std::string>>> parts_;  // in flight, oldest first
  std::vector<std::string> etags_;                      // of finished parts, in order
  std::shared_ptr<PendingWrite> pending_;
};

}  // namespace

S3Layer::S3Layer(std::shared_ptr<S3Client> client, S3LayerOptions options)
    : client_(std::move(client)),
      options_(std::move(options)),
      core_(std::make_shared<S3Core>(client_, options_)),
      mount_time_ns_(NowNs()) {}

Capabilities S3Layer::capabilities() const {
  Capabilities c;
  c.writable = true;
  c.rename = true;
  c.rename_dirs = true;
  return c;
}

Status S3Layer::start() { return client_->check_bucket(options_.prefix); }

Status S3Layer::shutdown(std::chrono::steady_clock::time_point) {
  Status s = core_->retry_aborts();
  if (!s) spdlog::warn("s3: unfinished multipart uploads remain: {}", s.error().message());
  return Ok();
}

Attr S3Layer::dir_attr() const {
  Attr a;
  a.type = FileType::kDirectory;
  a.mtime_ns = mount_time_ns_;
  return a;
}

std::string S3Layer::dir_prefix(std::string_view path) const {
  return path.empty() ? options_.prefix : options_.prefix + std::string(path) + "/";
}

void S3Core::register_pending(const std::string& path, std::shared_ptr<PendingWrite> p) {
  forget_head(path);
  std::lock_guard<std::mutex> lock(pending_mu_);
  pending_[path] = std::move(p);
}

void S3Core::unregister_pending(const std::string& path, const PendingWrite* p) {
  forget_head(path);  // a HEAD taken while the upload ran may show the old object
  std::lock_guard<std::mutex> lock(pending_mu_);
  auto it = pending_.find(path);
  if (it != pending_.end() && it->second.get() == p) pending_.erase(it);
}

void S3Core::remember_head(std::string_view path, const ObjectInfo& info) {
  std::lock_guard<std::mutex> lock(heads_mu_);
  if (heads_.size() >= kMaxRecentHeads) heads_.clear();  // a bound, not an LRU
  RecentHead& h = heads_[std::string(path)];
  h.info = info;
  h.seen = std::chrono::steady_clock::now();
}

std::optional<ObjectInfo> S3Core::recent_head(std::string_view path) {
  std::lock_guard<std::mutex> lock(heads_mu_);
  auto it = heads_.find(path);
  if (it == heads_.end()) return std::nullopt;
  if (std::chrono::steady_clock::now() - it->second.seen > kHeadFresh) {
    heads_.erase(it);
    return std::nullopt;
  }
  return it->second.info;
}

void S3Core::forget_head(std::string_view path) {
  std::lock_guard<std::mutex> lock(heads_mu_);
  auto it = heads_.find(path);
  if (it != heads_.end()) heads_.erase(it);
}

void S3Core::forget_heads_under(std::string_view dir) {
  std::lock_guard<std::mutex> lock(heads_mu_);
  for (auto it = heads_.begin(); it != heads_.end();) {
    it = IsUnder(it->first, dir) ? heads_.erase(it) : std::next(it);
  }
}

void S3Core::defer_abort(std::string key, std::string upload_id) {
  std::lock_guard<std::mutex> lock(aborts_mu_);
  aborts_.emplace_back(std::move(key), std::move(upload_id));
}

Status S3Core::retry_aborts() {
  std::vector<std::pair<std::string, std::string>> todo;
  {
    std::lock_guard<std::mutex> lock(aborts_mu_);
    todo.swap(aborts_);
  }
  Status first = Ok();
  for (auto& [key, id] : todo) {
    Status s = client_->abort_multipart(key, id);
    if (!s) {
      if (first.ok()) first = s;
      defer_abort(key, id);
    }
  }
  return first;
}

std::shared_ptr<PendingWrite> S3Core::find_pending(std::string_view path) const {
  std::lock_guard<std::mutex> lock(pending_mu_);
  auto it = pending_.find(path);
  return it == pending_.end() ? nullptr : it->second;
}

std::vector<std::pair<std::string, std::shared_ptr<PendingWrite>>> S3Core::pending_in(
    std::string_view dir) const {
  std::vector<std::pair<std::string, std::shared_ptr<PendingWrite>>> out;
  std::lock_guard<std::mutex> lock(pending_mu_);
  for (const auto& [path, pending] : pending_) {
    if (ParentPath(path) == dir && !path.empty()) {
      out.emplace_back(std::string(BaseName(path)), pending);
    }
  }
  return out;
}

Result<bool> S3Layer::dir_exists(std::string_view path) {
  if (path.empty()) return true;
  HFVFS_ASSIGN_OR_RETURN(ListPage page, client_->list(dir_prefix(path), "/", "", 1));
  return !page.objects.empty() || !page.prefixes.empty();
}

Result<Attr> S3Layer::stat(std::string_view path) {
  if (path.empty()) return dir_attr();
  if (std::shared_ptr<PendingWrite> pending = core_->find_pending(path)) {
    Attr a;
    std::lock_guard<std::mutex> lock(pending->mu);
    a.size = pending->size;
    a.mtime_ns = pending->mtime_ns;
    return a;
  }
  if (listed(path) == Listed::kAbsent) {
    return Err(ENOENT, "s3: no such file or directory: " + std::string(path));
  }
  Result<ObjectInfo> head = client_->head(key(path));
  if (head) {
    core_->remember_head(path, *head);
    return FileAttr(*head);
  }
  if (head.code() != ENOENT) return head.error();
  HFVFS_ASSIGN_OR_RETURN(bool is_dir, dir_exists(path));
  if (is_dir) {
    remember_dir(path);
    return dir_attr();
  }
  return not_found(path);
}

S3Layer::Listed S3Layer::listed(std::string_view path) {
  if (path.empty()) return Listed::kUnknown;
  const std::string_view parent = ParentPath(path);
  const std::string_view name = BaseName(path);
  {
    std::lock_guard<std::mutex> lock(listings_mu_);
    auto it = listings_.find(parent);
    if (it == listings_.end()) return Listed::kUnknown;
    auto age = std::chrono::steady_clock::now() - it->second.listed;
    if (age < kListingFresh) {
      return it->second.names.count(name) ? Listed::kPresent : Listed::kAbsent;
    }
    if (age > kListingKept) {
      listings_.erase(it);
      return Listed::kUnknown;
    }
  }
  // Stale but small: one listing request answers this lookup and the next ones.
  Result<std::vector<DirEntry>> fresh = list(parent);
  if (!fresh) return Listed::kUnknown;
  for (const DirEntry& e : *fresh) {
    if (e.name == name) return Listed::kPresent;
  }
  return Listed::kAbsent;
}

void S3Layer::remember_listing(std::string_view dir, std::set<std::string, std::less<>> names) {
  std::lock_guard<std::mutex> lock(listings_mu_);
  auto it = listings_.find(dir);
  if (it == listings_.end()) {
    if (listings_.size() >= kMaxListings) {
      auto oldest = std::min_element(listings_.begin(), listings_.end(), [](auto& a, auto& b) {
        return a.second.listed < b.second.listed;
      });
      listings_.erase(oldest);
    }
    it = listings_.emplace(std::string(dir), RecentListing{}).first;
  }
  it->second.listed = std::chrono::steady_clock::now();
  it->second.names = std::move(names);
}

void S3Layer::listing_add(std::string_view path) {
  std::lock_guard<std::mutex> lock(listings_mu_);
  auto it = listings_.find(ParentPath(path));
  if (it != listings_.end()) it->second.names.emplace(BaseName(path));
}

void S3Layer::listing_erase(std::string_view path) {
  std::lock_guard<std::mutex> lock(listings_mu_);
  auto it = listings_.find(ParentPath(path));
  if (it == listings_.end()) return;
  auto name = it->second.names.find(BaseName(path));
  if (name != it->second.names.end()) it->second.names.erase(name);
}

void S3Layer::forget_listings_under(std::string_view path) {
  std::lock_guard<std::mutex> lock(listings_mu_);
  for (auto it = listings_.begin(); it != listings_.end();) {
    it = IsUnder(it->first, path) ? listings_.erase(it) : std::next(it);
  }
}

Error S3Layer::not_found(std::string_view path) {
  std::string_view parent = ParentPath(path);
  // A parent known to be a folder needs no second look.
  if (!parent.empty() && !known_dir(parent) && client_->head(key(parent)).ok()) {
    return Err(ENOTDIR, "s3: not a directory: " + std::string(parent));
  }
  return Err(ENOENT, "s3: no such file or directory: " + std::string(path));
}

bool S3Layer::known_dir(std::string_view path) {
  std::lock_guard<std::mutex> lock(dirs_mu_);
  auto it = known_dirs_.find(path);
  if (it == known_dirs_.end()) return false;
  if (std::chrono::steady_clock::now() - it->second > kKnownDirTtl) {
    known_dirs_.erase(it);
    return false;
  }
  return true;
}

void S3Layer::remember_dir(std::string_view path) {
  std::lock_guard<std::mutex> lock(dirs_mu_);
  if (known_dirs_.size() > 4096) known_dirs_.clear();  // a bound, not an LRU
  known_dirs_[std::string(path)] = std::chrono::steady_clock::now();
}

void S3Layer::forget_dirs_under(std::string_view path) {
  std::lock_guard<std::mutex> lock(dirs_mu_);
  for (auto it = known_dirs_.begin(); it != known_dirs_.end();) {
    it = IsUnder(it->first, path) ? known_dirs_.erase(it) : std::next(it);
  }
}

Status S3Layer::check_parent(std::string_view path) {
  std::string_view parent = ParentPath(path);
  if (parent.empty() || known_dir(parent)) return Ok();
  HFVFS_ASSIGN_OR_RETURN(Attr a, stat(parent));
  if (!a.is_dir()) return Err(ENOTDIR, "s3: not a directory: " + std::string(parent));
  return Ok();
}

Result<std::vector<DirEntry>> S3Layer::list(std::string_view dir) {
  const std::string prefix = dir_prefix(dir);
  std::map<std::string, DirEntry> entries;
  std::set<std::string> dirs;
  bool seen_anything = dir.empty();
  std::string token;
  do {
    HFVFS_ASSIGN_OR_RETURN(ListPage page,
                           client_->list(prefix, "/", token, options_.list_page_size));
    token = page.next_token;
    for (const ObjectInfo& o : page.objects) {
      seen_anything = true;
      std::string_view name = std::string_view(o.key).substr(prefix.size());
      if (name.empty() || !CheckName(name).ok()) continue;  // the marker itself, or unusable
      entries[std::string(name)] = DirEntry{std::string(name), FileAttr(o)};
    }
    for (const std::string& p : page.prefixes) {
      seen_anything = true;
      if (p.size() <= prefix.size() + 1) continue;
      std::string name = p.substr(prefix.size(), p.size() - prefix.size() - 1);
      if (!CheckName(name).ok()) continue;
      dirs.insert(name);
    }
  } while (!token.empty());
  // A name that is both a file ("a") and a folder ("a/...") shows as the folder.
  for (const std::string& name : dirs) entries[name] = DirEntry{name, dir_attr()};
  if (seen_anything && !dir.empty()) remember_dir(dir);
  for (auto& [name, pending] : core_->pending_in(dir)) {
    seen_anything = true;
    if (entries.count(name)) continue;
    std::lock_guard<std::mutex> lock(pending->mu);
    Attr a;
    a.size = pending->size;
    a.mtime_ns = pending->mtime_ns;
    entries[name] = DirEntry{name, a};
  }
  if (!seen_anything) {
    Result<ObjectInfo> head = client_->head(key(dir));
    if (head) return Err(ENOTDIR, "s3: not a directory: " + std::string(dir));
    return Err(ENOENT, "s3: no such directory: " + std::string(dir));
  }
  if (entries.size() <= kListingMaxNames) {
    std::set<std::string, std::less<>> names;
    for (const auto& entry : entries) names.insert(entry.first);
    remember_listing(dir, std::move(names));
  } else {
    std::lock_guard<std::mutex> lock(listings_mu_);
    listings_.erase(std::string(dir));
  }
  std::vector<DirEntry> out;
  out.reserve(entries.size());
  for (auto& [name, e] : entries) out.push_back(std::move(e));
  return out;
}

Result<std::unique_ptr<File>> S3Layer::open_writer(std::string_view path) {
  (void)core_->retry_aborts();
  listing_add(path);  // the writer's register_pending() forgets the path's recent HEAD
  return std::unique_ptr<File>(new S3File(core_, std::string(path)));
}

Result<std::unique_ptr<File>> S3Layer::open(std::string_view path, int flags) {
  bool writable = (flags & O_ACCMODE) != O_RDONLY;
  if (writable && (flags & O_TRUNC)) return open_writer(path);
  if (std::optional<ObjectInfo> seen = core_->recent_head(path)) {
    core_->client().counters().opens_without_head++;
    return std::unique_ptr<File>(new S3File(core_, std::string(path), std::move(*seen), writable));
  }
  Result<ObjectInfo> head = client_->head(key(path));
  if (!head) {
    if (head.code() == ENOENT) {
      HFVFS_ASSIGN_OR_RETURN(bool is_dir, dir_exists(path));
      if (is_dir) return Err(EISDIR, "s3: is a directory: " + std::string(path));
      return not_found(path);
    }
    return head.error();
  }
  return std::unique_ptr<File>(new S3File(core_, std::string(path), std::move(*head), writable));
}

Result<std::unique_ptr<File>> S3Layer::create(std::string_view path, uint32_t, int flags) {
  if (path.empty()) return Err(EISDIR, "s3: cannot create the root");
  HFVFS_RETURN_IF_ERROR(check_parent(path));
  if (flags & O_EXCL) {
    Result<Attr> existing = stat(path);
    if (existing) return Err(EEXIST, "s3: already exists: " + std::string(path));
    if (existing.code() != ENOENT) return existing.error();
  }
  return open_writer(path);
}

Status S3Layer::mkdir(std::string_view path, uint32_t) {
  (void)core_->retry_aborts();
  if (path.empty()) return Err(EEXIST, "s3: the root exists");
  Result<Attr> existing = stat(path);
  if (existing) return Err(EEXIST, "s3: already exists: " + std::string(path));
  if (existing.code() != ENOENT) return existing.error();
  HFVFS_RETURN_IF_ERROR(check_parent(path));
  Result<std::string> put = client_->put(dir_prefix(path), {});
  if (!put) return put.error();
  remember_dir(path);
  listing_add(path);
  remember_listing(path, {});  // nothing lives under it: stat() just said so
  return Ok();
}

Status S3Layer::remove(std::string_view path) {
  Result<ObjectInfo> head = client_->head(key(path));
  if (!head) {
    if (head.code() == ENOENT) {
      HFVFS_ASSIGN_OR_RETURN(bool is_dir, dir_exists(path));
      if (is_dir) return Err(EISDIR, "s3: is a directory: " + std::string(path));
    }
    return head.error();
  }
  HFVFS_RETURN_IF_ERROR(client_->remove(key(path)));
  core_->forget_head(path);
  listing_erase(path);
  return Ok();
}

Status S3Layer::rmdir(std::string_view path) {
  if (path.empty()) return Err(EBUSY, "s3: cannot remove the root");
  const std::string prefix = dir_prefix(path);
  HFVFS_ASSIGN_OR_RETURN(ListPage page, client_->list(prefix, "", "", 2));
  if (page.objects.empty() && page.prefixes.empty()) {
    Result<ObjectInfo> head = client_->head(key(path));
    if (head) return Err(ENOTDIR, "s3: not a directory: " + std::string(path));
    return Err(ENOENT, "s3: no such directory: " + std::string(path));
  }
  for (const ObjectInfo& o : page.objects) {
    if (o.key != prefix) return Err(ENOTEMPTY, "s3: directory not empty: " + std::string(path));
  }
  forget_dirs_under(path);
  HFVFS_RETURN_IF_ERROR(client_->remove(prefix));
  forget_listings_under(path);
  listing_erase(path);
  return Ok();
}

Status S3Layer::copy_object(const std::string& from_key, const std::string& to_key, uint64_t size) {
  if (size <= options_.single_copy_limit) {
    Result<std::string> r = client_->copy(from_key, to_key);
    if (!r) return r.error();
    return Ok();
  }
  HFVFS_ASSIGN_OR_RETURN(std::string id, client_->create_multipart(to_key));
  std::vector<std::string> etags;
  for (uint64_t first = 0; first < size; first += options_.copy_part_size) {
    uint64_t last = std::min(size, first + options_.copy_part_size) - 1;
    Result<std::string> etag = client_->upload_part_copy(
        to_key, id, static_cast<int>(etags.size()) + 1, from_key, first, last);
    if (!etag) {
      (void)client_->abort_multipart(to_key, id);
      return etag.error();
    }
    etags.push_back(*etag);
  }
  Result<std::string> done = client_->complete_multipart(to_key, id, etags);
  if (!done) {
    (void)client_->abort_multipart(to_key, id);
    return done.error();
  }
  return Ok();
}

Status S3Layer::rename(std::string_view from, std::string_view to, bool noreplace) {
  if (from.empty() || to.empty()) return Err(EBUSY, "s3: cannot rename the root");
  if (from == to) return Ok();
  HFVFS_ASSIGN_OR_RETURN(Attr src, stat(from));
  Result<Attr> dst = stat(to);
  if (!dst && dst.code() != ENOENT) return dst.error();
  if (dst && noreplace) return Err(EEXIST, "s3: already exists: " + std::string(to));
  if (!dst) HFVFS_RETURN_IF_ERROR(check_parent(to));
  listing_add(to);  // before the copy: a name too many only costs a lookup a request
  if (src.is_file()) {
    if (dst && dst->is_dir()) return Err(EISDIR, "s3: is a directory: " + std::string(to));
    Status copied = copy_object(key(from), key(to), src.size);
    core_->forget_head(to);  // even when the copy failed: the target may have changed
    HFVFS_RETURN_IF_ERROR(copied);
    HFVFS_RETURN_IF_ERROR(client_->remove(key(from)));
    core_->forget_head(from);
    listing_erase(from);
    return Ok();
  }
  // A directory: key by key, copies first, deletes after (never atomic; see s3_layer.h).
  if (IsUnder(to, from)) {
    return Err(EINVAL, "s3: cannot move a directory into itself: " + std::string(to));
  }
  if (dst) {
    if (!dst->is_dir()) return Err(ENOTDIR, "s3: not a directory: " + std::string(to));
    HFVFS_ASSIGN_OR_RETURN(ListPage page, client_->list(dir_prefix(to), "", "", 2));
    for (const ObjectInfo& o : page.objects) {
      if (o.key != dir_prefix(to)) {
        return Err(ENOTEMPTY, "s3: directory not empty: " + std::string(to));
      }
    }
  }
  forget_dirs_under(from);
  forget_listings_under(from);
  forget_listings_under(to);
  const std::string from_prefix = dir_prefix(from);
  const std::string to_prefix = dir_prefix(to);
  std::vector<ObjectInfo> objects;
  std::string token;
  do {
    HFVFS_ASSIGN_OR_RETURN(ListPage page,
                           client_->list(from_prefix, "", token, options_.list_page_size));
    token = page.next_token;
    for (ObjectInfo& o : page.objects) objects.push_back(std::move(o));
  } while (!token.empty());
  for (const ObjectInfo& o : objects) {
    Status s = copy_object(o.key, to_prefix + o.key.substr(from_prefix.size()), o.size);
    if (!s)
      return s.error().With("s3: rename of " + std::string(from) + " stopped; both names " +
                            "may now hold some files");
  }
  // The new folder exists even when the old one was only implied by its children.
  bool has_marker = std::any_of(objects.begin(), objects.end(),
                                [&](const ObjectInfo& o) { return o.key == from_prefix; });
  if (!has_marker) {
    Result<std::string> put = client_->put(to_prefix, {});
    if (!put) return put.error();
  }
  for (const ObjectInfo& o : objects) HFVFS_RETURN_IF_ERROR(client_->remove(o.key));
  // After the copies and deletes: a stat during them may have seen an old object.
  core_->forget_heads_under(from);
  core_->forget_heads_under(to);
  listing_erase(from);
  return Ok();
}

Status S3Layer::setattr(std::string_view path, const SetAttr& change) {
  if (!change.set_size) HFVFS_RETURN_IF_ERROR(stat(path));  // ENOENT before EOPNOTSUPP
  if (change.set_size) {
    HFVFS_ASSIGN_OR_RETURN(Attr a, stat(path));
    if (a.is_dir()) return Err(EISDIR, "s3: is a directory: " + std::string(path));
    if (change.size != a.size) {
      if (change.size != 0) {
        return Err(EOPNOTSUPP, "s3: " + std::string(path) + ": truncate to " +
                                   std::to_string(change.size) +
                                   " bytes is not supported (only to 0); stack the `sync` layer");
      }
      core_->forget_head(path);
      Result<std::string> put = client_->put(key(path), {});
      if (!put) return put.error();
    }
  }
  // S3 keeps no mode or mtime of ours (capabilities say so): refused, as the contract asks,
  // rather than accepted and lost.
  if (change.set_mode || change.set_mtime) {
    return Err(EOPNOTSUPP, "s3: " + std::string(path) +
                               ": objects keep no mode or modification time of their own");
  }
  return Ok();
}

void S3Layer::counters(std::vector<std::pair<std::string, int64_t>>& out) const {
  const S3Counters& c = client_->counters();
  out.emplace_back("requests", c.requests.load());
  out.emplace_back("retries", c.retries.load());
  out.emplace_back("bytes_received", c.bytes_received.load());
  out.emplace_back("bytes_sent", c.bytes_sent.load());
  out.emplace_back("uploads_in_flight", c.uploads_in_flight.load());
  out.emplace_back("read_segments", c.segments.load());
  out.emplace_back("opens_without_head", c.opens_without_head.load());
  out.emplace_back("read_buffered", static_cast<int64_t>(core_->read_budget()->used.load()));
}

}  // namespace hfvfs::s3
