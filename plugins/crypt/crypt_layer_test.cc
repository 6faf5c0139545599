#include "crypt_layer.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>

#include "testing/dir_layer.h"

namespace hfvfs::crypt {
namespace {

namespace fs = std::filesystem;

Key KeyOf(uint8_t seed) {
  Key k{};
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(seed + i);
  return k;
}

std::string Pattern(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>('a' + rng() % 26);
  return s;
}

std::string ReadRaw(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
void WriteRaw(const fs::path& p, const std::string& data) {
  std::ofstream(p, std::ios::binary | std::ios::trunc) << data;
}

class CryptLayerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(SodiumReady());
    root_ = fs::temp_directory_path() /
            ("crypt_layer_test_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
    layer_ = Make(KeyOf(1));
  }
  void TearDown() override { fs::remove_all(root_); }

  std::shared_ptr<CryptLayer> Make(Key key, CryptOptions opts = {},
                                   testing::DirLayerOptions dir_opts = {}) {
    return std::make_shared<CryptLayer>(testing::MakeDirLayer(root_, dir_opts), key, opts);
  }

  static void Put(Layer& l, std::string_view path, const std::string& data, size_t piece = 0) {
    auto f = l.create(path, 0644, O_WRONLY | O_TRUNC);
    ASSERT_TRUE(f) << f.error().message();
    if (piece == 0) piece = std::max<size_t>(1, data.size());
    for (size_t off = 0; off < data.size(); off += piece) {
      size_t n = std::min(piece, data.size() - off);
      auto w = (*f)->write(off, {reinterpret_cast<const std::byte*>(data.data() + off), n});
      ASSERT_TRUE(w) << w.error().message();
      ASSERT_EQ(*w, n);
    }
    ASSERT_TRUE((*f)->flush());
    ASSERT_TRUE((*f)->close());
  }

  static Result<std::string> Get(Layer& l, std::string_view path, uint64_t offset = 0,
                                 size_t len = SIZE_MAX) {
    HFVFS_ASSIGN_OR_RETURN(auto f, l.open(path, O_RDONLY));
    HFVFS_ASSIGN_OR_RETURN(Attr a, f->stat());
    if (len == SIZE_MAX) len = a.size > offset ? a.size - offset : 0;
    std::string out(len, '\0');
    Result<size_t> n = f->read(offset, {reinterpret_cast<std::byte*>(out.data()), out.size()});
    (void)f->close();
    if (!n) return n.error();
    out.resize(*n);
    return out;
  }

  // The one lower file below .enc whose path has `depth` components under .enc.
  std::vector<fs::path> RawFiles() {
    std::vector<fs::path> out;
    for (auto& e : fs::recursive_directory_iterator(root_ / ".enc")) {
      if (e.is_regular_file()) out.push_back(e.path());
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  fs::path RawOf(std::string_view path) { return root_ / *layer_->EncryptedPath(path); }

  fs::path root_;
  std::shared_ptr<CryptLayer> layer_;
};

TEST_F(CryptLayerTest, RoundTripsFilesAndShowsPlaintextSizesAndNames) {
  ASSERT_TRUE(layer_->mkdir("secret-dir", 0755));
  std::string big = Pattern(3 * kChunkBytes + 1234, 1);
  Put(*layer_, "secret-dir/alpha.bin", big, 100000);
  Put(*layer_, "empty.txt", "");
  Put(*layer_, "exact.bin", Pattern(kChunkBytes, 2));
  EXPECT_EQ(*Get(*layer_, "secret-dir/alpha.bin"), big);
  EXPECT_EQ(*Get(*layer_, "empty.txt"), "");
  EXPECT_EQ(*Get(*layer_, "exact.bin"), Pattern(kChunkBytes, 2));
  EXPECT_EQ(layer_->stat("secret-dir/alpha.bin")->size, big.size());
  EXPECT_EQ(layer_->stat("exact.bin")->size, kChunkBytes);
  EXPECT_TRUE(layer_->stat("secret-dir")->is_dir());
  auto root = *layer_->list("");
  std::vector<std::string> names;
  for (auto& e : root) names.push_back(e.name);
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"empty.txt", "exact.bin", "secret-dir"}));
  auto sub = *layer_->list("secret-dir");
  ASSERT_EQ(sub.size(), 1u);
  EXPECT_EQ(sub[0].name, "alpha.bin");
  EXPECT_EQ(sub[0].attr.size, big.size());
  // The store holds only .enc, and the object sizes follow the size map.
  std::vector<std::string> raw_top;
  for (auto& e : fs::directory_iterator(root_)) raw_top.push_back(e.path().filename());
  EXPECT_EQ(raw_top, std::vector<std::string>{".enc"});
  EXPECT_EQ(fs::file_size(RawOf("secret-dir/alpha.bin")), CiphertextSize(big.size()));
  // Nothing in the store reveals a plaintext name or content.
  for (auto& e : fs::recursive_directory_iterator(root_)) {
    std::string p = e.path().string();
    for (std::string word : {"secret", "alpha", "empty", "exact"}) {
      EXPECT_EQ(p.find(word), std::string::npos) << p;
    }
    if (e.is_regular_file()) {
      std::string raw = ReadRaw(e.path());
      EXPECT_EQ(raw.find(big.substr(5000, 32)), std::string::npos);
    }
  }
  EXPECT_EQ(layer_->stat("missing").code(), ENOENT);
  EXPECT_EQ(layer_->open("secret-dir", O_RDONLY).code(), EISDIR);
}

TEST_F(CryptLayerTest, RandomOffsetReadsAcrossRecordBoundaries) {
  std::string data = Pattern(5 * kChunkBytes + 77, 3);
  Put(*layer_, "f", data);
  std::mt19937 rng(7);
  for (int i = 0; i < 300; ++i) {
    uint64_t off = rng() % (data.size() + 100);
    size_t len = rng() % (3 * kChunkBytes);
    auto got = Get(*layer_, "f", off, len);
    ASSERT_TRUE(got) << got.error().message();
    std::string want = off < data.size() ? data.substr(off, len) : "";
    ASSERT_EQ(*got, want) << off << "+" << len;
  }
}

TEST_F(CryptLayerTest, RandomWritesAndTruncationMatchAReferenceFile) {
  auto f = *layer_->create("ref.bin", 0644, O_RDWR);
  std::string ref;
  std::mt19937_64 rng(20261130);
  const uint64_t kMax = 5 * kChunkBytes;
  for (int op = 0; op < 10000; ++op) {
    int kind = rng() % 10;
    if (kind < 6) {  // write somewhere, sometimes past the end (the gap reads as zeros)
      uint64_t off = rng() % kMax;
      size_t len = 1 + rng() % (rng() % 4 == 0 ? 2 * kChunkBytes : 3000);
      std::string data = Pattern(len, uint32_t(op));
      auto w = f->write(off, {reinterpret_cast<const std::byte*>(data.data()), len});
      ASSERT_TRUE(w) << op << ": " << w.error().message();
      if (ref.size() < off + len) ref.resize(off + len, '\0');
      ref.replace(off, len, data);
    } else if (kind < 8) {  // truncate, down or up
      uint64_t size = rng() % kMax;
      ASSERT_TRUE(f->truncate(size)) << op;
      ref.resize(size, '\0');
    } else {  // read a random range
      uint64_t off = rng() % (kMax + 10);
      size_t len = rng() % (2 * kChunkBytes);
      std::string got(len, '\0');
      auto n = f->read(off, {reinterpret_cast<std::byte*>(got.data()), len});
      ASSERT_TRUE(n) << op;
      got.resize(*n);
      ASSERT_EQ(got, off < ref.size() ? ref.substr(off, len) : "") << op;
    }
    ASSERT_EQ(f->stat()->size, ref.size()) << op;
  }
  ASSERT_TRUE(f->close());
  EXPECT_EQ(*Get(*layer_, "ref.bin"), ref);
  EXPECT_EQ(layer_->stat("ref.bin")->size, ref.size());
  EXPECT_EQ(fs::file_size(RawOf("ref.bin")), CiphertextSize(ref.size()));
  // setattr truncates too.
  ASSERT_TRUE(layer_->setattr("ref.bin", SetAttr{.set_size = true, .size = 70000}));
  ref.resize(70000, '\0');
  EXPECT_EQ(*Get(*layer_, "ref.bin"), ref);
}

TEST_F(CryptLayerTest, FlippedByteFailsOnlyItsRecord) {
  std::string data = Pattern(4 * kChunkBytes, 4);
  Put(*layer_, "f", data);
  fs::path raw = RawOf("f");
  std::string bytes = ReadRaw(raw);
  bytes[RecordOffset(2) + 100] ^= 0x01;
  WriteRaw(raw, bytes);
  EXPECT_EQ(Get(*layer_, "f", 2 * kChunkBytes + 5, 10).code(), EIO);
  EXPECT_EQ(Get(*layer_, "f").code(), EIO);
  EXPECT_EQ(*Get(*layer_, "f", 0, 2 * kChunkBytes), data.substr(0, 2 * kChunkBytes));
  EXPECT_EQ(*Get(*layer_, "f", 3 * kChunkBytes, 500), data.substr(3 * kChunkBytes, 500));
  // The header and each field of a record.
  for (uint64_t at : {uint64_t{3}, uint64_t{30}, RecordOffset(1) + 2, RecordOffset(1) + 30,
                      RecordOffset(2) - 3}) {
    std::string t = ReadRaw(raw);
    t[RecordOffset(2) + 100] ^= 0x01;  // undo the first flip
    t[at] ^= 0x40;
    WriteRaw(raw, t);
    EXPECT_EQ(Get(*layer_, "f").code(), EIO) << at;
    t[at] ^= 0x40;
    WriteRaw(raw, t);
    t[RecordOffset(2) + 100] ^= 0x01;
  }
  EXPECT_EQ(*Get(*layer_, "f"), data);
  EXPECT_GT(layer_->stat("f")->size, 0u);
}

TEST_F(CryptLayerTest, TruncatedOrExtendedObjectsNeverReadAsShorterFiles) {
  std::string data = Pattern(3 * kChunkBytes + 500, 5);
  Put(*layer_, "f", data);
  fs::path raw = RawOf("f");
  const std::string original = ReadRaw(raw);
  std::vector<uint64_t> cuts = {0,
                                10,
                                63,
                                64,
                                80,
                                103,
                                104,
                                RecordOffset(1),
                                RecordOffset(1) + 40,
                                RecordOffset(2),
                                RecordOffset(3),
                                RecordOffset(3) + 40,
                                RecordOffset(3) + 41,
                                original.size() - 1};
  for (uint64_t cut : cuts) {
    WriteRaw(raw, original.substr(0, cut));
    auto layer = Make(KeyOf(1));  // no state from earlier opens
    auto got = Get(*layer, "f");
    EXPECT_FALSE(got) << "truncated to " << cut << " read " << got->size() << " bytes";
    if (!got) {
      EXPECT_EQ(got.code(), EIO) << cut;
    }
  }
  // Extension: garbage, or a copy of the last record appended.
  for (std::string tail :
       {std::string(40, 'x'), std::string(kRecordBytes, 'y'), original.substr(RecordOffset(3))}) {
    WriteRaw(raw, original + tail);
    auto layer = Make(KeyOf(1));
    EXPECT_EQ(Get(*layer, "f").code(), EIO) << tail.size();
  }
  WriteRaw(raw, original);
  EXPECT_EQ(*Get(*Make(KeyOf(1)), "f"), data);
}

TEST_F(CryptLayerTest, SwappedRecordsAndSplicedRecordsAreDetected) {
  std::string data = Pattern(4 * kChunkBytes, 6);
  Put(*layer_, "f", data);
  Put(*layer_, "g", Pattern(4 * kChunkBytes, 7));
  fs::path raw = RawOf("f");
  const std::string original = ReadRaw(raw);
  std::string swapped = original;
  std::copy_n(original.begin() + RecordOffset(1), kRecordBytes, swapped.begin() + RecordOffset(2));
  std::copy_n(original.begin() + RecordOffset(2), kRecordBytes, swapped.begin() + RecordOffset(1));
  WriteRaw(raw, swapped);
  EXPECT_EQ(Get(*layer_, "f", kChunkBytes, 10).code(), EIO);
  EXPECT_EQ(Get(*layer_, "f", 2 * kChunkBytes, 10).code(), EIO);
  EXPECT_EQ(*Get(*layer_, "f", 0, 10), data.substr(0, 10));
  // A record of another file at the same index.
  std::string spliced = original;
  std::string other = ReadRaw(RawOf("g"));
  std::copy_n(other.begin() + RecordOffset(1), kRecordBytes, spliced.begin() + RecordOffset(1));
  WriteRaw(raw, spliced);
  EXPECT_EQ(Get(*Make(KeyOf(1)), "f", kChunkBytes, 10).code(), EIO);
}

TEST_F(CryptLayerTest, SwappedContentsAndMovedNamesAreDetected) {
  ASSERT_TRUE(layer_->mkdir("d1", 0755));
  ASSERT_TRUE(layer_->mkdir("d2", 0755));
  Put(*layer_, "d1/a.txt", "contents of a");
  Put(*layer_, "d1/b.txt", "contents of b");
  fs::path a = RawOf("d1/a.txt"), b = RawOf("d1/b.txt");
  std::string ra = ReadRaw(a), rb = ReadRaw(b);
  WriteRaw(a, rb);
  WriteRaw(b, ra);
  auto fresh = Make(KeyOf(1));
  EXPECT_EQ(Get(*fresh, "d1/a.txt").code(), EIO);
  EXPECT_EQ(Get(*fresh, "d1/b.txt").code(), EIO);
  WriteRaw(a, ra);
  WriteRaw(b, rb);
  EXPECT_EQ(*Get(*Make(KeyOf(1)), "d1/a.txt"), "contents of a");
  // An encrypted name moved into another encrypted folder does not decrypt there.
  fs::path d2 = RawOf("d2");
  fs::rename(a, d2 / a.filename());
  fresh = Make(KeyOf(1));
  EXPECT_TRUE(fresh->list("d2")->empty());
  EXPECT_EQ(fresh->stat("d1/a.txt").code(), ENOENT);
  EXPECT_EQ(fresh->list("d1")->size(), 1u);
}

TEST_F(CryptLayerTest, KeysCoexistAndPlaintextBesideEncStaysReadOnly) {
  Put(*layer_, "mine.txt", "key one");
  ASSERT_TRUE(layer_->mkdir("shared-name", 0755));
  auto other = Make(KeyOf(2));
  EXPECT_EQ(other->stat("mine.txt").code(), ENOENT);
  EXPECT_TRUE(other->list("")->empty());
  Put(*other, "theirs.txt", "key two");
  ASSERT_TRUE(other->mkdir("shared-name", 0755));
  Put(*other, "shared-name/x", "two's x");
  WriteRaw(root_ / "README.plain", "plain text");
  fs::create_directories(root_ / "plaindir");
  WriteRaw(root_ / "plaindir" / "p.txt", "plain p");
  for (auto& [l, mine, theirs] : {std::tuple{layer_, "mine.txt", "theirs.txt"},
                                  std::tuple{other, "theirs.txt", "mine.txt"}}) {
    std::vector<std::string> names;
    std::vector<DirEntry> entries = *l->list("");
    for (auto& e : entries) names.push_back(e.name);
    std::sort(names.begin(), names.end());
    std::vector<std::string> want = {"README.plain", mine, "plaindir", "shared-name"};
    std::sort(want.begin(), want.end());
    EXPECT_EQ(names, want);
    EXPECT_EQ(l->stat(theirs).code(), ENOENT);
  }
  EXPECT_EQ(*Get(*layer_, "mine.txt"), "key one");
  EXPECT_EQ(*Get(*other, "theirs.txt"), "key two");
  EXPECT_EQ(*Get(*other, "shared-name/x"), "two's x");
  EXPECT_TRUE(layer_->list("shared-name")->empty());
  // Another key's entry inside one of our folders keeps it from being removed, and says why.
  WriteRaw(RawOf("shared-name") / "Zm9yZWlnbg", "foreign");
  EXPECT_TRUE(layer_->list("shared-name")->empty());
  auto rm = layer_->rmdir("shared-name");
  EXPECT_EQ(rm.code(), ENOTEMPTY);
  EXPECT_NE(rm.error().message().find("another key"), std::string::npos);
  EXPECT_EQ(*Get(*layer_, "README.plain"), "plain text");
  EXPECT_EQ(*Get(*layer_, "plaindir/p.txt"), "plain p");
  EXPECT_EQ(layer_->stat("README.plain")->size, 10u);
  EXPECT_EQ(layer_->open("README.plain", O_WRONLY).code(), EROFS);
  EXPECT_EQ(layer_->remove("README.plain").code(), EROFS);
  EXPECT_EQ(layer_->create("plaindir/new", 0644, O_WRONLY).code(), EROFS);
  EXPECT_EQ(layer_->stat(".enc").code(), ENOENT);
  // read-write lets them be written; hidden hides them.
  auto rw = Make(KeyOf(1), {.plaintext = PlaintextFiles::kReadWrite});
  Put(*rw, "plaindir/new", "plain new");
  EXPECT_EQ(ReadRaw(root_ / "plaindir" / "new"), "plain new");
  auto hidden = Make(KeyOf(1), {.plaintext = PlaintextFiles::kHidden});
  EXPECT_EQ(hidden->list("")->size(), 2u);  // mine.txt, shared-name
  EXPECT_EQ(hidden->stat("README.plain").code(), ENOENT);
}

TEST_F(CryptLayerTest, NamesTooLongAreRefused) {
  std::string ok(175, 'n'), too_long(176, 'n');
  Put(*layer_, ok, "fits");
  EXPECT_EQ(*Get(*layer_, ok), "fits");
  EXPECT_EQ(layer_->create(too_long, 0644, O_WRONLY).code(), ENAMETOOLONG);
  EXPECT_EQ(layer_->mkdir(too_long, 0755).code(), ENAMETOOLONG);
  EXPECT_EQ(layer_->statfs()->name_max, 175u);
  auto b32 = Make(KeyOf(1), {.names = NameEncoding::kBase32});
  EXPECT_EQ(b32->create(std::string(144, 'n'), 0644, O_WRONLY).code(), ENAMETOOLONG);
  Put(*b32, std::string(143, 'n'), "b32");
  EXPECT_EQ(*Get(*b32, std::string(143, 'n')), "b32");
}

TEST_F(CryptLayerTest, RenamesFilesAndFoldersRebindingNamesAndContents) {
  ASSERT_TRUE(layer_->mkdir("a", 0755));
  ASSERT_TRUE(layer_->mkdir("a/sub", 0755));
  Put(*layer_, "a/sub/deep.txt", "deep");
  Put(*layer_, "a/top.txt", Pattern(100000, 8));
  Put(*layer_, "x.txt", "x");
  ASSERT_TRUE(layer_->rename("x.txt", "y.txt", false));
  EXPECT_EQ(layer_->stat("x.txt").code(), ENOENT);
  EXPECT_EQ(*Get(*layer_, "y.txt"), "x");
  Put(*layer_, "z.txt", "z");
  EXPECT_EQ(layer_->rename("z.txt", "y.txt", true).code(), EEXIST);
  ASSERT_TRUE(layer_->rename("z.txt", "y.txt", false));  // replaces
  EXPECT_EQ(*Get(*layer_, "y.txt"), "z");
  ASSERT_TRUE(layer_->rename("a", "b", false));
  EXPECT_EQ(layer_->stat("a").code(), ENOENT);
  EXPECT_EQ(*Get(*layer_, "b/sub/deep.txt"), "deep");
  EXPECT_EQ(*Get(*layer_, "b/top.txt"), Pattern(100000, 8));
  ASSERT_TRUE(layer_->rename("b/top.txt", "b/sub/moved.txt", false));
  EXPECT_EQ(*Get(*Make(KeyOf(1)), "b/sub/moved.txt"), Pattern(100000, 8));
  EXPECT_EQ(layer_->rename("b", "b/sub/inside", false).code(), EINVAL);
  // An open handle keeps working across a rename.
  auto f = *layer_->open("y.txt", O_RDWR);
  ASSERT_TRUE(layer_->rename("y.txt", "w.txt", false));
  ASSERT_TRUE(f->write(1, {reinterpret_cast<const std::byte*>("Z"), 1}));
  ASSERT_TRUE(f->close());
  EXPECT_EQ(*Get(*Make(KeyOf(1)), "w.txt"), "zZ");
}

TEST_F(CryptLayerTest, AppendOnlyLowerWritesSequentiallyAndRefusesTheRest) {
  auto layer = Make(KeyOf(1), {}, {.random_write = false, .symlinks = true, .on_read = {}});
  EXPECT_FALSE(layer->capabilities().random_write);
  std::string data = Pattern(2 * kChunkBytes + 999, 9);
  Put(*layer, "seq.bin", data, 4096);
  Put(*layer, "empty", "");
  Put(*layer, "exact", Pattern(kChunkBytes, 10), 1000);
  EXPECT_EQ(*Get(*layer, "seq.bin"), data);
  EXPECT_EQ(*Get(*layer, "empty"), "");
  EXPECT_EQ(*Get(*layer, "exact"), Pattern(kChunkBytes, 10));
  EXPECT_EQ(*Get(*layer_, "seq.bin"), data);  // the same format as with random writes
  auto f = *layer->open("seq.bin", O_RDWR);
  EXPECT_EQ(f->write(0, {reinterpret_cast<const std::byte*>("x"), 1}).code(), EOPNOTSUPP);
  EXPECT_EQ(f->truncate(3).code(), EOPNOTSUPP);
  ASSERT_TRUE(f->close());
  // A new file: writes must follow each other, and a write before the end is refused.
  auto g = *layer->create("g", 0644, O_WRONLY);
  ASSERT_TRUE(g->write(0, {reinterpret_cast<const std::byte*>("abc"), 3}));
  EXPECT_EQ(g->write(1, {reinterpret_cast<const std::byte*>("x"), 1}).code(), EOPNOTSUPP);
  ASSERT_TRUE(g->flush());
  ASSERT_TRUE(g->close());
  EXPECT_EQ(*Get(*layer, "g"), "abc");
  // Rename copies the records under a new header.
  ASSERT_TRUE(layer->rename("seq.bin", "moved.bin", false));
  EXPECT_EQ(*Get(*layer, "moved.bin"), data);
  EXPECT_EQ(layer->stat("seq.bin").code(), ENOENT);
}

TEST_F(CryptLayerTest, ConcurrentReadersAndAWriterStayConsistent) {
  std::string data = Pattern(8 * kChunkBytes, 11);
  Put(*layer_, "c", data);
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&, t] {
      auto f = *layer_->open("c", O_RDONLY);
      std::mt19937 rng(t);
      while (!stop) {
        uint64_t off = rng() % data.size();
        std::string buf(1 + rng() % (3 * kChunkBytes), '\0');
        auto n = f->read(off, {reinterpret_cast<std::byte*>(buf.data()), buf.size()});
        if (!n) ++bad;
      }
      (void)f->close();
    });
  }
  auto w = *layer_->open("c", O_RDWR);
  std::mt19937 rng(99);
  for (int i = 0; i < 200; ++i) {
    uint64_t off = rng() % data.size();
    std::string piece = Pattern(1 + rng() % 5000, i);
    piece.resize(std::min<size_t>(piece.size(), data.size() - off));
    ASSERT_TRUE(w->write(off, {reinterpret_cast<const std::byte*>(piece.data()), piece.size()}));
    data.replace(off, piece.size(), piece);
  }
  stop = true;
  for (auto& t : readers) t.join();
  ASSERT_TRUE(w->close());
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(*Get(*layer_, "c"), data);
}

