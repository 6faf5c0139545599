#include "crypt_format.h"

#include "crypt_aead.h"

#include <gtest/gtest.h>
#include <sodium.h>

#include <fstream>
#include <map>
#include <sstream>

namespace hfvfs::crypt {
namespace {

std::string Hex(std::span<const uint8_t> b) {
  std::string out(b.size() * 2 + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), b.data(), b.size());
  out.pop_back();
  return out;
}

template <size_t N>
std::array<uint8_t, N> Counting(uint8_t start) {
  std::array<uint8_t, N> a{};
  for (size_t i = 0; i < N; ++i) a[i] = static_cast<uint8_t>(start + i);
  return a;
}

std::span<const uint8_t> Bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

class FormatTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(SodiumReady());
    master_ = Counting<32>(0);
    DeriveKeySet(master_, keys_);
    file_id_ = Counting<24>(0x40);
    DeriveFileKeys(keys_, file_id_, fk_);
  }
  Key master_;
  KeySet keys_;
  FileId file_id_;
  FileKeys fk_;
};

// The values the test vectors of docs/crypt-format.md are built from; see the document for
// the inputs. The Python decryptor (crypt_check.py) recomputes the same table independently.
std::map<std::string, std::string> ComputeVectors(const KeySet& keys, const FileId& file_id,
                                                  const FileKeys& fk) {
  std::map<std::string, std::string> v;
  v["content_key"] = Hex(keys.content);
  v["name_mac_key"] = Hex(keys.name_mac);
  v["name_enc_key"] = Hex(keys.name_enc);
  v["file_record_key"] = Hex(fk.record);
  v["file_header_key"] = Hex(fk.header);
  v["header"] = Hex(EncodeHeader(fk, file_id, "docs/readme.txt"));
  Nonce nonce = Counting<24>(0x80);
  std::string hello = "hello";
  std::vector<uint8_t> rec(hello.size() + kRecordOverhead);
  SealRecord(fk, file_id, 0, true, Bytes(hello), rec, &nonce);
  v["record_hello_final_0"] = Hex(rec);
  std::vector<uint8_t> chunk(kChunkBytes);
  for (size_t i = 0; i < chunk.size(); ++i) chunk[i] = static_cast<uint8_t>(i);
  std::vector<uint8_t> full(kRecordBytes);
  Nonce nonce2 = Counting<24>(0xa0);
  SealRecord(fk, file_id, 1, false, chunk, full, &nonce2);
  std::array<uint8_t, 32> digest{};
  crypto_hash_sha256(digest.data(), full.data(), full.size());
  v["record_counting_1_sha256"] = Hex(digest);
  v["name_b64_root_hello.txt"] = *EncryptName(keys, NameEncoding::kBase64Url, "", "hello.txt");
  v["name_b64_docs_readme.txt"] =
      *EncryptName(keys, NameEncoding::kBase64Url, "docs", "readme.txt");
  v["name_b32_docs_readme.txt"] = *EncryptName(keys, NameEncoding::kBase32, "docs", "readme.txt");
  std::string forty(40, 'x');
  v["name_b64_a/b_x40"] = *EncryptName(keys, NameEncoding::kBase64Url, "a/b", forty);
  v["link_key"] = Hex(keys.link);
  Nonce nonce3 = Counting<24>(0xc0);
  v["link_docs/latest"] = *EncryptLinkTarget(keys, "docs/latest", "../data/v1.bin", &nonce3);
  return v;
}

std::map<std::string, std::string> DocVectors() {
  std::ifstream in(std::string(HFVFS_SOURCE_DIR) + "/docs/crypt-format.md");
  std::map<std::string, std::string> v;
  std::string line;
  bool inside = false;
  while (std::getline(in, line)) {
    if (line.find("<!-- vectors begin -->") != std::string::npos) inside = true;
    if (line.find("<!-- vectors end -->") != std::string::npos) inside = false;
    size_t eq = line.find(" = ");
    if (!inside || eq == std::string::npos) continue;
    size_t start = line.find_first_not_of(' ');
    v[line.substr(start, eq - start)] = line.substr(eq + 3);
  }
  return v;
}

TEST_F(FormatTest, MatchesTheDocumentedTestVectors) {
  auto doc = DocVectors();
  ASSERT_FALSE(doc.empty()) << "no vectors in docs/crypt-format.md";
  EXPECT_EQ(doc["master_key"], Hex(master_));
  EXPECT_EQ(doc["file_id"], Hex(file_id_));
  auto computed = ComputeVectors(keys_, file_id_, fk_);
  for (const auto& [name, value] : computed) {
    // The message carries the computed line, as the document spells it.
    EXPECT_EQ(doc[name], value) << name << " = " << value;
  }
}

