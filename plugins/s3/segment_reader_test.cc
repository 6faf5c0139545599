// The segment scheduler of sequential readers (segment_reader.h) over fake fetches: the window,
// its widening, seek resets, the memory bound, errors and a replaced object.
#include "segment_reader.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <set>
#include <string>
#include <thread>

namespace hfvfs::s3 {
namespace {

constexpr uint64_t kSeg = 64 << 10;

// The byte at offset `i` of version `v` of the fake object.
std::byte ByteAt(uint64_t i, int v = 1) { return std::byte(((i * 131) ^ (i >> 9)) + v * 7); }

// A fake object behind fetches that fill in pieces, count themselves, may be slowed down, fail
// or be gated (held until released or cancelled).
class FakeObject {
 public:
  explicit FakeObject(uint64_t size) : size_(size) {}

  SegmentFetch fetch() {
    return [this](uint64_t offset, std::span<std::byte> into, SegmentProgress& p) -> Status {
      {
        std::lock_guard<std::mutex> lock(mu_);
        starts_.insert(offset);
        max_active_ = std::max(max_active_, ++active_);
      }
      bool stopped = false;
      Status s = fill(offset, into, p, stopped);
      std::lock_guard<std::mutex> lock(mu_);
      --active_;
      if (stopped) cancelled_.insert(offset);
      return s;
    };
  }

  // `stopped`: the fetch returned early because its segment was cancelled.
  Status fill(uint64_t offset, std::span<std::byte> into, SegmentProgress& p, bool& stopped) {
    const size_t piece = 16 << 10;
    for (size_t done = 0; done < into.size();) {
      if (p.cancelled()) {
        stopped = true;
        return Ok();
      }
      {
        std::unique_lock<std::mutex> lock(mu_);
        if (offset == gated_offset_ && done >= gated_after_) {
          // Polls: a cancellation is announced to the segment, not to this fake.
          waiting_ = gated_;
          while (gated_ && !p.cancelled()) gate_.wait_for(lock, std::chrono::milliseconds(1));
          waiting_ = false;
          if (p.cancelled()) {
            stopped = true;
            return Ok();
          }
        }
        if (offset + done >= fail_from_) return Err(fail_code_, "fake failure");
      }
      const size_t n = std::min(piece, into.size() - done);
      for (size_t i = 0; i < n; ++i) into[done + i] = ByteAt(offset + done + i, version_);
      done += n;
      p.received(done);
      if (delay_.count()) std::this_thread::sleep_for(delay_);
    }
    return Ok();
  }

  // Holds the fetch of the segment at `offset` after `after` bytes, until Release().
  void Gate(uint64_t offset, size_t after) {
    std::lock_guard<std::mutex> lock(mu_);
    gated_ = true;
    gated_offset_ = offset;
    gated_after_ = after;
  }
  // Until the gated fetch has stopped at its gate.
  void WaitGated() {
    for (;;) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (waiting_) return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  void Release() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      gated_ = false;
    }
    gate_.notify_all();
  }
  // Every fetch reaching byte `from` fails with `code` (ESTALE: the object was replaced).
  void FailFrom(uint64_t from, int code) {
    std::lock_guard<std::mutex> lock(mu_);
    fail_from_ = from;
    fail_code_ = code;
  }
  void SetDelay(std::chrono::microseconds d) { delay_ = d; }

  std::set<uint64_t> starts() {
    std::lock_guard<std::mutex> lock(mu_);
    return starts_;
  }
  std::set<uint64_t> cancelled() {
    std::lock_guard<std::mutex> lock(mu_);
    return cancelled_;
  }
  int max_active() {
    std::lock_guard<std::mutex> lock(mu_);
    return max_active_;
  }
  uint64_t size() const { return size_; }