TEST_F(CryptLayerTest, CapabilitiesAreMaskedFromTheLower) {
  Capabilities c = layer_->capabilities();
  EXPECT_TRUE(c.writable);
  EXPECT_TRUE(c.random_write);
  EXPECT_TRUE(c.symlinks);
  EXPECT_TRUE(c.rename);
  Capabilities a =
      Make(KeyOf(1), {}, {.random_write = false, .symlinks = true, .on_read = {}})->capabilities();
  EXPECT_FALSE(a.random_write);
  EXPECT_FALSE(a.atomic_rename);
  auto no_links = Make(KeyOf(1), {}, {.random_write = true, .symlinks = false, .on_read = {}});
  EXPECT_FALSE(no_links->capabilities().symlinks);
  auto refused = no_links->symlink("t", "l");
  EXPECT_EQ(refused.code(), EOPNOTSUPP);
  EXPECT_NE(refused.error().message().find("no symlinks"), std::string::npos);
}

TEST_F(CryptLayerTest, SymlinksStoreSealedTargetsBoundToTheirPath) {
  ASSERT_TRUE(layer_->mkdir("dir", 0755));
  Put(*layer_, "dir/data.bin", "payload");
  const std::string target = "../dir/secret-target-name.bin";
  ASSERT_TRUE(layer_->symlink(target, "dir/link"));
  ASSERT_TRUE(layer_->symlink("dir/data.bin", "top-link"));
  Result<Attr> a = layer_->stat("dir/link");
  ASSERT_TRUE(a) << a.error().message();
  EXPECT_TRUE(a->is_symlink());
  EXPECT_EQ(a->size, target.size());
  EXPECT_EQ(*layer_->readlink("dir/link"), target);
  EXPECT_EQ(*layer_->readlink("top-link"), "dir/data.bin");
  std::vector<DirEntry> listed = *layer_->list("dir");
  auto it = std::find_if(listed.begin(), listed.end(), [](auto& e) { return e.name == "link"; });
  ASSERT_NE(it, listed.end());
  EXPECT_TRUE(it->attr.is_symlink());
  EXPECT_EQ(it->attr.size, target.size());
  EXPECT_EQ(layer_->open("dir/link", O_RDONLY).code(), ELOOP);
  EXPECT_EQ(layer_->readlink("dir/data.bin").code(), EINVAL);
  // The store holds a symlink whose target reveals neither the target nor its exact length.
  fs::path raw = RawOf("dir/link");
  ASSERT_TRUE(fs::is_symlink(raw));
  std::string stored = fs::read_symlink(raw).string();
  EXPECT_EQ(stored.find("secret"), std::string::npos);
  EXPECT_EQ(stored.size(), (24 + 32 + 16) * 4 / 3);  // a 29-byte target fills a 32-byte bucket
  // Every key sees only its own links; a fresh instance reads them back.
  EXPECT_EQ(*Make(KeyOf(1))->readlink("dir/link"), target);
  EXPECT_EQ(Make(KeyOf(2))->readlink("dir/link").code(), ENOENT);
  // Tampering: a flipped character, another link's target, a link moved to another folder.
  std::string flipped = stored;
  flipped[30] = flipped[30] == 'A' ? 'B' : 'A';
  fs::remove(raw);
  fs::create_symlink(flipped, raw);
  EXPECT_EQ(Make(KeyOf(1))->readlink("dir/link").code(), EIO);
  EXPECT_EQ(Make(KeyOf(1))->stat("dir/link")->size, 0u);
  fs::remove(raw);
  fs::create_symlink(fs::read_symlink(RawOf("top-link")), raw);  // valid, for another path
  EXPECT_EQ(Make(KeyOf(1))->readlink("dir/link").code(), EIO);
  fs::remove(raw);
  fs::create_symlink(stored, raw);
  EXPECT_EQ(*Make(KeyOf(1))->readlink("dir/link"), target);
  // Renames seal the target again for the new path, also below a renamed folder.
  ASSERT_TRUE(layer_->rename("dir/link", "dir/renamed", false));
  EXPECT_EQ(layer_->stat("dir/link").code(), ENOENT);
  EXPECT_EQ(*layer_->readlink("dir/renamed"), target);
  ASSERT_TRUE(layer_->symlink("x", "dir/other"));
  EXPECT_EQ(layer_->rename("dir/renamed", "dir/other", true).code(), EEXIST);
  ASSERT_TRUE(layer_->rename("dir/renamed", "dir/other", false));  // replaces
  EXPECT_EQ(*layer_->readlink("dir/other"), target);
  ASSERT_TRUE(layer_->rename("dir", "moved", false));
  auto fresh = Make(KeyOf(1));
  EXPECT_EQ(*fresh->readlink("moved/other"), target);
  EXPECT_EQ(fresh->list("moved")->size(), 2u);  // data.bin, other: no leftover temp names
  EXPECT_EQ(*Get(*fresh, "moved/data.bin"), "payload");
  EXPECT_EQ(std::distance(fs::directory_iterator(RawOf("moved")), fs::directory_iterator{}), 2);
  // Limits: the longest target fits, one byte more is refused; empty and NUL are refused.
  std::string longest(kMaxLinkTargetBytes, 't');
  ASSERT_TRUE(layer_->symlink(longest, "long"));
  EXPECT_EQ(*layer_->readlink("long"), longest);
  EXPECT_EQ(layer_->symlink(longest + "t", "too-long").code(), ENAMETOOLONG);
  EXPECT_EQ(layer_->symlink("", "empty").code(), ENOENT);
  EXPECT_EQ(layer_->symlink(std::string("a\0b", 3), "nul").code(), EINVAL);
  EXPECT_EQ(layer_->symlink("t", "top-link").code(), EEXIST);
  // Removing a link leaves its target.
  ASSERT_TRUE(layer_->remove("top-link"));
  EXPECT_EQ(layer_->stat("top-link").code(), ENOENT);
  EXPECT_EQ(*Get(*layer_, "moved/data.bin"), "payload");
}