// The OpenSSL engine computes exactly libsodium's XChaCha20-Poly1305-IETF: same ciphertext and
// tag, each opens what the other sealed, and both refuse the same tampering.
TEST_F(FormatTest, AeadEnginesAgreeWithLibsodium) {
  EXPECT_STREQ(AeadEngine(), "openssl");
  std::vector<uint8_t> key(32), nonce(24), aad(43);
  randombytes_buf(key.data(), key.size());
  randombytes_buf(nonce.data(), nonce.size());
  randombytes_buf(aad.data(), aad.size());
  struct Guard {
    ~Guard() { AeadForceLibsodiumForTesting(false); }
  } guard;
  for (size_t len : {0, 1, 15, 16, 17, 63, 64, 65, 127, 1000, 4096, 65535, 65536}) {
    std::vector<uint8_t> plain(len), ct_ssl(len), ct_na(len), tag_ssl(16), tag_na(16);
    randombytes_buf(plain.data(), plain.size());
    AeadForceLibsodiumForTesting(false);
    AeadSealDetached(key.data(), nonce.data(), aad.data(), aad.size(), plain.data(), len,
                     ct_ssl.data(), tag_ssl.data());
    AeadForceLibsodiumForTesting(true);
    EXPECT_STREQ(AeadEngine(), "libsodium");
    AeadSealDetached(key.data(), nonce.data(), aad.data(), aad.size(), plain.data(), len,
                     ct_na.data(), tag_na.data());
    ASSERT_EQ(ct_ssl, ct_na) << len;
    ASSERT_EQ(tag_ssl, tag_na) << len;
    for (bool sodium : {false, true}) {
      AeadForceLibsodiumForTesting(sodium);
      std::vector<uint8_t> out(len);
      ASSERT_TRUE(AeadOpenDetached(key.data(), nonce.data(), aad.data(), aad.size(), ct_ssl.data(),
                                   len, tag_ssl.data(), 0, out.data(), len))
          << len << " sodium=" << sodium;
      EXPECT_EQ(out, plain);
      // Parts at every kind of offset: block-aligned, unaligned, up to the end, verify only.
      for (size_t off : {size_t{0}, size_t{1}, size_t{63}, size_t{64}, size_t{100}, len / 2}) {
        if (off > len) continue;
        for (size_t n : {size_t{0}, size_t{1}, size_t{64}, size_t{4096}, len - off}) {
          if (off + n > len) continue;
          std::vector<uint8_t> part(n);
          ASSERT_TRUE(AeadOpenDetached(key.data(), nonce.data(), aad.data(), aad.size(),
                                       ct_ssl.data(), len, tag_ssl.data(), off, part.data(), n));
          EXPECT_TRUE(std::equal(part.begin(), part.end(), plain.begin() + off))
              << len << " " << off << " " << n << " sodium=" << sodium;
        }
      }
      // Tampering: ciphertext, tag, associated data; the output is zeroed.
      std::vector<uint8_t> bad_ct = ct_ssl, bad_tag = tag_ssl, bad_aad = aad;
      if (len) bad_ct[len / 2] ^= 1;
      bad_tag[3] ^= 0x80;
      bad_aad[42] ^= 1;
      std::vector<uint8_t> sink(len, 0xee);
      if (len) {
        EXPECT_FALSE(AeadOpenDetached(key.data(), nonce.data(), aad.data(), aad.size(),
                                      bad_ct.data(), len, tag_ssl.data(), 0, sink.data(), len));
        EXPECT_EQ(sink, std::vector<uint8_t>(len, 0));
        EXPECT_FALSE(AeadOpenDetached(key.data(), nonce.data(), aad.data(), aad.size(),
                                      bad_ct.data(), len, tag_ssl.data(), 1, sink.data(), 0));
      }
      EXPECT_FALSE(AeadOpenDetached(key.data(), nonce.data(), aad.data(), aad.size(), ct_ssl.data(),
                                    len, bad_tag.data(), 0, sink.data(), len));
      EXPECT_FALSE(AeadOpenDetached(key.data(), nonce.data(), bad_aad.data(), bad_aad.size(),
                                    ct_ssl.data(), len, tag_ssl.data(), 0, sink.data(), len));
    }
  }
}

