#include "crypt_aead.h"

#include <openssl/evp.h>
#include <sodium.h>

#include <atomic>
#include <cstring>
#include <vector>

namespace hfvfs::crypt {
namespace {

// OpenSSL algorithms, fetched once for the life of the process (never freed).
struct Algorithms {
  EVP_CIPHER* aead = nullptr;    // ChaCha20-Poly1305, RFC 8439 (96-bit nonce)
  EVP_CIPHER* stream = nullptr;  // ChaCha20; IV = 32-bit block counter (LE) || 96-bit nonce
  EVP_MAC* poly = nullptr;       // Poly1305
  bool ok() const { return aead && stream && poly; }
};

const Algorithms& Algs() {
  static const Algorithms algorithms = [] {
    Algorithms a;
    a.aead = EVP_CIPHER_fetch(nullptr, "ChaCha20-Poly1305", nullptr);
    a.stream = EVP_CIPHER_fetch(nullptr, "ChaCha20", nullptr);
    a.poly = EVP_MAC_fetch(nullptr, "POLY1305", nullptr);
    return a;
  }();
  return algorithms;
}

std::atomic<bool> force_libsodium{false};

bool UseOpenssl() { return !force_libsodium.load(std::memory_order_relaxed) && Algs().ok(); }

// One thread's OpenSSL contexts. The cipher context is reset after every call (which frees
// and cleanses its key state); the MAC context is re-keyed with zeros after every call.
struct ThreadContexts {
  EVP_CIPHER_CTX* cipher = nullptr;
  EVP_MAC_CTX* mac = nullptr;
  ThreadContexts() {
    cipher = EVP_CIPHER_CTX_new();
    mac = EVP_MAC_CTX_new(Algs().poly);
  }
  ~ThreadContexts() {
    EVP_CIPHER_CTX_free(cipher);
    EVP_MAC_CTX_free(mac);
  }
  bool ok() const { return cipher && mac; }
};

ThreadContexts& Contexts() {
  thread_local ThreadContexts contexts;
  return contexts;
}

// The ChaCha20-Poly1305-IETF key and nonce of an XChaCha20-Poly1305-IETF key and nonce.
struct IetfParams {
  uint8_t key[32];
  uint8_t nonce[12];
  IetfParams(const uint8_t xkey[32], const uint8_t xnonce[24]) {
    crypto_core_hchacha20(key, xnonce, xkey, nullptr);
    std::memset(nonce, 0, 4);
    std::memcpy(nonce + 4, xnonce + 16, 8);
  }
  ~IetfParams() { sodium_memzero(key, sizeof key); }
};

void PutLe64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

// ---- OpenSSL ----

bool SealOpenssl(const uint8_t key[32], const uint8_t nonce[24], const uint8_t* aad, size_t aad_len,
                 const uint8_t* plain, size_t len, uint8_t* ct, uint8_t tag[16]) {
  ThreadContexts& t = Contexts();
  if (!t.ok()) return false;
  IetfParams p(key, nonce);
  EVP_CIPHER_CTX* c = t.cipher;
  int n = 0;
  uint8_t none[1];
  bool ok = EVP_EncryptInit_ex2(c, Algs().aead, p.key, p.nonce, nullptr) == 1;
  if (ok && aad_len) ok = EVP_EncryptUpdate(c, nullptr, &n, aad, static_cast<int>(aad_len)) == 1;
  if (ok && len) {
    ok = EVP_EncryptUpdate(c, ct, &n, plain, static_cast<int>(len)) == 1 &&
         n == static_cast<int>(len);
  }
  if (ok) ok = EVP_EncryptFinal_ex(c, none, &n) == 1;
  if (ok) ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, 16, tag) == 1;
  EVP_CIPHER_CTX_reset(c);
  return ok;
}

// 1 = authentic, 0 = not authentic, -1 = OpenSSL failed (use libsodium).
int OpenWholeOpenssl(const IetfParams& p, const uint8_t* aad, size_t aad_len, const uint8_t* ct,
                     size_t len, const uint8_t tag[16], uint8_t* out) {
  EVP_CIPHER_CTX* c = Contexts().cipher;
  int n = 0;
  uint8_t none[1];
  if (EVP_DecryptInit_ex2(c, Algs().aead, p.key, p.nonce, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, 16, const_cast<uint8_t*>(tag)) != 1 ||
      (aad_len && EVP_DecryptUpdate(c, nullptr, &n, aad, static_cast<int>(aad_len)) != 1) ||
      (len && (EVP_DecryptUpdate(c, out, &n, ct, static_cast<int>(len)) != 1 ||
               n != static_cast<int>(len)))) {
    EVP_CIPHER_CTX_reset(c);
    return -1;
  }
  int verdict = EVP_DecryptFinal_ex(c, none, &n) == 1 ? 1 : 0;
  EVP_CIPHER_CTX_reset(c);
  return verdict;
}

// Verifies the tag with Poly1305 alone and decrypts only [offset, offset + out_len).
int OpenPartOpenssl(const IetfParams& p, const uint8_t* aad, size_t aad_len, const uint8_t* ct,
                    size_t len, const uint8_t tag[16], size_t offset, uint8_t* out,
                    size_t out_len) {
  ThreadContexts& t = Contexts();
  EVP_CIPHER_CTX* c = t.cipher;
  static const uint8_t kZeros[64] = {};
  uint8_t iv[16];
  std::memset(iv, 0, 4);  // block counter 0: the Poly1305 key
  std::memcpy(iv + 4, p.nonce, 12);
  uint8_t block0[64];
  int n = 0;
  bool ok = EVP_EncryptInit_ex2(c, Algs().stream, p.key, iv, nullptr) == 1 &&
            EVP_EncryptUpdate(c, block0, &n, kZeros, 64) == 1 && n == 64;
  EVP_CIPHER_CTX_reset(c);
  if (!ok) return -1;
  uint8_t lengths[16];
  PutLe64(lengths, aad_len);
  PutLe64(lengths + 8, len);
  uint8_t computed[16];
  size_t computed_len = 0;
  ok = EVP_MAC_init(t.mac, block0, 32, nullptr) == 1 && EVP_MAC_update(t.mac, aad, aad_len) == 1 &&
       EVP_MAC_update(t.mac, kZeros, (16 - aad_len % 16) % 16) == 1 &&
       EVP_MAC_update(t.mac, ct, len) == 1 &&
       EVP_MAC_update(t.mac, kZeros, (16 - len % 16) % 16) == 1 &&
       EVP_MAC_update(t.mac, lengths, sizeof lengths) == 1 &&
       EVP_MAC_final(t.mac, computed, &computed_len, sizeof computed) == 1 && computed_len == 16;
  (void)EVP_MAC_init(t.mac, kZeros, 32, nullptr);  // drop the one-time key
  sodium_memzero(block0, sizeof block0);
  if (!ok) return -1;
  if (crypto_verify_16(computed, tag) != 0) return 0;
  if (out_len == 0) return 1;
  // Keystream block 1 + b covers plaintext bytes [64b, 64b + 64).
  const uint32_t counter = static_cast<uint32_t>(1 + offset / 64);
  std::memcpy(iv, &counter, 4);  // little-endian hosts only (x86-64, arm64)
  const size_t skip = offset % 64;
  uint8_t scratch[64];
  ok = EVP_EncryptInit_ex2(c, Algs().stream, p.key, iv, nullptr) == 1 &&
       (skip == 0 || EVP_EncryptUpdate(c, scratch, &n, kZeros, static_cast<int>(skip)) == 1) &&
       EVP_EncryptUpdate(c, out, &n, ct + offset, static_cast<int>(out_len)) == 1 &&
       n == static_cast<int>(out_len);
  EVP_CIPHER_CTX_reset(c);
  return ok ? 1 : -1;
}

// ---- libsodium ----

void SealLibsodium(const uint8_t key[32], const uint8_t nonce[24], const uint8_t* aad,
                   size_t aad_len, const uint8_t* plain, size_t len, uint8_t* ct, uint8_t tag[16]) {
  crypto_aead_xchacha20poly1305_ietf_encrypt_detached(ct, tag, nullptr, plain, len, aad, aad_len,
                                                      nullptr, nonce, key);
}

// XChaCha20-Poly1305-IETF spelled out as libsodium composes it: the HChaCha20 subkey, the
// ChaCha20-IETF nonce 0^4 || nonce[16..24], the Poly1305 key from block 0, data from block 1.
bool OpenPartLibsodium(const IetfParams& p, const uint8_t* aad, size_t aad_len, const uint8_t* ct,
                       size_t len, const uint8_t tag[16], size_t offset, uint8_t* out,
                       size_t out_len) {
  uint8_t block0[64] = {};
  crypto_stream_chacha20_ietf(block0, sizeof block0, p.nonce, p.key);
  crypto_onetimeauth_poly1305_state st;
  crypto_onetimeauth_poly1305_init(&st, block0);
  static const uint8_t kZeros[16] = {};
  crypto_onetimeauth_poly1305_update(&st, aad, aad_len);
  crypto_onetimeauth_poly1305_update(&st, kZeros, (0x10 - aad_len) & 0xf);
  crypto_onetimeauth_poly1305_update(&st, ct, len);
  crypto_onetimeauth_poly1305_update(&st, kZeros, (0x10 - len) & 0xf);
  uint8_t lengths[16];
  PutLe64(lengths, aad_len);
  PutLe64(lengths + 8, len);
  crypto_onetimeauth_poly1305_update(&st, lengths, sizeof lengths);
  uint8_t computed[crypto_onetimeauth_poly1305_BYTES];
  crypto_onetimeauth_poly1305_final(&st, computed);
  sodium_memzero(block0, sizeof block0);
  sodium_memzero(&st, sizeof st);
  if (crypto_verify_16(computed, tag) != 0) return false;
  if (out_len == 0) return true;
  const size_t first_block = offset / 64, skip = offset % 64;
  if (skip == 0) {
    crypto_stream_chacha20_ietf_xor_ic(out, ct + offset, out_len, p.nonce,
                                       static_cast<uint32_t>(1 + first_block), p.key);
  } else {
    std::vector<uint8_t> tmp(skip + out_len);
    crypto_stream_chacha20_ietf_xor_ic(tmp.data(), ct + offset - skip, tmp.size(), p.nonce,
                                       static_cast<uint32_t>(1 + first_block), p.key);
    std::memcpy(out, tmp.data() + skip, out_len);
    sodium_memzero(tmp.data(), tmp.size());
  }
  return true;
}

bool OpenLibsodium(const uint8_t key[32], const uint8_t nonce[24], const IetfParams& p,
                   const uint8_t* aad, size_t aad_len, const uint8_t* ct, size_t len,
                   const uint8_t tag[16], size_t offset, uint8_t* out, size_t out_len) {
  if (offset == 0 && out_len == len) {
    return crypto_aead_xchacha20poly1305_ietf_decrypt_detached(out, nullptr, ct, len, tag, aad,
                                                               aad_len, nonce, key) == 0;
  }
  return OpenPartLibsodium(p, aad, aad_len, ct, len, tag, offset, out, out_len);
}

}  // namespace

