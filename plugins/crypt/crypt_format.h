// File: crypt_format.h
//
// The on-disk format of the crypt layer (docs/crypt-format.md states it for other
// implementers): key derivation, the content container (a 64-byte header followed by records
// of 64 KiB of plaintext, each sealed with XChaCha20-Poly1305) and deterministic, authenticated
// names (a SIV built from keyed BLAKE2b and XChaCha20). Pure functions over bytes: no I/O, no
// locks, thread-safe. Everything here is libsodium 1.0.18.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "hfvfs/result.h"

namespace hfvfs::crypt {

inline constexpr size_t kKeyBytes = 32;
inline constexpr size_t kFileIdBytes = 24;
inline constexpr size_t kNonceBytes = 24;
inline constexpr size_t kTagBytes = 16;
inline constexpr size_t kRecordOverhead = kNonceBytes + kTagBytes;  // 40
inline constexpr size_t kHeaderBytes = 64;
inline constexpr uint32_t kChunkBytes = 65536;  // plaintext bytes per record (format v1)
inline constexpr size_t kRecordBytes = kChunkBytes + kRecordOverhead;
inline constexpr uint8_t kFormatVersion = 1;
inline constexpr uint8_t kAlgXChaCha20Poly1305 = 1;
inline constexpr char kMagic[4] = {'H', 'F', 'V', 'C'};
// The literal folder at the root of the store that holds everything encrypted.
inline constexpr std::string_view kEncDir = ".enc";

using Key = std::array<uint8_t, kKeyBytes>;
using FileId = std::array<uint8_t, kFileIdBytes>;
using Nonce = std::array<uint8_t, kNonceBytes>;

// Keys derived from the master key (crypto_kdf, context "hfvfscr1"). No store, bucket or path
// enters the derivation: an encrypted tree can move between stores. Zeroed on destruction.
struct KeySet {
  Key content;   // subkey 1: per-file keys are derived from it
  Key name_mac;  // subkey 2: the SIV tag of names
  Key name_enc;  // subkey 3: the XChaCha20 key of names
  Key link;      // subkey 4: the XChaCha20-Poly1305 key of symlink targets
  ~KeySet();
};
void DeriveKeySet(const Key& master, KeySet& out);

// Per-file keys: BLAKE2b-512 keyed with the content key over the file id.
struct FileKeys {
  Key record;  // XChaCha20-Poly1305 key of the records
  Key header;  // BLAKE2b-128 key of the header tag
  ~FileKeys();
};
void DeriveFileKeys(const KeySet& keys, const FileId& file_id, FileKeys& out);

// ---- Content container ----

// Builds the 64-byte header of a file whose plaintext path (relative to the crypt root) is
// `path`: the tag binds the file id to the path, so contents swapped between two files fail.
std::array<uint8_t, kHeaderBytes> EncodeHeader(const FileKeys& fk, const FileId& file_id,
                                               std::string_view path);
// Parses a header: checks magic, version, algorithm, lengths and chunk size, then the tag for
// `path`. On success fills `file_id` and `fk`. EIO with a message saying which check failed.
Status DecodeHeader(const KeySet& keys, std::span<const uint8_t> header, std::string_view path,
                    FileId& file_id, FileKeys& fk);

// Object size of a container holding `plaintext` bytes: the header, one full record per whole
// chunk, and one final record holding the rest (possibly nothing).
uint64_t CiphertextSize(uint64_t plaintext);
// The inverse; nullopt when no plaintext size maps to `object` (truncated or foreign object).
std::optional<uint64_t> PlaintextSize(uint64_t object);
// Number of records of a file of `plaintext` bytes (always at least 1: the final record).
inline uint64_t RecordCount(uint64_t plaintext) { return plaintext / kChunkBytes + 1; }
// Offset of record `index` in the object.
inline uint64_t RecordOffset(uint64_t index) { return kHeaderBytes + index * kRecordBytes; }
// Plaintext bytes of record `index` in a file of `plaintext` bytes.
inline size_t RecordPlaintextBytes(uint64_t index, uint64_t plaintext) {
  return index + 1 < RecordCount(plaintext) ? kChunkBytes : plaintext % kChunkBytes;
}

// Seals `plain` (at most one chunk) as record `index` into `out` (plain.size() + 40 bytes):
// nonce | ciphertext | tag. `final` marks the last record of the file. The nonce is fresh
// random unless `fixed_nonce` is given (test vectors only).
void SealRecord(const FileKeys& fk, const FileId& file_id, uint64_t index, bool final,
                std::span<const uint8_t> plain, std::span<uint8_t> out,
                const Nonce* fixed_nonce = nullptr);
// Opens record `index` (`record` = nonce | ciphertext | tag) into `plain` (record.size() - 40
// bytes). EIO when the record is not authentic for this file, index and finality.
Status OpenRecord(const FileKeys& fk, const FileId& file_id, uint64_t index, bool final,
                  std::span<const uint8_t> record, std::span<uint8_t> plain);

// Authenticates the whole of record `index` like OpenRecord, but decrypts only the plaintext
// bytes [offset, offset + plain.size()) of it into `plain`: a small read of a large record pays
// for the tag check and not for decrypting the rest. EIO exactly when OpenRecord would fail.
Status OpenRecordPart(const FileKeys& fk, const FileId& file_id, uint64_t index, bool final,
                      std::span<const uint8_t> record, size_t offset, std::span<uint8_t> plain);

// ---- Names ----

enum class NameEncoding : uint8_t { kBase64Url, kBase32 };

// The longest plaintext name (bytes) that encrypts into a 255-character component.
size_t MaxNameBytes(NameEncoding encoding);

// Encrypts one component `name` living in the plaintext directory `parent` ("" = root).
// ENAMETOOLONG beyond MaxNameBytes; EINVAL for an empty name or one holding NUL or '/'.
Result<std::string> EncryptName(const KeySet& keys, NameEncoding encoding, std::string_view parent,
                                std::string_view name);
// The plaintext name, or nullopt when `encrypted` is not one of our names in `parent` (another
// key, another directory, tampered, or not an encrypted name at all).
std::optional<std::string> DecryptName(const KeySet& keys, NameEncoding encoding,
                                       std::string_view parent, std::string_view encrypted);

// ---- Symlink targets ----

// The longest target (bytes) whose sealed form, base64url-encoded, fits in the 4095 bytes a
// POSIX symlink can hold: 24 + 3031 + 16 = 3071 bytes = 4095 characters.
inline constexpr size_t kMaxLinkTargetBytes = 3031;

// Seals the target of the symlink at plaintext path `path`: NUL-padded to 32-byte buckets,
// XChaCha20-Poly1305 with a fresh random nonce (or `fixed_nonce`, test vectors only) and the
// path as associated data, base64url-encoded. ENAMETOOLONG beyond kMaxLinkTargetBytes; ENOENT
// for an empty target and EINVAL for one holding NUL (as symlink(2)).
Result<std::string> EncryptLinkTarget(const KeySet& keys, std::string_view path,
                                      std::string_view target, const Nonce* fixed_nonce = nullptr);
// The plaintext target of the symlink reached by `path` whose lower target is `stored`; EIO
// when it does not authenticate (another key, tampered, or a link moved from another path).
Result<std::string> DecryptLinkTarget(const KeySet& keys, std::string_view path,
                                      std::string_view stored);

// Encodings (exposed for tests): RFC 4648 base64url without padding, and lowercase RFC 4648
// base32 without padding. Decoders accept only the canonical form.
std::string EncodeBase64Url(std::span<const uint8_t> bytes);
std::optional<std::vector<uint8_t>> DecodeBase64Url(std::string_view text);
std::string EncodeBase32(std::span<const uint8_t> bytes);
std::optional<std::vector<uint8_t>> DecodeBase32(std::string_view text);

// Initialises libsodium once (thread-safe); false when it cannot.
bool SodiumReady();

}  // namespace hfvfs::crypt
