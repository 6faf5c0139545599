#include "crc32c.h"

#include <array>
#include <atomic>
#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#include <nmmintrin.h>
#endif

namespace hfvfs::cache {
namespace {

constexpr uint32_t kPolyReversed = 0x82F63B78u;

constexpr std::array<uint32_t, 256> MakeTable() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ kPolyReversed : c >> 1;
    table[i] = c;
  }
  return table;
}

constexpr std::array<uint32_t, 256> kTable = MakeTable();

uint32_t Crc32cTable(const unsigned char* p, size_t n, uint32_t crc) {
  for (size_t i = 0; i < n; ++i) crc = kTable[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
  return crc;
}

// a * b modulo the polynomial, bit-reflected (bit 31 is x^0), as CRC registers are.
uint32_t MultiplyModPoly(uint32_t a, uint32_t b) {
  uint32_t product = 0;
  for (uint32_t bit = 1u << 31; bit != 0; bit >>= 1) {
    if (a & bit) product ^= b;
    b = (b & 1) ? (b >> 1) ^ kPolyReversed : b >> 1;
  }
  return product;
}

// x^(8 * bytes) modulo the polynomial: what appending `bytes` zero bytes multiplies a CRC by.
uint32_t ZerosFactor(uint64_t bytes) {
  // The last length asked (blocks are nearly always the same size): (bytes << 32) | factor.
  static std::atomic<uint64_t> last{0};
  const uint64_t cached = last.load(std::memory_order_relaxed);
  if (bytes != 0 && (cached >> 32) == bytes) return static_cast<uint32_t>(cached);
  uint32_t factor = 1u << 31;  // x^0
  uint32_t power = 1u << 23;   // x^8
  for (uint64_t n = bytes; n != 0; n >>= 1) {
    if (n & 1) factor = MultiplyModPoly(power, factor);
    power = MultiplyModPoly(power, power);
  }
  if (bytes < (1ull << 32)) last.store((bytes << 32) | factor, std::memory_order_relaxed);
  return factor;
}

// The CRC of A then B from crc_a = CRC(A) (any initial value) and crc_b = CRC(B) (from 0).
uint32_t Combine(uint32_t crc_a, uint32_t crc_b, uint64_t length_b) {
  return MultiplyModPoly(ZerosFactor(length_b), crc_a) ^ crc_b;
}

#if defined(__x86_64__)
// The CRC instruction has a latency of three cycles and a throughput of one: three independent
// streams over thirds of the data run about three times faster than one, then are combined.
constexpr size_t kThreeStreamsMin = 3 * 1024;

__attribute__((target("sse4.2"))) uint32_t Crc32cHardware(const unsigned char* p, size_t n,
                                                          uint32_t crc) {
  if (n >= kThreeStreamsMin) {
    const size_t part = n / 24 * 8;
    uint64_t c0 = crc;
    uint64_t c1 = 0xFFFFFFFFu;
    uint64_t c2 = 0xFFFFFFFFu;
    for (size_t i = 0; i < part; i += 8) {
      uint64_t w0, w1, w2;
      std::memcpy(&w0, p + i, 8);
      std::memcpy(&w1, p + part + i, 8);
      std::memcpy(&w2, p + 2 * part + i, 8);
      c0 = _mm_crc32_u64(c0, w0);
      c1 = _mm_crc32_u64(c1, w1);
      c2 = _mm_crc32_u64(c2, w2);
    }
    // Registers hold inverted CRCs; Combine works on CRC values.
    const uint32_t joined =
        Combine(Combine(~static_cast<uint32_t>(c0), ~static_cast<uint32_t>(c1), part),
                ~static_cast<uint32_t>(c2), part);
    crc = ~joined;
    p += 3 * part;
    n -= 3 * part;
  }
  uint64_t c = crc;
  while (n >= 8) {
    uint64_t word;
    std::memcpy(&word, p, 8);
    c = _mm_crc32_u64(c, word);
    p += 8;
    n -= 8;
  }
  uint32_t c32 = static_cast<uint32_t>(c);
  while (n > 0) {
    c32 = _mm_crc32_u8(c32, *p);
    ++p;
    --n;
  }
  return c32;
}

bool HasSse42() {
  static const bool has = __builtin_cpu_supports("sse4.2");
  return has;
}

// ---- Folding with carry-less multiplication (AVX-512 VPCLMULQDQ) ----
//
// A 16-byte piece C of the message, as a polynomial, is H * x^64 + L (H its first 8 bytes, the
// higher powers). Moved D bits further along the message it becomes C * x^D, which is congruent
// modulo the CRC polynomial P to H * (x^(64+D) mod P) + L * (x^D mod P): a polynomial of at most
// 95 bits, XORed into the piece that sits D bits later. Folding the whole prefix this way leaves
// 16 bytes congruent to it; the CRC of those 16 bytes (from register 0) is the register after
// the prefix, and the CRC instruction finishes from there.
//
// Registers hold the pieces as loaded from memory, bit-reflected: bit i of the 128 bits is the
// coefficient of x^(127-i), the low 64 bits hold H, the high 64 bits L. A carry-less product of
// two bit-reflected 64-bit values is the reflected 127-bit product shifted down by one bit, which
// the constants absorb: the multiplier of H is reflect64(x^(64+D-1) mod P), that of L
// reflect64(x^(D-1) mod P).
constexpr size_t kFoldBlock = 256;             // bytes per loop: four 64-byte registers
constexpr size_t kFoldMin = 2 * kFoldBlock;    // shorter inputs take the CRC instruction
constexpr uint32_t kPolyNormal = 0x1EDC6F41u;  // P without its x^32 term

// x^n mod P, bit j = coefficient of x^j.
constexpr uint32_t XPowModP(uint32_t n) {
  uint32_t r = 1;
  for (uint32_t i = 0; i < n; ++i) r = (r & 0x80000000u) ? (r << 1) ^ kPolyNormal : r << 1;
  return r;
}

constexpr uint64_t Reflect64Of32(uint32_t v) {  // reflect64 of a polynomial of degree < 32
  uint64_t r = 0;
  for (int j = 0; j < 32; ++j) {
    if (v & (1u << j)) r |= uint64_t{1} << (63 - j);
  }
  return r;
}

// The multipliers (H's, L's) that move a 16-byte piece `bits` bits further.
struct FoldConstants {
  uint64_t h, l;
};
constexpr FoldConstants FoldBy(uint32_t bits) {
  return {Reflect64Of32(XPowModP(64 + bits - 1)), Reflect64Of32(XPowModP(bits - 1))};
}

__attribute__((target("avx512f,vpclmulqdq"))) inline __m512i Fold512(__m512i acc, __m512i k) {
  // Per 128-bit lane: low half times k.h, high half times k.l.
  return _mm512_xor_si512(_mm512_clmulepi64_epi128(acc, k, 0x00),
                          _mm512_clmulepi64_epi128(acc, k, 0x11));
}

__attribute__((target("avx512f,vpclmulqdq"))) inline __m512i Broadcast(FoldConstants c) {
  const auto h = static_cast<long long>(c.h), l = static_cast<long long>(c.l);
  return _mm512_set_epi64(l, h, l, h, l, h, l, h);
}

// `crc` is the register (inverted CRC); n >= kFoldMin. Returns the register.
__attribute__((target("avx512f,vpclmulqdq,sse4.2"))) uint32_t Crc32cFold(const unsigned char* p,
                                                                         size_t n, uint32_t crc) {
  static constexpr FoldConstants k2048 = FoldBy(2048), k512 = FoldBy(512), k384 = FoldBy(384),
                                 k256 = FoldBy(256), k128 = FoldBy(128);
  // The register joins the message as an XOR into its first four bytes.
  __m512i a0 = _mm512_xor_si512(_mm512_loadu_si512(p), _mm512_set_epi64(0, 0, 0, 0, 0, 0, 0, crc));
  __m512i a1 = _mm512_loadu_si512(p + 64);
  __m512i a2 = _mm512_loadu_si512(p + 128);
  __m512i a3 = _mm512_loadu_si512(p + 192);
  const __m512i by_block = Broadcast(k2048);
  size_t done = kFoldBlock;
  for (; done + kFoldBlock <= n; done += kFoldBlock) {
    a0 = _mm512_xor_si512(Fold512(a0, by_block), _mm512_loadu_si512(p + done));
    a1 = _mm512_xor_si512(Fold512(a1, by_block), _mm512_loadu_si512(p + done + 64));
    a2 = _mm512_xor_si512(Fold512(a2, by_block), _mm512_loadu_si512(p + done + 128));
    a3 = _mm512_xor_si512(Fold512(a3, by_block), _mm512_loadu_si512(p + done + 192));
  }
  // Four registers into one (each is 512 bits before the next), then four lanes into one.
  const __m512i by_register = Broadcast(k512);
  a1 = _mm512_xor_si512(a1, Fold512(a0, by_register));
  a2 = _mm512_xor_si512(a2, Fold512(a1, by_register));
  a3 = _mm512_xor_si512(a3, Fold512(a2, by_register));
  const __m512i by_lane =
      _mm512_set_epi64(0, 0, static_cast<long long>(k128.l), static_cast<long long>(k128.h),
                       static_cast<long long>(k256.l), static_cast<long long>(k256.h),
                       static_cast<long long>(k384.l), static_cast<long long>(k384.h));
  // Lanes 0..2 moved 384, 256 and 128 bits along to lane 3's place; lane 3 itself times (0, 0).
  alignas(64) uint64_t lanes[8], moved[8];
  _mm512_store_si512(lanes, a3);
  _mm512_store_si512(moved, Fold512(a3, by_lane));
  uint64_t c = 0;
  c = _mm_crc32_u64(c, lanes[6] ^ moved[0] ^ moved[2] ^ moved[4]);
  c = _mm_crc32_u64(c, lanes[7] ^ moved[1] ^ moved[3] ^ moved[5]);
  return Crc32cHardware(p + done, n - done, static_cast<uint32_t>(c));
}

bool HasFold() {
  static const bool has =
      __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("vpclmulqdq") && HasSse42();
  return has;
}
#endif

}  // namespace

uint32_t Crc32cPortable(std::span<const std::byte> data, uint32_t crc) {
  return ~Crc32cTable(reinterpret_cast<const unsigned char*>(data.data()), data.size(), ~crc);
}

uint32_t Crc32c(std::span<const std::byte> data, uint32_t crc) {
  const auto* p = reinterpret_cast<const unsigned char*>(data.data());
  uint32_t c = ~crc;
#if defined(__x86_64__)
  if (data.size() >= kFoldMin && HasFold()) return ~Crc32cFold(p, data.size(), c);
  if (HasSse42()) return ~Crc32cHardware(p, data.size(), c);
#endif
  return ~Crc32cTable(p, data.size(), c);
}

bool Crc32cFolds() {
#if defined(__x86_64__)
  return HasFold();
#else
  return false;
#endif
}

}  // namespace hfvfs::cache