// Every FUSE-sized read (up to 1 MiB, aligned or not) is one lower read of exactly the
// ciphertext of the records it covers; a large read is cut into runs of whole records fetched in
// parallel, every byte once. The data is right either way.
TEST_F(CryptLayerTest, ReadsFetchTheirRecordsInAsFewLowerReadsAsThePlanSays) {
  const std::string data = Pattern(9 * 1048576 + 777, 21);
  Put(*layer_, "big", data);
  std::mutex mu;  // guards `reads`
  std::vector<std::pair<uint64_t, size_t>> reads;
  testing::DirLayerOptions dir_opts;
  dir_opts.on_read = [&](uint64_t offset, size_t size) {
    std::lock_guard lock(mu);
    reads.emplace_back(offset, size);
  };
  CryptOptions opts;
  opts.threads = 4;
  auto layer = Make(KeyOf(1), opts, dir_opts);
  auto f = *layer->open("big", O_RDONLY);
  reads.clear();  // the header read at open
  struct Case {
    uint64_t offset;
    size_t len;
  };
  for (Case c : {Case{0, 1048576}, Case{1048576, 1048576}, Case{5000, 1048576}, Case{70000, 4096},
                 Case{0, 8 * 1048576}, Case{123456, 9 * 1048576}}) {
    SCOPED_TRACE("read of " + std::to_string(c.len) + " at " + std::to_string(c.offset));
    reads.clear();
    std::string out(c.len, '\0');
    auto n = f->read(c.offset, {reinterpret_cast<std::byte*>(out.data()), out.size()});
    ASSERT_TRUE(n) << n.error().message();
    const uint64_t end = std::min<uint64_t>(c.offset + c.len, data.size());
    ASSERT_EQ(*n, end - c.offset);
    out.resize(*n);
    EXPECT_TRUE(out == data.substr(c.offset, *n));
    const uint64_t first = c.offset / kChunkBytes, last = (end - 1) / kChunkBytes;
    const ReadPlan plan = PlanRecordReads(last - first + 1, layer->pool().size());
    ASSERT_EQ(reads.size(), plan.pieces);
    if (c.len <= 1048576) {
      EXPECT_EQ(plan.pieces, 1u);
    }
    // The lower reads tile the records' ciphertext exactly.
    std::sort(reads.begin(), reads.end());
    uint64_t at = RecordOffset(first);
    for (auto [off, size] : reads) {
      EXPECT_EQ(off, at);
      at += size;
    }
    EXPECT_EQ(at, RecordOffset(last) + RecordPlaintextBytes(last, data.size()) + kRecordOverhead);
  }
  ASSERT_TRUE(f->close());
}