TEST_F(FormatTest, LinkTargetsRoundTripBoundToTheirPathAndPadded) {
  for (size_t n :
       {size_t{1}, size_t{31}, size_t{32}, size_t{33}, size_t{3000}, kMaxLinkTargetBytes}) {
    std::string target(n, 'q');
    Result<std::string> stored = EncryptLinkTarget(keys_, "a/link", target);
    ASSERT_TRUE(stored) << n;
    EXPECT_LE(stored->size(), 4095u);
    EXPECT_EQ(*DecryptLinkTarget(keys_, "a/link", *stored), target);
    EXPECT_EQ(DecryptLinkTarget(keys_, "b/link", *stored).code(), EIO);  // another path
    // A fresh nonce every time: the same target never seals to the same string.
    EXPECT_NE(*EncryptLinkTarget(keys_, "a/link", target), *stored);
  }
  // 1 and 32 bytes share a length bucket; 33 bytes does not.
  EXPECT_EQ(EncryptLinkTarget(keys_, "l", "x")->size(),
            EncryptLinkTarget(keys_, "l", std::string(32, 'x'))->size());
  EXPECT_NE(EncryptLinkTarget(keys_, "l", "x")->size(),
            EncryptLinkTarget(keys_, "l", std::string(33, 'x'))->size());
  EXPECT_EQ(EncryptLinkTarget(keys_, "l", std::string(kMaxLinkTargetBytes + 1, 'x')).code(),
            ENAMETOOLONG);
  // Another key, garbage, and every flipped character fail with EIO.
  Key other_master = Counting<32>(1);
  KeySet other;
  DeriveKeySet(other_master, other);
  std::string stored = *EncryptLinkTarget(keys_, "l", "target");
  EXPECT_EQ(DecryptLinkTarget(other, "l", stored).code(), EIO);
  EXPECT_EQ(DecryptLinkTarget(keys_, "l", "plain/target").code(), EIO);
  EXPECT_EQ(DecryptLinkTarget(keys_, "l", "").code(), EIO);
  for (size_t i = 0; i < stored.size(); ++i) {
    std::string t = stored;
    t[i] = t[i] == 'A' ? 'B' : 'A';
    EXPECT_EQ(DecryptLinkTarget(keys_, "l", t).code(), EIO) << i;
  }
}

TEST_F(FormatTest, SizeMapRoundTripsAndRejectsImpossibleSizes) {
  for (uint64_t p :
       {0ull, 1ull, 100ull, 65535ull, 65536ull, 65537ull, 131072ull, 200000ull, 10ull << 30}) {
    uint64_t c = CiphertextSize(p);
    ASSERT_EQ(PlaintextSize(c), p) << p;
  }
  EXPECT_EQ(CiphertextSize(0), 104u);
  EXPECT_EQ(CiphertextSize(5), 109u);
  EXPECT_EQ(CiphertextSize(65536), 64u + 65576u + 40u);
  // Every object size is either a container size or impossible; none maps twice.
  std::map<uint64_t, uint64_t> seen;
  for (uint64_t obj = 0; obj < 3 * kRecordBytes + 200; ++obj) {
    auto p = PlaintextSize(obj);
    if (!p) continue;
    EXPECT_EQ(CiphertextSize(*p), obj);
    EXPECT_TRUE(seen.emplace(*p, obj).second);
  }
  EXPECT_FALSE(PlaintextSize(0));
  EXPECT_FALSE(PlaintextSize(64));       // a header alone: the final record was cut off
  EXPECT_FALSE(PlaintextSize(64 + 39));  // shorter than a record
  EXPECT_FALSE(PlaintextSize(64 + kRecordBytes + 10));  // a full record and a torn one
}

TEST_F(FormatTest, RecordRoundTripAndEveryTamperFails) {
  std::string text = "attack at dawn";
  std::vector<uint8_t> rec(text.size() + kRecordOverhead);
  SealRecord(fk_, file_id_, 7, false, Bytes(text), rec);
  std::vector<uint8_t> plain(text.size());
  ASSERT_TRUE(OpenRecord(fk_, file_id_, 7, false, rec, plain));
  EXPECT_EQ(std::string(plain.begin(), plain.end()), text);
  // Another index, finality, file id or key.
  EXPECT_EQ(OpenRecord(fk_, file_id_, 8, false, rec, plain).code(), EIO);
  EXPECT_EQ(OpenRecord(fk_, file_id_, 7, true, rec, plain).code(), EIO);
  FileId other = file_id_;
  other[0] ^= 1;
  EXPECT_EQ(OpenRecord(fk_, other, 7, false, rec, plain).code(), EIO);
  FileKeys other_keys;
  DeriveFileKeys(keys_, other, other_keys);
  EXPECT_EQ(OpenRecord(other_keys, file_id_, 7, false, rec, plain).code(), EIO);
  // Every single bit flip anywhere in the record.
  for (size_t i = 0; i < rec.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      rec[i] ^= uint8_t(1 << bit);
      ASSERT_EQ(OpenRecord(fk_, file_id_, 7, false, rec, plain).code(), EIO) << i << ":" << bit;
      rec[i] ^= uint8_t(1 << bit);
    }
  }
}

