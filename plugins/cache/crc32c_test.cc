#include "crc32c.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace hfvfs::cache {
namespace {

std::span<const std::byte> Bytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

TEST(Crc32cTest, KnownValues) {
  EXPECT_EQ(Crc32c(Bytes("")), 0u);
  EXPECT_EQ(Crc32c(Bytes("123456789")), 0xE3069283u);  // the CRC-32C check value
  EXPECT_EQ(Crc32cPortable(Bytes("123456789")), 0xE3069283u);
  const std::string zeros(32, '\0');
  EXPECT_EQ(Crc32c(Bytes(zeros)), 0x8A9136AAu);  // RFC 3720 B.4: 32 bytes of zeros
}

TEST(Crc32cTest, EveryPathAgreesWithTheTableForManyLengthsAndSeeds) {
  std::mt19937_64 rng(42);
  std::vector<std::byte> data(200 * 1024 + 13);
  for (auto& b : data) b = static_cast<std::byte>(rng());
  const std::span<const std::byte> all(data);
  for (size_t n :
       {size_t{0}, size_t{1}, size_t{7}, size_t{8}, size_t{3071}, size_t{3072}, size_t{3073},
        size_t{4096}, size_t{65536}, size_t{65536 + 5}, size_t{100000}, data.size()}) {
    for (uint32_t seed : {0u, 0xDEADBEEFu}) {
      EXPECT_EQ(Crc32c(all.first(n), seed), Crc32cPortable(all.first(n), seed))
          << "length " << n << " seed " << seed;
    }
  }
  // Chaining: the CRC of a whole equals the CRC of its second part seeded with the first's.
  const uint32_t first = Crc32c(all.first(70001));
  EXPECT_EQ(Crc32c(all.subspan(70001), first), Crc32c(all));
}

}  // namespace
}  // namespace hfvfs::cache
