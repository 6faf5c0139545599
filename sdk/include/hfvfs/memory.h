#pragma once
// Memory for bulk data paths.

#include <cstddef>

namespace hfvfs {

// `bytes` of zero-filled anonymous memory starting on a 2 MiB boundary, advised for transparent
// huge pages (MADV_HUGEPAGE): a buffer written whole then faults once per 2 MiB instead of
// once per 4 KiB (a fault is dear in a VM), and is physically contiguous in 2 MiB runs, so a
// 1 MiB O_DIRECT read into it is one disk segment. nullptr when mmap fails. Give it back with
// UnmapHuge(p, bytes).
std::byte* MapHuge(size_t bytes);
void UnmapHuge(std::byte* p, size_t bytes);

}  // namespace hfvfs
