// File: crypt_aead.h
//
// The record cipher of the crypt format: XChaCha20-Poly1305-IETF, exactly the bytes of
// libsodium's crypto_aead_xchacha20poly1305_ietf_*_detached (docs/crypt-format.md §1), computed
// with OpenSSL's ChaCha20-Poly1305 and ChaCha20/Poly1305 for the bulk work (its AVX-512 and
// AVX2 code is several times faster than libsodium 1.0.18's on the machines we run on) and
// libsodium's HChaCha20 for the subkey. When OpenSSL cannot serve a call (no provider), the
// libsodium functions do. Thread-safe: each thread keeps its own OpenSSL contexts, reset after
// every call so no key material stays in them.
#pragma once

#include <cstddef>
#include <cstdint>

namespace hfvfs::crypt {

// Seals `len` bytes of `plain` into `ct` (same length) and `tag` (16 bytes).
void AeadSealDetached(const uint8_t key[32], const uint8_t nonce[24], const uint8_t* aad,
                      size_t aad_len, const uint8_t* plain, size_t len, uint8_t* ct,
                      uint8_t tag[16]);

// Checks `tag` over `ct` (`len` bytes) and `aad`, and decrypts the plaintext bytes
// [offset, offset + out_len) of it into `out`. False (and `out` zeroed) when the tag does not
// verify. offset + out_len <= len; out_len may be 0 (verify only).
bool AeadOpenDetached(const uint8_t key[32], const uint8_t nonce[24], const uint8_t* aad,
                      size_t aad_len, const uint8_t* ct, size_t len, const uint8_t tag[16],
                      size_t offset, uint8_t* out, size_t out_len);

// Which implementation serves the calls: "openssl" or "libsodium" (for logs and tests).
const char* AeadEngine();

// Tests only: force the libsodium implementation on (true) or back to the default (false).
void AeadForceLibsodiumForTesting(bool force);

}  // namespace hfvfs::crypt
