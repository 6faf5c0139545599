#include "hfvfs/memory.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>

namespace hfvfs {
namespace {

TEST(MapHugeTest, StartsOnATwoMebibyteBoundaryAndIsZeroedAndWritable) {
  for (size_t bytes :
       {size_t{1}, size_t{4095}, size_t{1} << 20, (size_t{2} << 20) + 12345, size_t{8} << 20}) {
    std::byte* p = MapHuge(bytes);
    ASSERT_NE(p, nullptr) << bytes;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % (2 << 20), 0u) << bytes;
    EXPECT_EQ(p[0], std::byte{0});
    EXPECT_EQ(p[bytes - 1], std::byte{0});
    std::memset(p, 0xAB, bytes);
    EXPECT_EQ(p[bytes - 1], std::byte{0xAB});
    UnmapHuge(p, bytes);
  }
}

}  // namespace
}  // namespace hfvfs