 private:
  const uint64_t size_;
  std::mutex mu_;
  std::condition_variable gate_;
  std::set<uint64_t> starts_, cancelled_;
  int active_ = 0, max_active_ = 0;
  bool gated_ = false;
  bool waiting_ = false;  // a fetch is held at the gate
  uint64_t gated_offset_ = 0;
  size_t gated_after_ = 0;
  uint64_t fail_from_ = UINT64_MAX;
  int fail_code_ = EIO;
  int version_ = 1;
  std::chrono::microseconds delay_{0};
};

// Reads [offset, offset + len) the way the s3 file does: advance, then copy out of segments.
Result<std::string> Read(SegmentReader& r, uint64_t offset, size_t len) {
  if (!r.holds(offset)) r.start(offset);
  r.advance(offset, len);
  auto segments = r.segments(offset, len);
  if (segments.empty()) return Err(ENOENT, "not in the window");
  std::string out(len, '\0');
  size_t done = 0;
  for (auto& s : segments) {
    const uint64_t at = offset + done;
    const size_t n = std::min<uint64_t>(len - done, s->offset() + s->size() - at);
    Result<size_t> c = s->copy(at, std::as_writable_bytes(std::span<char>(out.data() + done, n)));
    if (!c) return c.error();
    done += n;
  }
  return out;
}

bool Matches(const std::string& got, uint64_t offset, int version = 1) {
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::byte(got[i]) != ByteAt(offset + i, version)) return false;
  }
  return true;
}

TEST(SegmentReaderTest, SequentialReadGetsEveryByteOnceWithStreamsInFlight) {
  FakeObject obj(20 * kSeg + 123);
  obj.SetDelay(std::chrono::microseconds(300));
  SegmentReader r(obj.size(), {.segment_size = kSeg, .streams = 3, .budget = nullptr}, obj.fetch());
  const size_t block = 20 << 10;  // not a divisor of the segment: reads cross segments
  for (uint64_t off = 0; off < obj.size(); off += block) {
    const size_t len = std::min<uint64_t>(block, obj.size() - off);
    Result<std::string> got = Read(r, off, len);
    ASSERT_TRUE(got.ok()) << got.error().message();
    ASSERT_TRUE(Matches(*got, off)) << "offset " << off;
    // The memory bound: the window holds at most streams + 1 segments.
    ASSERT_LE(r.buffered_bytes(), 4 * kSeg);
  }
  r.stop();
  EXPECT_EQ(obj.starts().size(), 21u);  // each segment requested once
  EXPECT_EQ(r.segments_started(), 21);
  EXPECT_GE(obj.max_active(), 2);  // parallel...
  // ...but never more than `streams` ahead, plus the one behind the reader finishing.
  EXPECT_LE(obj.max_active(), 4);
  EXPECT_TRUE(obj.cancelled().empty());
}

TEST(SegmentReaderTest, RunStartsWithOneSegmentAndWidensToStreams) {
  FakeObject obj(40 * kSeg);
  SegmentReader r(obj.size(), {.segment_size = kSeg, .streams = 4, .budget = nullptr}, obj.fetch());
  r.start(0);
  EXPECT_EQ(r.segments_started(), 1);  // a reader wrongly taken as sequential costs one
  r.advance(kSeg);
  EXPECT_EQ(r.segments_started(), 3);  // segments 1, 2 (plus 0 behind)
  r.advance(2 * kSeg);
  EXPECT_EQ(r.segments_started(), 5);  // width 3: segments 2..4
  r.advance(3 * kSeg);
  EXPECT_EQ(r.segments_started(), 7);  // width 4: segments 3..6
  r.advance(3 * kSeg + 100);
  EXPECT_EQ(r.segments_started(), 7);  // within the same segment: nothing new
  EXPECT_LE(r.buffered_bytes(), 5 * kSeg);
  EXPECT_FALSE(r.holds(8 * kSeg));  // beyond first + streams
  EXPECT_TRUE(r.holds(7 * kSeg));
  EXPECT_TRUE(r.holds(2 * kSeg));  // one segment behind stays for late reads
  EXPECT_FALSE(r.holds(kSeg));
  EXPECT_TRUE(r.before(kSeg));
}

