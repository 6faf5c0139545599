// File: crc32c.h
//
// CRC-32C (Castagnoli), the per-block checksum of cached chunks. Inputs of 512 bytes and more
// are folded with carry-less multiplication when the CPU has AVX-512 VPCLMULQDQ (about 55 GB/s
// from cache here, twice the CRC instruction's rate; a chunk's first read after a remount
// verifies every block it touches, and that was a fifth of the mount's CPU); the SSE4.2 CRC
// instruction (three streams at once) does the rest, and a table serves CPUs without either.
// Crc32c(data) of the empty span is 0; the value matches iSCSI/ext4's CRC-32C.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace hfvfs::cache {

uint32_t Crc32c(std::span<const std::byte> data, uint32_t crc = 0);
// The same value computed a byte at a time from a table (the reference, for tests).
uint32_t Crc32cPortable(std::span<const std::byte> data, uint32_t crc = 0);
// True when Crc32c folds large inputs with VPCLMULQDQ on this CPU.
bool Crc32cFolds();

}  // namespace hfvfs::cache
