// File: extent_set.h
//
// A set of byte ranges [begin, end) kept merged and sorted: which parts of a staged file hold
// their final bytes (fetched from below, or written here). Not thread-safe; the owner locks.
#pragma once

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <map>

namespace hfvfs::sync {

class ExtentSet {
 public:
  // Adds [begin, end), merging with touching or overlapping extents.
  void Add(uint64_t begin, uint64_t end) {
    if (begin >= end) return;
    auto it = extents_.upper_bound(begin);
    if (it != extents_.begin()) {
      auto prev = std::prev(it);
      if (prev->second >= begin) {
        begin = prev->first;
        end = std::max(end, prev->second);
        it = extents_.erase(prev);
      }
    }
    while (it != extents_.end() && it->first <= end) {
      end = std::max(end, it->second);
      it = extents_.erase(it);
    }
    extents_.emplace(begin, end);
  }

  // Whether every byte of [begin, end) is in the set (an empty range always is).
  bool Covers(uint64_t begin, uint64_t end) const {
    if (begin >= end) return true;
    auto it = extents_.upper_bound(begin);
    if (it == extents_.begin()) return false;
    --it;
    return it->second >= end;
  }

  // The first byte of [begin, end) not in the set, and where that gap ends (within [begin,
  // end)); {end, end} when Covers(begin, end).
  std::pair<uint64_t, uint64_t> FirstGap(uint64_t begin, uint64_t end) const {
    uint64_t at = begin;
    auto it = extents_.upper_bound(at);
    if (it != extents_.begin()) {
      auto prev = std::prev(it);
      if (prev->second > at) at = prev->second;
    }
    if (at >= end) return {end, end};
    uint64_t gap_end = it == extents_.end() ? end : std::min(end, it->first);
    return {at, gap_end};
  }

  bool empty() const { return extents_.empty(); }
  size_t count() const { return extents_.size(); }

 private:
  std::map<uint64_t, uint64_t> extents_;  // begin -> end, disjoint and not touching
};

}  // namespace hfvfs::sync