TEST(CryptReadPlanTest, OneLowerReadUpToTwoMiBThenRunsOfAtLeastOneMiB) {
  EXPECT_EQ(PlanRecordReads(0, 4).pieces, 0u);
  for (size_t records : {1, 2, 16, 17, 31}) {
    ReadPlan p = PlanRecordReads(records, 4);
    EXPECT_EQ(p.pieces, 1u) << records;
    EXPECT_EQ(p.per_piece, records);
  }
  EXPECT_EQ(PlanRecordReads(32, 4).pieces, 2u);
  EXPECT_EQ(PlanRecordReads(32, 4).per_piece, 16u);
  EXPECT_EQ(PlanRecordReads(1000, 4).pieces, 4u);
  EXPECT_EQ(PlanRecordReads(1000, 1).pieces, 1u);
  EXPECT_EQ(PlanRecordReads(1000, 0).pieces, 1u);
  // Runs cover every record, none empty.
  for (size_t records = 1; records < 200; ++records) {
    for (size_t threads = 1; threads <= 8; ++threads) {
      ReadPlan p = PlanRecordReads(records, threads);
      ASSERT_GE(p.pieces, 1u);
      ASSERT_LE(p.pieces, threads);
      ASSERT_GE(p.pieces * p.per_piece, records);
      ASSERT_LT((p.pieces - 1) * p.per_piece, records);
      if (p.pieces > 1) {
        ASSERT_GE(p.per_piece, kRecordsPerLowerRead);
      }
    }
  }
}