TEST_F(FormatTest, PartialOpenMatchesFullOpenAndFailsTheSameWay) {
  std::string text(kChunkBytes - 123, '\0');
  for (size_t i = 0; i < text.size(); ++i) text[i] = static_cast<char>(i * 31 + 7);
  std::vector<uint8_t> rec(text.size() + kRecordOverhead);
  SealRecord(fk_, file_id_, 3, true, Bytes(text), rec);
  for (auto [off, len] : std::vector<std::pair<size_t, size_t>>{{0, 0},
                                                                {0, 1},
                                                                {0, 64},
                                                                {1, 63},
                                                                {63, 2},
                                                                {64, 4096},
                                                                {1000, 5000},
                                                                {4095, 4097},
                                                                {text.size() - 1, 1},
                                                                {text.size() - 4096, 4096},
                                                                {0, text.size()}}) {
    std::vector<uint8_t> part(len);
    ASSERT_TRUE(OpenRecordPart(fk_, file_id_, 3, true, rec, off, part)) << off;
    EXPECT_EQ(std::string(part.begin(), part.end()), text.substr(off, len)) << off << "+" << len;
  }
  std::vector<uint8_t> part(10);
  EXPECT_EQ(OpenRecordPart(fk_, file_id_, 3, false, rec, 0, part).code(), EIO);
  EXPECT_EQ(OpenRecordPart(fk_, file_id_, 4, true, rec, 0, part).code(), EIO);
  EXPECT_EQ(OpenRecordPart(fk_, file_id_, 3, true, rec, text.size() - 5, part).code(), EIO);
  for (size_t i :
       {size_t{0}, size_t{23}, size_t{24}, size_t{5000}, rec.size() - 17, rec.size() - 1}) {
    rec[i] ^= 0x08;
    EXPECT_EQ(OpenRecordPart(fk_, file_id_, 3, true, rec, 100, part).code(), EIO) << i;
    rec[i] ^= 0x08;
  }
  // An empty final record too.
  std::vector<uint8_t> empty(kRecordOverhead);
  SealRecord(fk_, file_id_, 0, true, {}, empty);
  EXPECT_TRUE(OpenRecordPart(fk_, file_id_, 0, true, empty, 0, {}));
}

TEST_F(FormatTest, NoncesAreFreshOnEveryWrite) {
  std::string text = "same plaintext";
  std::vector<uint8_t> a(text.size() + kRecordOverhead), b(a.size());
  SealRecord(fk_, file_id_, 0, true, Bytes(text), a);
  SealRecord(fk_, file_id_, 0, true, Bytes(text), b);
  EXPECT_NE(Hex(std::span(a).subspan(0, kNonceBytes)), Hex(std::span(b).subspan(0, kNonceBytes)));
  EXPECT_NE(Hex(a), Hex(b));
}

TEST_F(FormatTest, HeaderIsBoundToPathKeyAndFields) {
  auto h = EncodeHeader(fk_, file_id_, "a/b.txt");
  FileId id{};
  FileKeys fk;
  ASSERT_TRUE(DecodeHeader(keys_, h, "a/b.txt", id, fk));
  EXPECT_EQ(Hex(id), Hex(file_id_));
  EXPECT_EQ(Hex(fk.record), Hex(fk_.record));
  EXPECT_EQ(DecodeHeader(keys_, h, "a/c.txt", id, fk).code(), EIO);
  EXPECT_EQ(DecodeHeader(keys_, h, "b.txt", id, fk).code(), EIO);
  Key other_master = Counting<32>(1);
  KeySet other;
  DeriveKeySet(other_master, other);
  EXPECT_EQ(DecodeHeader(other, h, "a/b.txt", id, fk).code(), EIO);
  for (size_t i = 0; i < h.size(); ++i) {
    auto t = h;
    t[i] ^= 0x10;
    EXPECT_EQ(DecodeHeader(keys_, t, "a/b.txt", id, fk).code(), EIO) << i;
  }
  EXPECT_EQ(DecodeHeader(keys_, std::span(h).subspan(0, 63), "a/b.txt", id, fk).code(), EIO);
}

