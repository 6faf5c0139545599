#include "segment_reader.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

namespace hfvfs::s3 {

Segment::Segment(uint64_t offset, size_t size, std::shared_ptr<SegmentBudget> budget)
    : offset_(offset), size_(size), budget_(std::move(budget)) {
  if (budget_) budget_->used += size_;
}

Segment::~Segment() {
  if (budget_) budget_->used -= size_;
}

void Segment::received(size_t total) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    received_ = std::min(total, size_);
  }
  changed_.notify_all();
}

void Segment::cancel() {
  cancelled_.store(true);
  { std::lock_guard<std::mutex> lock(mu_); }  // a waiter between its check and its wait sees it
  changed_.notify_all();
}

size_t Segment::received_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return received_;
}

bool Segment::finished() const {
  std::lock_guard<std::mutex> lock(mu_);
  return done_;
}

void Segment::run(const SegmentFetch& fetch) {
  Status s = Ok();
  if (!cancelled()) {
    // Allocated here (not at launch) so the page faults happen on this thread; not zeroed.
    data_.reset(new std::byte[size_]);
    s = fetch(offset_, std::span<std::byte>(data_.get(), size_), *this);
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    done_ = true;
    failure_ = std::move(s);
  }
  changed_.notify_all();
}

Result<size_t> Segment::copy(uint64_t offset, std::span<std::byte> buf) {
  const size_t skip = static_cast<size_t>(offset - offset_);
  const size_t need = skip + buf.size();
  {
    std::unique_lock<std::mutex> lock(mu_);
    changed_.wait(lock, [&] { return received_ >= need || done_ || cancelled(); });
    if (received_ < need) {
      if (!failure_.ok()) return failure_.error();
      if (cancelled()) return Err(ECANCELED, "segment dropped before its bytes arrived");
      return Err(EIO, "a segment's request ended after " + std::to_string(received_) + " of " +
                          std::to_string(size_) + " bytes");
    }
  }
  // Bytes below received_ are final: the fetch writes only above it.
  std::memcpy(buf.data(), data_.get() + skip, buf.size());
  consumed_ += buf.size();
  return buf.size();
}

SegmentReader::SegmentReader(uint64_t object_size, SegmentReaderOptions options, SegmentFetch fetch)
    : object_size_(object_size), options_(options), fetch_(std::move(fetch)) {
  if (options_.segment_size == 0) options_.segment_size = 8ull << 20;
  options_.streams = std::max(options_.streams, 2);
}

SegmentReader::~SegmentReader() { stop(); }

bool SegmentReader::holds(uint64_t offset) const {
  if (window_.empty() || offset >= object_size_) return false;
  const uint64_t j = segment_of(offset);
  const uint64_t low = first_ == 0 ? 0 : first_ - 1;
  return j >= low && j <= first_ + static_cast<uint64_t>(options_.streams);
}

bool SegmentReader::before(uint64_t offset) const {
  if (window_.empty()) return false;
  return segment_of(offset) + 1 < first_;
}

void SegmentReader::start(uint64_t offset) {
  stop();
  first_ = segment_of(offset);
  width_ = 1;
  advance(offset);
}

void SegmentReader::advance(uint64_t offset, uint64_t length) {
  const uint64_t j = segment_of(offset);
  const uint64_t last = segment_of(offset + std::max<uint64_t>(length, 1) - 1);
  if (j > first_) {
    width_ = std::min(options_.streams,
                      width_ + static_cast<int>(std::min<uint64_t>(j - first_, options_.streams)));
    first_ = j;
  }
  // Behind the reader: segment first_ - 1 stays unless it has been read whole.
  for (auto it = window_.begin(); it != window_.end();) {
    auto next = std::next(it);
    const bool behind = it->first + 1 < first_;
    const bool spent =
        it->first < first_ && it->second.segment->consumed() >= it->second.segment->size();
    const bool far = it->first >= first_ + static_cast<uint64_t>(width_);
    if (behind || spent || far) drop(it);
    it = next;
  }
  const uint64_t count = (object_size_ + options_.segment_size - 1) / options_.segment_size;
  const uint64_t end = std::max(first_ + static_cast<uint64_t>(width_), last + 1);
  for (uint64_t i = first_; i < end && i < count; ++i) {
    if (window_.count(i)) continue;
    if (i > last && options_.budget &&
        options_.budget->used.load() + options_.segment_size > options_.budget->limit) {
      break;  // the mount's readers hold their budget: this one reads on with what it has
    }
    launch(i);
  }
}

std::vector<std::shared_ptr<Segment>> SegmentReader::segments(uint64_t offset,
                                                              uint64_t size) const {
  std::vector<std::shared_ptr<Segment>> out;
  if (size == 0) return out;
  for (uint64_t i = segment_of(offset); i <= segment_of(offset + size - 1); ++i) {
    auto it = window_.find(i);
    if (it == window_.end()) return {};
    out.push_back(it->second.segment);
  }
  return out;
}

void SegmentReader::stop() {
  for (auto& [index, slot] : window_) slot.segment->cancel();
  for (auto& [index, slot] : window_) {
    if (slot.thread.joinable()) slot.thread.join();
  }
  window_.clear();
}

uint64_t SegmentReader::buffered_bytes() const {
  uint64_t total = 0;
  for (const auto& [index, slot] : window_) total += slot.segment->size();
  return total;
}

void SegmentReader::launch(uint64_t index) {
  const uint64_t offset = index * options_.segment_size;
  const size_t size = static_cast<size_t>(std::min(options_.segment_size, object_size_ - offset));
  Slot slot;
  slot.segment = std::make_shared<Segment>(offset, size, options_.budget);
  slot.thread = std::thread([segment = slot.segment, fetch = fetch_] { segment->run(fetch); });
  window_.emplace(index, std::move(slot));
  started_++;
}

void SegmentReader::drop(std::map<uint64_t, Slot>::iterator it) {
  it->second.segment->cancel();
  // The fetch sees the cancellation between two pieces of its body.
  if (it->second.thread.joinable()) it->second.thread.join();
  window_.erase(it);
}

}  // namespace hfvfs::s3