TEST(ScratchPoolTest, LendsTheMostRecentlyReturnedBufferFirstAndKeepsABoundedFew) {
  ScratchPool pool(2);
  std::vector<uint8_t>* first;
  std::vector<uint8_t>* second;
  {
    ScratchPool::Lease a = pool.Take();
    ScratchPool::Lease b = pool.Take();
    first = &a.buffer();
    second = &b.buffer();
    EXPECT_NE(first, second) << "buffers lent at once are distinct";
    a.buffer().resize(1 << 20);
  }  // b is returned, then a
  EXPECT_EQ(pool.idle(), 2u);
  {
    ScratchPool::Lease c = pool.Take();
    EXPECT_EQ(&c.buffer(), first) << "the last one returned comes back first";
    EXPECT_EQ(c.buffer().size(), 1u << 20) << "with the memory it had";
    ScratchPool::Lease d = pool.Take();
    EXPECT_EQ(&d.buffer(), second);
    ScratchPool::Lease e = pool.Take();  // none idle: a new one
    EXPECT_NE(&e.buffer(), first);
    EXPECT_NE(&e.buffer(), second);
    EXPECT_EQ(pool.idle(), 0u);
  }
  EXPECT_EQ(pool.idle(), 2u) << "no more than `keep` are kept";
}