TEST(SegmentReaderTest, OutOfOrderReadsAroundASegmentBoundary) {
  FakeObject obj(8 * kSeg);
  SegmentReader r(obj.size(), {.segment_size = kSeg, .streams = 2, .budget = nullptr}, obj.fetch());
  const uint64_t b = 16 << 10;
  // The kernel's read-ahead: the block after a boundary arrives before the one before it.
  for (uint64_t off : {0 * b, 2 * b, 1 * b, 4 * b, 3 * b, 5 * b, 7 * b, 6 * b}) {
    Result<std::string> got = Read(r, off, b);
    ASSERT_TRUE(got.ok()) << got.error().message();
    EXPECT_TRUE(Matches(*got, off));
  }
  // Segment 0 was read whole and is gone: a read of it again is not served by the window (the
  // s3 file makes it a ranged GET of its own).
  EXPECT_EQ(Read(r, kSeg - 100, 200).code(), ENOENT);
  EXPECT_LE(r.buffered_bytes(), 2 * kSeg);
}

TEST(SegmentReaderTest, SeekOutsideTheWindowDropsItsSegments) {
  FakeObject obj(100 * kSeg);
  obj.Gate(2 * kSeg, 0);  // segment 2 never completes by itself
  SegmentReader r(obj.size(), {.segment_size = kSeg, .streams = 3, .budget = nullptr}, obj.fetch());
  ASSERT_TRUE(Matches(Read(r, 0, 1000).value(), 0));
  ASSERT_TRUE(Matches(Read(r, kSeg, 1000).value(), kSeg));  // width 2: segments 1 and 2
  obj.WaitGated();
  EXPECT_EQ(obj.starts(), (std::set<uint64_t>{0, kSeg, 2 * kSeg}));
  const uint64_t far = 50 * kSeg + 5;
  EXPECT_FALSE(r.holds(far));
  // start() cancels the gated fetch (it returns at once) and joins it.
  Result<std::string> got = Read(r, far, 4096);
  ASSERT_TRUE(got.ok()) << got.error().message();
  EXPECT_TRUE(Matches(*got, far));
  EXPECT_TRUE(obj.cancelled().count(2 * kSeg));
  EXPECT_TRUE(obj.starts().count(50 * kSeg));
  EXPECT_LE(r.buffered_bytes(), kSeg);  // a new run: one segment
  obj.Release();
}

TEST(SegmentReaderTest, ReaderCopiesBytesBeforeTheSegmentIsComplete) {
  FakeObject obj(4 * kSeg);
  obj.Gate(0, 32 << 10);  // segment 0 stops after its first 32 KiB
  SegmentReader r(obj.size(), {.segment_size = kSeg, .streams = 2, .budget = nullptr}, obj.fetch());
  Result<std::string> got = Read(r, 0, 32 << 10);  // returns although the fetch is held
  ASSERT_TRUE(got.ok()) << got.error().message();
  EXPECT_TRUE(Matches(*got, 0));
  obj.Release();
  EXPECT_TRUE(Matches(Read(r, 32 << 10, 32 << 10).value(), 32 << 10));
}

TEST(SegmentReaderTest, AWaiterOfADroppedSegmentGetsEcanceled) {
  FakeObject obj(10 * kSeg);
  obj.Gate(0, 0);
  SegmentReader r(obj.size(), {.segment_size = kSeg, .streams = 2, .budget = nullptr}, obj.fetch());
  r.start(0);
  obj.WaitGated();
  auto segments = r.segments(0, 100);
  ASSERT_EQ(segments.size(), 1u);
  std::thread dropper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    r.stop();
  });
  std::vector<std::byte> buf(100);
  Result<size_t> n = segments[0]->copy(0, buf);  // waits, then the segment is dropped
  dropper.join();
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.code(), ECANCELED);
  EXPECT_FALSE(r.running());
  EXPECT_EQ(r.buffered_bytes(), 0u);
  obj.Release();
}

TEST(SegmentReaderTest, AFailedFetchIsTheErrorOfItsBytesOnly) {
  FakeObject obj(6 * kSeg);
  obj.FailFrom(2 * kSeg + 1000, EIO);  // segment 2 fails after 1000 bytes... at 16 KiB piece
  SegmentReader r(obj.size(), {.segment_size = kSeg, .streams = 3, .budget = nullptr}, obj.fetch());
  ASSERT_TRUE(Matches(Read(r, 0, kSeg).value(), 0));
  ASSERT_TRUE(Matches(Read(r, kSeg, kSeg).value(), kSeg));
  Result<std::string> bad = Read(r, 2 * kSeg + (32 << 10), 100);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.code(), EIO);
  EXPECT_NE(bad.error().message().find("fake failure"), std::string::npos);
}

