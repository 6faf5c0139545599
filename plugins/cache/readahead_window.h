// File: readahead_window.h
//
// The read-ahead decision of one open file, without I/O (unit-tested on its own). Each read
// reports its range; the window says how far past its end to fetch:
// - A first read within forward_tolerance of offset 0, or a read that starts within
//   [end - backward_tolerance, end + max(forward_tolerance, window)] of the furthest sequential
//   read's end, is sequential: the window starts at `min` and doubles at each sequential read up
//   to `max`.
// - Anything else is random: the window drops to 0 (fetch only what is asked), and the next
//   sequential read starts again from `min`.
// The kernel issues read-ahead out of order and in parallel, hence the tolerances: with the
// kernel's readahead at 16 MiB (the default of stacks with a cache) up to 16 reads of 1 MiB are
// in flight, and FUSE threads hand them over in any order, the first one (which fetches the
// file's first chunk) often last. Not thread-safe: the owner serialises calls.
#pragma once

#include <cstdint>

namespace hfvfs::cache {

struct ReadaheadOptions {
  uint64_t min = 1 << 20;
  uint64_t max = 64 << 20;
  uint64_t backward_tolerance = 16 << 20;
  uint64_t forward_tolerance = 16 << 20;
};

class ReadaheadWindow {
 public:
  explicit ReadaheadWindow(ReadaheadOptions options) : options_(options) {}

  // Records a read of [offset, offset + length) and returns the bytes to have fetched past its
  // end (0 = none).
  uint64_t OnRead(uint64_t offset, uint64_t length);

  uint64_t window() const { return window_; }
  bool sequential() const { return window_ > 0; }

 private:
  ReadaheadOptions options_;
  bool any_read_ = false;
  uint64_t last_end_ = 0;
  uint64_t window_ = 0;
};

}  // namespace hfvfs::cache
