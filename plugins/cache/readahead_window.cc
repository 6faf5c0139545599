#include "readahead_window.h"

#include <algorithm>

namespace hfvfs::cache {

uint64_t ReadaheadWindow::OnRead(uint64_t offset, uint64_t length) {
  bool sequential = false;
  if (!any_read_) {
    sequential = offset <= options_.forward_tolerance;
  } else {
    const uint64_t low =
        last_end_ > options_.backward_tolerance ? last_end_ - options_.backward_tolerance : 0;
    const uint64_t high = last_end_ + std::max(options_.forward_tolerance, window_);
    sequential = offset >= low && offset <= high;
  }
  any_read_ = true;
  const uint64_t end = offset + length;
  // Out-of-order reads slightly behind do not move the cursor back.
  last_end_ = sequential ? std::max(last_end_, end) : end;
  if (!sequential) {
    window_ = 0;
  } else if (window_ == 0) {
    window_ = std::min(options_.min, options_.max);
  } else {
    window_ = std::min(window_ * 2, options_.max);
  }
  return window_;
}

}  // namespace hfvfs::cache