// Every fetch carries If-Match in the s3 layer: once the object is replaced, fetches answer
// ESTALE. Bytes that arrived before stay those of the old version; no byte of the new one is
// ever served.
TEST(SegmentReaderTest, ReplacedObjectIsEstaleNeverMixed) {
  FakeObject obj(8 * kSeg);
  obj.Gate(kSeg, 16 << 10);  // segment 1 holds after 16 KiB of version 1
  SegmentReader r(obj.size(), {.segment_size = kSeg, .streams = 2, .budget = nullptr}, obj.fetch());
  ASSERT_TRUE(Matches(Read(r, 0, 4096).value(), 0));
  r.advance(kSeg);  // segments 1 and 2 start
  obj.WaitGated();
  obj.FailFrom(0, ESTALE);  // replaced: every later request is refused
  obj.Release();
  // Bytes of segment 1 that came before the replacement are version 1's...
  Result<std::string> early = Read(r, kSeg, 16 << 10);
  ASSERT_TRUE(early.ok()) << early.error().message();
  EXPECT_TRUE(Matches(*early, kSeg, 1));
  // ...the rest is ESTALE.
  Result<std::string> late = Read(r, kSeg + (20 << 10), 4096);
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.code(), ESTALE);
  // (Segment 2 may have come whole before the replacement.) Segment 3 starts after it.
  Result<std::string> next = Read(r, 3 * kSeg, 4096);
  ASSERT_FALSE(next.ok());
  EXPECT_EQ(next.code(), ESTALE);
}

// The mount-wide budget: segments ahead of a reader wait while the readers' buffers fill it;
// the segment a reader is in always starts, so every reader goes on.
TEST(SegmentReaderTest, BudgetAcrossReadersDefersSegmentsAhead) {
  FakeObject obj(40 * kSeg);
  auto budget = std::make_shared<SegmentBudget>(3 * kSeg);
  SegmentReader a(obj.size(), {.segment_size = kSeg, .streams = 4, .budget = budget}, obj.fetch());
  SegmentReader b(obj.size(), {.segment_size = kSeg, .streams = 4, .budget = budget}, obj.fetch());
  a.start(0);
  a.advance(kSeg);
  EXPECT_EQ(a.segments_started(), 3);
  EXPECT_EQ(budget->used.load(), 3 * kSeg);  // the budget is spent
  ASSERT_TRUE(Matches(Read(b, 20 * kSeg, 100).value(), 20 * kSeg));
  EXPECT_EQ(b.segments_started(), 1);  // its own segment starts all the same
  EXPECT_EQ(budget->used.load(), 4 * kSeg);
  // Reading on into segment 21: it starts, the read is served; 22 waits.
  ASSERT_TRUE(Matches(Read(b, 21 * kSeg + 5, 100).value(), 21 * kSeg + 5));
  EXPECT_EQ(b.segments_started(), 2);
  a.stop();  // a's buffers go back to the budget...
  EXPECT_EQ(budget->used.load(), 2 * kSeg);
  b.advance(21 * kSeg + 200);  // ...and b's next advance widens again within it
  EXPECT_EQ(b.segments_started(), 3);
  EXPECT_EQ(budget->used.load(), 3 * kSeg);
  b.stop();
  EXPECT_EQ(budget->used.load(), 0u);
}

TEST(SegmentReaderTest, LastSegmentIsShortAndNothingStartsPastTheEnd) {
  FakeObject obj(2 * kSeg + 10);
  SegmentReader r(obj.size(), {.segment_size = kSeg, .streams = 4, .budget = nullptr}, obj.fetch());
  EXPECT_TRUE(Matches(Read(r, 0, 10).value(), 0));
  EXPECT_TRUE(Matches(Read(r, 2 * kSeg, 10).value(), 2 * kSeg));
  EXPECT_EQ(r.segments_started(), 2);  // segments 0 and 2 (1 was jumped over)
  EXPECT_EQ(r.buffered_bytes(), 10u);  // 0 is two behind: dropped
  EXPECT_FALSE(r.holds(obj.size()));
}

}  // namespace
}  // namespace hfvfs::s3
