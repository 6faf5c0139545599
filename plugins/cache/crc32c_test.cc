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

// The folding path (inputs of 512 bytes and more on CPUs with VPCLMULQDQ) against the table for
// every length around its block sizes and edges, every start alignment and random seeds.
TEST(Crc32cTest, FoldingAgreesWithTheTableForLengthsAlignmentsAndSeeds) {
  if (!Crc32cFolds()) GTEST_LOG_(INFO) << "this CPU has no VPCLMULQDQ: the CRC instruction answers";
  std::mt19937_64 rng(7);
  std::vector<std::byte> data(300 * 1024);
  for (auto& b : data) b = static_cast<std::byte>(rng());
  const std::span<const std::byte> all(data);
  std::vector<size_t> lengths;
  for (size_t n = 500; n <= 1300; ++n) lengths.push_back(n);  // one to five 256-byte blocks
  for (size_t n : {size_t{4095}, size_t{4096}, size_t{65535}, size_t{65536}, size_t{65537},
                   size_t{262144 + 255}, size_t{290000}}) {
    lengths.push_back(n);
  }
  for (int i = 0; i < 200; ++i) lengths.push_back(512 + rng() % (290000 - 512));
  for (size_t n : lengths) {
    const size_t start = rng() % 64;
    const uint32_t seed = (n % 3 == 0) ? 0u : static_cast<uint32_t>(rng());
    const auto piece = all.subspan(start, n);
    ASSERT_EQ(Crc32c(piece, seed), Crc32cPortable(piece, seed))
        << "length " << n << " start " << start << " seed " << seed;
  }
  // A block of zeros and one of all ones (no carry-less product may drop a bit).
  const std::vector<std::byte> zeros(65536, std::byte{0}), ones(65536, std::byte{0xFF});
  EXPECT_EQ(Crc32c(zeros), Crc32cPortable(zeros));
  EXPECT_EQ(Crc32c(ones, 0x12345678u), Crc32cPortable(ones, 0x12345678u));
}

}  // namespace
}  // namespace hfvfs::cache