TEST_F(FormatTest, NamesRoundTripAreDeterministicAndBoundToParent) {
  for (auto enc : {NameEncoding::kBase64Url, NameEncoding::kBase32}) {
    for (std::string name : std::vector<std::string>{
             "a", "hello.txt", std::string(31, 'n'), std::string(32, 'n'), std::string(33, 'n'),
             std::string("caf\xc3\xa9 \x01\xff"), std::string(MaxNameBytes(enc), 'z')}) {
      auto e = EncryptName(keys_, enc, "dir/sub", name);
      ASSERT_TRUE(e) << name;
      EXPECT_LE(e->size(), 255u);
      EXPECT_EQ(*EncryptName(keys_, enc, "dir/sub", name), *e);  // deterministic
      EXPECT_EQ(DecryptName(keys_, enc, "dir/sub", *e), name);
      EXPECT_EQ(DecryptName(keys_, enc, "dir", *e), std::nullopt);       // moved up
      EXPECT_EQ(DecryptName(keys_, enc, "dir/sub2", *e), std::nullopt);  // moved aside
      EXPECT_EQ(DecryptName(keys_, enc, "", *e), std::nullopt);
      EXPECT_EQ(e->find('/'), std::string::npos);
      if (enc == NameEncoding::kBase32) {
        EXPECT_EQ(e->find_first_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ"), std::string::npos);
      }
    }
    EXPECT_EQ(EncryptName(keys_, enc, "", std::string(MaxNameBytes(enc) + 1, 'z')).code(),
              ENAMETOOLONG);
    EXPECT_EQ(EncryptName(keys_, enc, "", "").code(), EINVAL);
    EXPECT_EQ(EncryptName(keys_, enc, "", std::string("a\0b", 3)).code(), EINVAL);
    EXPECT_EQ(EncryptName(keys_, enc, "", "a/b").code(), EINVAL);
  }
  EXPECT_EQ(MaxNameBytes(NameEncoding::kBase64Url), 175u);
  EXPECT_EQ(MaxNameBytes(NameEncoding::kBase32), 143u);
}

TEST_F(FormatTest, NamesLeakOnlyTheirLengthBucket) {
  auto len = [&](size_t n) {
    return EncryptName(keys_, NameEncoding::kBase64Url, "", std::string(n, 'q'))->size();
  };
  EXPECT_EQ(len(1), len(32));
  EXPECT_LT(len(32), len(33));
  EXPECT_EQ(len(33), len(64));
  EXPECT_EQ(len(161), len(175));
  EXPECT_EQ(len(175), 255u);
}

TEST_F(FormatTest, NamesRejectAnyTamperOtherKeysAndGarbage) {
  auto e = *EncryptName(keys_, NameEncoding::kBase64Url, "p", "secret-name.bin");
  auto bytes = *DecodeBase64Url(e);
  for (size_t i = 0; i < bytes.size(); ++i) {
    auto t = bytes;
    t[i] ^= 0x01;
    EXPECT_EQ(DecryptName(keys_, NameEncoding::kBase64Url, "p", EncodeBase64Url(t)), std::nullopt)
        << i;
  }
  KeySet other;
  DeriveKeySet(Counting<32>(9), other);
  EXPECT_EQ(DecryptName(other, NameEncoding::kBase64Url, "p", e), std::nullopt);
  for (std::string junk : std::vector<std::string>{
           "", "a", "README.md", ".enc", "abc=", std::string(300, 'A'), "not base64!", e + "A"}) {
    EXPECT_EQ(DecryptName(keys_, NameEncoding::kBase64Url, "p", junk), std::nullopt) << junk;
  }
}

TEST(EncodingTest, Base64UrlAndBase32AreCanonicalRfc4648) {
  std::vector<uint8_t> data;
  for (int n = 0; n < 70; ++n) {
    auto b64 = EncodeBase64Url(data);
    auto b32 = EncodeBase32(data);
    EXPECT_EQ(DecodeBase64Url(b64), data);
    EXPECT_EQ(DecodeBase32(b32), data);
    data.push_back(static_cast<uint8_t>(n * 37 + 11));
  }
  std::string foo = "foobar";
  EXPECT_EQ(EncodeBase64Url(Bytes(foo)), "Zm9vYmFy");
  EXPECT_EQ(EncodeBase32(Bytes(foo)), "mzxw6ytboi");
  EXPECT_EQ(EncodeBase64Url(Bytes("\xfb\xff")), "-_8");
  EXPECT_FALSE(DecodeBase64Url("-_9"));      // non-zero trailing bits
  EXPECT_FALSE(DecodeBase64Url("Zm9vY"));    // impossible length
  EXPECT_FALSE(DecodeBase32("MZXW6YTBOI"));  // upper case is not canonical
}

}  // namespace
}  // namespace hfvfs::crypt
