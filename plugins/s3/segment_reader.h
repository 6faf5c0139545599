// File: segment_reader.h
//
// Read-ahead of one sequential reader over several ranged requests at once.
//
// The object is cut into segments of `segment_size` bytes (segment i = bytes
// [i * segment_size, (i + 1) * segment_size), the last one shorter). While the reader is in
// segment k, segments k .. k + streams - 1 are being received at once, each by its own thread
// calling `fetch` (one ranged GET in the s3 layer) into a buffer of its own; the reader copies
// out of a segment as soon as the bytes it asks for have arrived, without waiting for the rest.
// When the reader moves on to segment k + 1, segment k + streams starts, and segments before
// k - 1 are dropped (segment k - 1 stays for the kernel's read-ahead, whose reads of one handle
// arrive in any order). A new run (start()) begins with the reader's segment alone and widens
// by one segment per segment the reader moves into, up to `streams`, so a reader wrongly taken
// for a sequential one (the cache's demand reads, a `head`) costs at most one segment.
//
// Memory bound: at most streams + 1 segment buffers are held by the window, so
// (streams + 1) * segment_size bytes per sequentially read handle (a reader copying out of a
// segment that a seek has just dropped holds it until its copy ends). Across handles, a
// SegmentBudget caps the total: segments ahead of a reader wait (are started by a later
// advance) while it is spent, and only the segment the reader is in starts regardless.
//
// Errors: a fetch that fails makes its segment failed; the reader of any byte of that segment
// gets the error (ESTALE when the object was replaced: every fetch of the s3 layer carries
// If-Match, so a reader never sees bytes of two versions). A dropped segment is cancelled: its
// fetch is asked to stop (`cancelled()`), and a reader still waiting on it gets ECANCELED, on
// which the caller reads its bytes another way.
//
// Thread safety: start(), holds(), advance(), segments() and stop() are called under the
// caller's lock (the s3 file's stream mutex); Segment::copy() is called without it and may run
// in several threads at once. Fetch threads touch only their own Segment.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "hfvfs/result.h"

namespace hfvfs::s3 {

// Segment buffer bytes held by all the readers of a mount, against a limit: a segment ahead of
// its reader starts only while the total stays within it (the segment a reader is in always
// starts, so every reader makes progress).
struct SegmentBudget {
  explicit SegmentBudget(uint64_t limit) : limit(limit) {}
  const uint64_t limit;
  std::atomic<uint64_t> used{0};
};

struct SegmentReaderOptions {
  uint64_t segment_size = 8ull << 20;
  int streams = 4;                        // segments received at once (at least 2)
  std::shared_ptr<SegmentBudget> budget;  // none: no limit across readers
};

// What a fetch reports to, and learns from, its segment.
class SegmentProgress {
 public:
  virtual ~SegmentProgress() = default;
  // True once the segment was dropped: the fetch should return soon (any status).
  virtual bool cancelled() const = 0;
  // `total` bytes from the start of the segment's buffer are final (it only grows).
  virtual void received(size_t total) = 0;
};

// Fills `into` with the object's bytes at `offset` (all of them, or an error), reporting each
// piece through `progress`. Runs on a thread of its own.
using SegmentFetch =
    std::function<Status(uint64_t offset, std::span<std::byte> into, SegmentProgress& progress)>;

class Segment : public SegmentProgress {
 public:
  // Holds `size` bytes of `budget` (when given) until destroyed.
  Segment(uint64_t offset, size_t size, std::shared_ptr<SegmentBudget> budget = nullptr);
  ~Segment() override;
  uint64_t offset() const { return offset_; }
  size_t size() const { return size_; }

  // Copies the segment's bytes at `offset` (an offset in the object, within this segment) into
  // buf, waiting until they have arrived. ECANCELED when the segment was dropped before they
  // arrived; the fetch's error when it failed.
  Result<size_t> copy(uint64_t offset, std::span<std::byte> buf);
  // Bytes received so far; true when the whole segment is in, or it failed.
  size_t received_bytes() const;
  bool finished() const;
  // Bytes copied out by readers so far (the kernel asks for each byte once).
  size_t consumed() const { return consumed_.load(); }

  // SegmentProgress, for the fetch.
  bool cancelled() const override { return cancelled_.load(); }
  void received(size_t total) override;

  // Runs the fetch (on the segment's thread), then records its outcome.
  void run(const SegmentFetch& fetch);
  void cancel();

 private:
  const uint64_t offset_;
  const size_t size_;
  const std::shared_ptr<SegmentBudget> budget_;
  // Written only by the fetch, in bytes [0, received_); read by copy() below received_.
  std::unique_ptr<std::byte[]> data_;
  std::atomic<bool> cancelled_{false};
  std::atomic<size_t> consumed_{0};
  mutable std::mutex mu_;  // guards received_, done_, failure_; never held while taking another
  std::condition_variable changed_;
  size_t received_ = 0;
  bool done_ = false;
  Status failure_ = Ok();
};

class SegmentReader {
 public:
  SegmentReader(uint64_t object_size, SegmentReaderOptions options, SegmentFetch fetch);
  ~SegmentReader();  // stop()
  SegmentReader(const SegmentReader&) = delete;
  SegmentReader& operator=(const SegmentReader&) = delete;

  uint64_t segment_of(uint64_t offset) const { return offset / options_.segment_size; }
  // True when a run is going and `offset` lies in its window (segments first - 1 .. last
  // started).
  bool holds(uint64_t offset) const;
  // True when a run is going and `offset` lies before its window (a read behind the reader).
  bool before(uint64_t offset) const;
  // Drops the window and starts a new run at the segment of `offset`.
  void start(uint64_t offset);
  // The reader reads [offset, offset + length) (inside the window): drops segments before the
  // segment of offset - 1, starts the ones up to the run's current width ahead of it, and
  // always the ones the read spans.
  void advance(uint64_t offset, uint64_t length = 1);
  // The segments holding [offset, offset + size), all inside the window (holds() of both ends);
  // the caller copies out of them without the lock.
  std::vector<std::shared_ptr<Segment>> segments(uint64_t offset, uint64_t size) const;
  // Cancels every segment and waits for their fetches to return.
  void stop();

  bool running() const { return !window_.empty(); }
  // Bytes of segment buffers held by the window (the memory bound's subject).
  uint64_t buffered_bytes() const;
  // Segments started since creation (tests; a counter of the layer).
  int64_t segments_started() const { return started_; }

 private:
  struct Slot {
    std::shared_ptr<Segment> segment;
    std::thread thread;
  };
  void launch(uint64_t index);
  void drop(std::map<uint64_t, Slot>::iterator it);

  const uint64_t object_size_;
  SegmentReaderOptions options_;  // normalized by the constructor, then constant
  const SegmentFetch fetch_;
  std::map<uint64_t, Slot> window_;  // segment index -> slot
  uint64_t first_ = 0;               // the reader's segment
  int width_ = 0;                    // segments in flight from first_ in this run
  int64_t started_ = 0;
};

}  // namespace hfvfs::s3
