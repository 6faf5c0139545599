#include "hfvfs/memory.h"

#include <sys/mman.h>

#include <cstdint>

namespace hfvfs {

namespace {
constexpr size_t kHuge = 2 << 20;
constexpr size_t kPage = 4096;
size_t Pages(size_t bytes) { return (bytes + kPage - 1) / kPage * kPage; }
}  // namespace

std::byte* MapHuge(size_t bytes) {
  const size_t length = Pages(bytes == 0 ? 1 : bytes);
  // Over-map by one huge page, then trim both ends to start on a huge page boundary.
  void* raw =
      ::mmap(nullptr, length + kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  auto* base = static_cast<std::byte*>(raw);
  const size_t lead = (kHuge - reinterpret_cast<uintptr_t>(base) % kHuge) % kHuge;
  if (lead) ::munmap(base, lead);
  ::munmap(base + lead + length, kHuge - lead);  // lead < kHuge: never empty
  (void)::madvise(base + lead, length, MADV_HUGEPAGE);
  return base + lead;
}

void UnmapHuge(std::byte* p, size_t bytes) {
  if (p) ::munmap(p, Pages(bytes == 0 ? 1 : bytes));
}

}  // namespace hfvfs
