#include "crypt_format.h"

#include <sodium.h>

#include <algorithm>
#include <cstring>

#include "crypt_aead.h"

namespace hfvfs::crypt {
namespace {

constexpr char kKdfContext[crypto_kdf_CONTEXTBYTES + 1] = "hfvfscr1";
constexpr uint64_t kSubkeyContent = 1;
constexpr uint64_t kSubkeyNameMac = 2;
constexpr uint64_t kSubkeyNameEnc = 3;
constexpr uint64_t kSubkeyLink = 4;
constexpr char kLinkMagic[4] = {'H', 'F', 'V', 'L'};
constexpr size_t kLinkBucket = 32;
// BLAKE2b personalisation strings: exactly 16 bytes each, one per use.
constexpr char kPersonalFile[17] = "hfvfs-crypt-file";
constexpr char kPersonalHead[17] = "hfvfs-crypt-head";
constexpr char kPersonalName[17] = "hfvfs-crypt-name";
constexpr size_t kNameTagBytes = 16;
constexpr size_t kNameBucket = 32;
constexpr size_t kHeaderTagged = kHeaderBytes - kTagBytes;  // 48 bytes covered by the tag
constexpr size_t kRecordAadBytes = 6 + kFileIdBytes + 8 + 4 + 1;

void PutLe(uint8_t* p, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint64_t GetLe(const uint8_t* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

// Keyed BLAKE2b-128 over the concatenation of `parts`, personalised by `personal`.
void Mac128(const Key& key, const char* personal,
            std::initializer_list<std::span<const uint8_t>> parts, uint8_t out[16]) {
  crypto_generichash_blake2b_state st;
  crypto_generichash_blake2b_init_salt_personal(&st, key.data(), key.size(), 16, nullptr,
                                                reinterpret_cast<const uint8_t*>(personal));
  for (auto part : parts) crypto_generichash_blake2b_update(&st, part.data(), part.size());
  crypto_generichash_blake2b_final(&st, out, 16);
  sodium_memzero(&st, sizeof st);
}

std::span<const uint8_t> Bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

void HeaderTag(const FileKeys& fk, std::span<const uint8_t> header48, std::string_view path,
               uint8_t out[16]) {
  uint8_t len[4];
  PutLe(len, path.size(), 4);
  Mac128(fk.header, kPersonalHead, {header48, std::span<const uint8_t>(len, 4), Bytes(path)}, out);
}

void RecordAad(const FileId& file_id, uint64_t index, bool final, uint8_t out[kRecordAadBytes]) {
  std::memcpy(out, kMagic, 4);
  out[4] = kFormatVersion;
  out[5] = kAlgXChaCha20Poly1305;
  std::memcpy(out + 6, file_id.data(), kFileIdBytes);
  PutLe(out + 6 + kFileIdBytes, index, 8);
  PutLe(out + 6 + kFileIdBytes + 8, kChunkBytes, 4);
  out[kRecordAadBytes - 1] = final ? 1 : 0;
}

size_t MaxRegion(NameEncoding encoding) {
  // The longest tag + region whose encoding fits in 255 characters: base64url 191 bytes (255
  // characters), base32 159 bytes (255 characters).
  return (encoding == NameEncoding::kBase64Url ? 191 : 159) - kNameTagBytes;
}

size_t PaddedLength(size_t name_bytes, NameEncoding encoding) {
  size_t rounded = (name_bytes + kNameBucket - 1) / kNameBucket * kNameBucket;
  return std::min(rounded, MaxRegion(encoding));
}

void NameTag(const KeySet& keys, std::string_view parent, std::span<const uint8_t> padded,
             uint8_t out[16]) {
  uint8_t len[4];
  PutLe(len, parent.size(), 4);
  Mac128(keys.name_mac, kPersonalName, {std::span<const uint8_t>(len, 4), Bytes(parent), padded},
         out);
}

constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
constexpr char kB32[] = "abcdefghijklmnopqrstuvwxyz234567";

// Generic RFC 4648 encoding with `bits` bits per character, without padding.
std::string EncodeBits(std::span<const uint8_t> bytes, const char* alphabet, int bits) {
  std::string out;
  out.reserve((bytes.size() * 8 + bits - 1) / bits);
  uint32_t acc = 0;
  int have = 0;
  for (uint8_t b : bytes) {
    acc = (acc << 8) | b;
    have += 8;
    while (have >= bits) {
      have -= bits;
      out.push_back(alphabet[(acc >> have) & ((1u << bits) - 1)]);
    }
  }
  if (have > 0) out.push_back(alphabet[(acc << (bits - have)) & ((1u << bits) - 1)]);
  return out;
}

std::optional<std::vector<uint8_t>> DecodeBits(std::string_view text, const char* alphabet,
                                               int bits) {
  int8_t value[256];
  std::memset(value, -1, sizeof value);
  for (int i = 0; alphabet[i]; ++i) value[static_cast<uint8_t>(alphabet[i])] = int8_t(i);
  // A length that no byte count encodes to is not canonical.
  size_t total_bits = text.size() * bits;
  size_t byte_count = total_bits / 8;
  if ((byte_count * 8 + bits - 1) / bits != text.size()) return std::nullopt;
  std::vector<uint8_t> out;
  out.reserve(byte_count);
  uint32_t acc = 0;
  int have = 0;
  for (char c : text) {
    int8_t v = value[static_cast<uint8_t>(c)];
    if (v < 0) return std::nullopt;
    acc = (acc << bits) | uint32_t(v);
    have += bits;
    if (have >= 8) {
      have -= 8;
      out.push_back(static_cast<uint8_t>(acc >> have));
    }
  }
  if (have > 0 && (acc & ((1u << have) - 1)) != 0) return std::nullopt;  // stray bits
  return out;
}

}  // namespace

bool SodiumReady() {
  static const bool ready = sodium_init() >= 0;
  return ready;
}

KeySet::~KeySet() {
  sodium_memzero(content.data(), content.size());
  sodium_memzero(name_mac.data(), name_mac.size());
  sodium_memzero(name_enc.data(), name_enc.size());
  sodium_memzero(link.data(), link.size());
}

FileKeys::~FileKeys() {
  sodium_memzero(record.data(), record.size());
  sodium_memzero(header.data(), header.size());
}

void DeriveKeySet(const Key& master, KeySet& out) {
  crypto_kdf_derive_from_key(out.content.data(), kKeyBytes, kSubkeyContent, kKdfContext,
                             master.data());
  crypto_kdf_derive_from_key(out.name_mac.data(), kKeyBytes, kSubkeyNameMac, kKdfContext,
                             master.data());
  crypto_kdf_derive_from_key(out.name_enc.data(), kKeyBytes, kSubkeyNameEnc, kKdfContext,
                             master.data());
  crypto_kdf_derive_from_key(out.link.data(), kKeyBytes, kSubkeyLink, kKdfContext, master.data());
}

void DeriveFileKeys(const KeySet& keys, const FileId& file_id, FileKeys& out) {
  uint8_t both[64];
  crypto_generichash_blake2b_salt_personal(both, sizeof both, file_id.data(), file_id.size(),
                                           keys.content.data(), keys.content.size(), nullptr,
                                           reinterpret_cast<const uint8_t*>(kPersonalFile));
  std::memcpy(out.record.data(), both, kKeyBytes);
  std::memcpy(out.header.data(), both + kKeyBytes, kKeyBytes);
  sodium_memzero(both, sizeof both);
}

std::array<uint8_t, kHeaderBytes> EncodeHeader(const FileKeys& fk, const FileId& file_id,
                                               std::string_view path) {
  std::array<uint8_t, kHeaderBytes> h{};
  std::memcpy(h.data(), kMagic, 4);
  h[4] = kFormatVersion;
  h[5] = kAlgXChaCha20Poly1305;
  PutLe(h.data() + 6, kHeaderBytes, 2);
  PutLe(h.data() + 8, kChunkBytes, 4);
  // bytes 12..24 are reserved and zero
  std::memcpy(h.data() + 24, file_id.data(), kFileIdBytes);
  HeaderTag(fk, std::span<const uint8_t>(h.data(), kHeaderTagged), path, h.data() + kHeaderTagged);
  return h;
}

Status DecodeHeader(const KeySet& keys, std::span<const uint8_t> h, std::string_view path,
                    FileId& file_id, FileKeys& fk) {
  if (h.size() < kHeaderBytes) return Err(EIO, "truncated header");
  if (std::memcmp(h.data(), kMagic, 4) != 0) return Err(EIO, "not an hfvfs crypt file (magic)");
  if (h[4] != kFormatVersion) {
    return Err(EIO, "unsupported format version " + std::to_string(h[4]));
  }
  if (h[5] != kAlgXChaCha20Poly1305) {
    return Err(EIO, "unsupported algorithm " + std::to_string(h[5]));
  }
  if (GetLe(h.data() + 6, 2) != kHeaderBytes) return Err(EIO, "unsupported header length");
  if (GetLe(h.data() + 8, 4) != kChunkBytes) {
    return Err(EIO, "unsupported chunk size " + std::to_string(GetLe(h.data() + 8, 4)));
  }
  for (size_t i = 12; i < 24; ++i) {
    if (h[i] != 0) return Err(EIO, "reserved header bytes are not zero");
  }
  std::memcpy(file_id.data(), h.data() + 24, kFileIdBytes);
  DeriveFileKeys(keys, file_id, fk);
  uint8_t tag[kTagBytes];
  HeaderTag(fk, h.subspan(0, kHeaderTagged), path, tag);
  if (sodium_memcmp(tag, h.data() + kHeaderTagged, kTagBytes) != 0) {
    return Err(EIO,
               "header authentication failed (another key, or contents moved from another "
               "file)");
  }
  return Ok();
}

uint64_t CiphertextSize(uint64_t plaintext) {
  return kHeaderBytes + plaintext + RecordCount(plaintext) * kRecordOverhead;
}

std::optional<uint64_t> PlaintextSize(uint64_t object) {
  if (object < kHeaderBytes + kRecordOverhead) return std::nullopt;
  uint64_t body = object - kHeaderBytes - kRecordOverhead;  // full records + final plaintext
  uint64_t full = body / kRecordBytes;
  uint64_t rest = body % kRecordBytes;
  if (rest >= kChunkBytes) return std::nullopt;
  return full * kChunkBytes + rest;
}

void SealRecord(const FileKeys& fk, const FileId& file_id, uint64_t index, bool final,
                std::span<const uint8_t> plain, std::span<uint8_t> out, const Nonce* fixed_nonce) {
  uint8_t aad[kRecordAadBytes];
  RecordAad(file_id, index, final, aad);
  uint8_t* nonce = out.data();
  if (fixed_nonce) {
    std::memcpy(nonce, fixed_nonce->data(), kNonceBytes);
  } else {
    randombytes_buf(nonce, kNonceBytes);
  }
  AeadSealDetached(fk.record.data(), nonce, aad, sizeof aad, plain.data(), plain.size(),
                   out.data() + kNonceBytes, out.data() + kNonceBytes + plain.size());
}

namespace {

Error RecordFailed(uint64_t index) {
  return Err(EIO, "record " + std::to_string(index) +
                      " failed authentication (tampered, moved, or the file was truncated)");
}

}  // namespace

Status OpenRecord(const FileKeys& fk, const FileId& file_id, uint64_t index, bool final,
                  std::span<const uint8_t> record, std::span<uint8_t> plain) {
  if (record.size() < kRecordOverhead || plain.size() != record.size() - kRecordOverhead) {
    return Err(EIO, "record " + std::to_string(index) + " has a wrong length");
  }
  return OpenRecordPart(fk, file_id, index, final, record, 0, plain);
}

Status OpenRecordPart(const FileKeys& fk, const FileId& file_id, uint64_t index, bool final,
                      std::span<const uint8_t> record, size_t offset, std::span<uint8_t> plain) {
  if (record.size() < kRecordOverhead || offset + plain.size() > record.size() - kRecordOverhead) {
    return Err(EIO, "record " + std::to_string(index) + " has a wrong length");
  }
  const size_t ct_len = record.size() - kRecordOverhead;
  const uint8_t* nonce = record.data();
  const uint8_t* ct = nonce + kNonceBytes;
  uint8_t aad[kRecordAadBytes];
  RecordAad(file_id, index, final, aad);
  if (!AeadOpenDetached(fk.record.data(), nonce, aad, sizeof aad, ct, ct_len, ct + ct_len, offset,
                        plain.data(), plain.size())) {
    return RecordFailed(index);
  }
  return Ok();
}

size_t MaxNameBytes(NameEncoding encoding) { return MaxRegion(encoding); }

Result<std::string> EncryptName(const KeySet& keys, NameEncoding encoding, std::string_view parent,
                                std::string_view name) {
  if (name.empty() || name.find('\0') != std::string_view::npos ||
      name.find('/') != std::string_view::npos) {
    return Err(EINVAL, "invalid file name");
  }
  if (name.size() > MaxNameBytes(encoding)) {
    return Err(ENAMETOOLONG, "name of " + std::to_string(name.size()) +
                                 " bytes; encrypted names hold at most " +
                                 std::to_string(MaxNameBytes(encoding)) + " bytes");
  }
  size_t padded_len = PaddedLength(name.size(), encoding);
  std::vector<uint8_t> out(kNameTagBytes + padded_len, 0);
  uint8_t* tag = out.data();
  uint8_t* region = out.data() + kNameTagBytes;
  std::memcpy(region, name.data(), name.size());
  NameTag(keys, parent, std::span<const uint8_t>(region, padded_len), tag);
  uint8_t nonce[crypto_stream_xchacha20_NONCEBYTES] = {};
  std::memcpy(nonce, tag, kNameTagBytes);
  crypto_stream_xchacha20_xor(region, region, padded_len, nonce, keys.name_enc.data());
  return encoding == NameEncoding::kBase64Url ? EncodeBase64Url(out) : EncodeBase32(out);
}

std::optional<std::string> DecryptName(const KeySet& keys, NameEncoding encoding,
                                       std::string_view parent, std::string_view encrypted) {
  auto decoded =
      encoding == NameEncoding::kBase64Url ? DecodeBase64Url(encrypted) : DecodeBase32(encrypted);
  if (!decoded || decoded->size() <= kNameTagBytes) return std::nullopt;
  std::vector<uint8_t>& bytes = *decoded;
  size_t padded_len = bytes.size() - kNameTagBytes;
  if (padded_len > MaxRegion(encoding)) return std::nullopt;
  const uint8_t* tag = bytes.data();
  uint8_t* region = bytes.data() + kNameTagBytes;
  uint8_t nonce[crypto_stream_xchacha20_NONCEBYTES] = {};
  std::memcpy(nonce, tag, kNameTagBytes);
  crypto_stream_xchacha20_xor(region, region, padded_len, nonce, keys.name_enc.data());
  uint8_t expect[kNameTagBytes];
  NameTag(keys, parent, std::span<const uint8_t>(region, padded_len), expect);
  if (sodium_memcmp(expect, tag, kNameTagBytes) != 0) return std::nullopt;
  size_t len = padded_len;
  while (len > 0 && region[len - 1] == 0) --len;
  std::string name(reinterpret_cast<const char*>(region), len);
  if (len == 0 || PaddedLength(len, encoding) != padded_len ||
      name.find('\0') != std::string::npos || name.find('/') != std::string::npos || name == "." ||
      name == "..") {
    return std::nullopt;
  }
  return name;
}

namespace {

// "HFVL" || version || u32(len(path)) || path
std::vector<uint8_t> LinkAad(std::string_view path) {
  std::vector<uint8_t> aad(4 + 1 + 4 + path.size());
  std::memcpy(aad.data(), kLinkMagic, 4);
  aad[4] = kFormatVersion;
  PutLe(aad.data() + 5, path.size(), 4);
  std::memcpy(aad.data() + 9, path.data(), path.size());
  return aad;
}

size_t LinkPaddedLength(size_t target_bytes) {
  size_t rounded = (target_bytes + kLinkBucket - 1) / kLinkBucket * kLinkBucket;
  return std::min(rounded, kMaxLinkTargetBytes);
}

}  // namespace

Result<std::string> EncryptLinkTarget(const KeySet& keys, std::string_view path,
                                      std::string_view target, const Nonce* fixed_nonce) {
  if (target.empty()) return Err(ENOENT, "empty symlink target");
  if (target.find('\0') != std::string_view::npos) return Err(EINVAL, "NUL in symlink target");
  if (target.size() > kMaxLinkTargetBytes) {
    return Err(ENAMETOOLONG, "symlink target of " + std::to_string(target.size()) +
                                 " bytes; encrypted targets hold at most " +
                                 std::to_string(kMaxLinkTargetBytes) + " bytes");
  }
  const size_t padded = LinkPaddedLength(target.size());
  std::vector<uint8_t> plain(padded, 0);
  std::memcpy(plain.data(), target.data(), target.size());
  std::vector<uint8_t> out(kNonceBytes + padded + kTagBytes);
  if (fixed_nonce) {
    std::memcpy(out.data(), fixed_nonce->data(), kNonceBytes);
  } else {
    randombytes_buf(out.data(), kNonceBytes);
  }
  std::vector<uint8_t> aad = LinkAad(path);
  crypto_aead_xchacha20poly1305_ietf_encrypt(out.data() + kNonceBytes, nullptr, plain.data(),
                                             plain.size(), aad.data(), aad.size(), nullptr,
                                             out.data(), keys.link.data());
  sodium_memzero(plain.data(), plain.size());
  return EncodeBase64Url(out);
}

Result<std::string> DecryptLinkTarget(const KeySet& keys, std::string_view path,
                                      std::string_view stored) {
  auto bytes = DecodeBase64Url(stored);
  if (!bytes || bytes->size() <= kNonceBytes + kTagBytes ||
      bytes->size() > kNonceBytes + kMaxLinkTargetBytes + kTagBytes) {
    return Err(EIO, "symlink target is not an encrypted target");
  }
  const size_t padded = bytes->size() - kNonceBytes - kTagBytes;
  std::string plain(padded, '\0');
  std::vector<uint8_t> aad = LinkAad(path);
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(
          reinterpret_cast<uint8_t*>(plain.data()), nullptr, nullptr, bytes->data() + kNonceBytes,
          bytes->size() - kNonceBytes, aad.data(), aad.size(), bytes->data(),
          keys.link.data()) != 0) {
    return Err(EIO,
               "symlink target failed authentication (another key, tampered, or the link was "
               "moved from another path)");
  }
  size_t len = padded;
  while (len > 0 && plain[len - 1] == '\0') --len;
  if (len == 0 || LinkPaddedLength(len) != padded) {
    sodium_memzero(plain.data(), plain.size());
    return Err(EIO, "symlink target has a wrong padding");
  }
  plain.resize(len);
  return plain;
}

std::string EncodeBase64Url(std::span<const uint8_t> bytes) { return EncodeBits(bytes, kB64, 6); }
std::optional<std::vector<uint8_t>> DecodeBase64Url(std::string_view text) {
  return DecodeBits(text, kB64, 6);
}
std::string EncodeBase32(std::span<const uint8_t> bytes) { return EncodeBits(bytes, kB32, 5); }
std::optional<std::vector<uint8_t>> DecodeBase32(std::string_view text) {
  return DecodeBits(text, kB32, 5);
}

}  // namespace hfvfs::crypt