TEST_F(CryptLayerTest, CreateOfAnExistingFileOpensItOrFailsWithExcl) {
  Put(*layer_, "e", Pattern(100000, 13));
  auto f = layer_->create("e", 0644, O_RDWR);
  ASSERT_TRUE(f) << f.error().message();
  ASSERT_TRUE((*f)->close());
  EXPECT_EQ(*Get(*layer_, "e"), Pattern(100000, 13));
  EXPECT_EQ(layer_->create("e", 0644, O_RDWR | O_EXCL).code(), EEXIST);
  EXPECT_EQ(fs::file_size(RawOf("e")), CiphertextSize(100000));
}

TEST_F(CryptLayerTest, OTruncStartsANewContainer) {
  Put(*layer_, "t", Pattern(100000, 12));
  std::string first_header = ReadRaw(RawOf("t")).substr(0, kHeaderBytes);
  auto f = *layer_->open("t", O_WRONLY | O_TRUNC);
  ASSERT_TRUE(f->write(0, {reinterpret_cast<const std::byte*>("new"), 3}));
  ASSERT_TRUE(f->close());
  EXPECT_EQ(*Get(*layer_, "t"), "new");
  EXPECT_NE(ReadRaw(RawOf("t")).substr(0, kHeaderBytes), first_header);  // a new file id
}

}  // namespace
}  // namespace hfvfs::crypt

namespace hfvfs::crypt {
namespace {

// Many callers at once, each running every index exactly once; a caller that drained its own
// indices returns without waiting for helpers that never started (no deadlock, no lost work).
TEST(CryptRecordPoolTest, ConcurrentCallersRunEveryIndexOnce) {
  RecordPool pool(3);
  std::atomic<int64_t> bad{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 6; ++c) {
    callers.emplace_back([&, c] {
      for (int round = 0; round < 300; ++round) {
        const size_t count = 1 + (c * 7 + round) % 17;
        std::vector<std::atomic<int>> hits(count);
        pool.ParallelFor(count, [&](size_t i) { hits[i].fetch_add(1); });
        for (auto& h : hits) bad += h.load() != 1;
      }
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(pool.size(), 3u);
}

}  // namespace
}  // namespace hfvfs::crypt