void AeadSealDetached(const uint8_t key[32], const uint8_t nonce[24], const uint8_t* aad,
                      size_t aad_len, const uint8_t* plain, size_t len, uint8_t* ct,
                      uint8_t tag[16]) {
  if (UseOpenssl() && SealOpenssl(key, nonce, aad, aad_len, plain, len, ct, tag)) return;
  SealLibsodium(key, nonce, aad, aad_len, plain, len, ct, tag);
}

bool AeadOpenDetached(const uint8_t key[32], const uint8_t nonce[24], const uint8_t* aad,
                      size_t aad_len, const uint8_t* ct, size_t len, const uint8_t tag[16],
                      size_t offset, uint8_t* out, size_t out_len) {
  IetfParams p(key, nonce);
  int verdict = -1;
  if (UseOpenssl() && Contexts().ok()) {
    // A whole record goes through the AEAD in one call; a part is verified with Poly1305 over
    // the whole ciphertext and only that part is decrypted.
    verdict = offset == 0 && out_len == len
                  ? OpenWholeOpenssl(p, aad, aad_len, ct, len, tag, out)
                  : OpenPartOpenssl(p, aad, aad_len, ct, len, tag, offset, out, out_len);
  }
  if (verdict < 0) {
    verdict = OpenLibsodium(key, nonce, p, aad, aad_len, ct, len, tag, offset, out, out_len);
  }
  if (verdict != 1 && out_len) sodium_memzero(out, out_len);
  return verdict == 1;
}

const char* AeadEngine() { return UseOpenssl() ? "openssl" : "libsodium"; }

void AeadForceLibsodiumForTesting(bool force) { force_libsodium.store(force); }

}  // namespace hfvfs::crypt
