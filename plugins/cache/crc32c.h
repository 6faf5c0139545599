// File: crc32c.h
//
// CRC-32C (Castagnoli), the per-block checksum of cached chunks. Uses the SSE4.2 instruction
// when the CPU has it (three streams at once, over 10 GB/s, so verifying what a read touches stays
// cheap) and a table otherwise. Crc32c(data) of the empty span is 0; the value matches iSCSI/ext4's
// CRC-32C.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace hfvfs::cache {

uint32_t Crc32c(std::span<const std::byte> data, uint32_t crc = 0);
// The same value computed a byte at a time from a table (the reference, for tests).
uint32_t Crc32cPortable(std::span<const std::byte> data, uint32_t crc = 0);

}  // namespace hfvfs::cache
