// End-to-end: `hfvfs mount` of local -> crypt, driven by ordinary tools and syscalls.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "crypt_format.h"
#include "crypt_key.h"
#include "support/mount_fixture.h"

namespace hfvfs::testing {
namespace {

namespace fs = std::filesystem;

// The whole file (empty when it cannot be read: callers compare with the expected bytes).
std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void Spill(const std::string& path, const std::string& data) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << data;
}

std::string Pattern(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>('A' + rng() % 26);
  return s;
}

class CryptMountTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = fs::temp_directory_path() /
            ("crypt_e2e_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(base_);
    fs::create_directories(base_ / "store");
    key1_ = (base_ / "one.key").string();
    key2_ = (base_ / "two.key").string();
    ASSERT_TRUE(crypt::GenerateKeyFile(key1_));
    ASSERT_TRUE(crypt::GenerateKeyFile(key2_));
  }
  void TearDown() override { fs::remove_all(base_); }

  std::string Spec(const std::string& key) const {
    return "[[layer]]\ntype = \"local\"\npath = \"" + (base_ / "store").string() +
           "\"\n\n[[layer]]\ntype = \"crypt\"\nkey_file = \"" + key + "\"\n";
  }
  std::string Store(const std::string& rel = "") const { return (base_ / "store" / rel).string(); }

  fs::path base_;
  std::string key1_, key2_;
};

TEST_F(CryptMountTest, StoreHoldsOnlyCiphertextAndKeysCoexist) {
  const std::string big = Pattern(3 * 1024 * 1024 + 4321, 1);
  {
    MountFixture mount(Spec(key1_));
    ASSERT_TRUE(mount.ok()) << mount.error();
    ASSERT_EQ(::mkdir(mount.path("secret-dir").c_str(), 0755), 0);
    Spill(mount.path("secret-dir/alpha.bin"), big);
    Spill(mount.path("greeting.txt"), "confidential greeting\n");
    ProcessResult cp = RunProcess({"cp", mount.path("greeting.txt"), mount.path("copy.txt")});
    ASSERT_EQ(cp.status, 0) << cp.output;
    ProcessResult mv =
        RunProcess({"mv", mount.path("copy.txt"), mount.path("secret-dir/moved.txt")});
    ASSERT_EQ(mv.status, 0) << mv.output;
    EXPECT_EQ(Slurp(mount.path("secret-dir/alpha.bin")), big);
    EXPECT_EQ(Slurp(mount.path("secret-dir/moved.txt")), "confidential greeting\n");
    struct stat st {};
    ASSERT_EQ(::stat(mount.path("secret-dir/alpha.bin").c_str(), &st), 0);
    EXPECT_EQ(uint64_t(st.st_size), big.size());
    ProcessResult ls = RunProcess({"ls", mount.path("secret-dir")});
    EXPECT_EQ(ls.output, "alpha.bin\nmoved.txt\n");
    // A symlink: its target is sealed in the store, followed by the kernel through the mount.
    ASSERT_EQ(::symlink("secret-dir/alpha.bin", mount.path("alpha-link").c_str()), 0);
    ProcessResult link = RunProcess({"readlink", mount.path("alpha-link")});
    EXPECT_EQ(link.output, "secret-dir/alpha.bin\n");
    EXPECT_EQ(Slurp(mount.path("alpha-link")), big);
    ASSERT_EQ(::lstat(mount.path("alpha-link").c_str(), &st), 0);
    EXPECT_TRUE(S_ISLNK(st.st_mode));
    EXPECT_EQ(uint64_t(st.st_size), std::string("secret-dir/alpha.bin").size());
    EXPECT_EQ(mount.Stop(), 0) << mount.log();
  }
  // The raw store: only .enc, and nothing in it names or shows the plaintext.
  std::vector<std::string> top;
  for (auto& e : fs::directory_iterator(Store())) top.push_back(e.path().filename());
  EXPECT_EQ(top, std::vector<std::string>{".enc"});
  for (std::string word : {"secret", "alpha", "greeting", "moved", "confidential"}) {
    ProcessResult grep = RunProcess({"grep", "-r", "-l", "-a", word, Store()});
    EXPECT_EQ(grep.status, 1) << word << ": " << grep.output;
    ProcessResult find = RunProcess({"find", Store(), "-name", "*" + word + "*"});
    EXPECT_EQ(find.output, "") << word;
    ProcessResult targets = RunProcess({"find", Store(), "-lname", "*" + word + "*"});
    EXPECT_EQ(targets.output, "") << word;
  }
  ProcessResult grep = RunProcess({"grep", "-r", "-l", "-a", big.substr(100000, 40), Store()});
  EXPECT_EQ(grep.status, 1) << grep.output;

  // A plaintext file beside .enc, and a second key.
  Spill(Store("plain-readme.txt"), "plaintext beside .enc\n");
  {
    MountFixture mount(Spec(key2_));
    ASSERT_TRUE(mount.ok()) << mount.error();
    ProcessResult ls = RunProcess({"ls", "-A", mount.mountpoint()});
    EXPECT_EQ(ls.output, "plain-readme.txt\n");
    EXPECT_EQ(Slurp(mount.path("plain-readme.txt")), "plaintext beside .enc\n");
    int fd = ::open(mount.path("plain-readme.txt").c_str(), O_WRONLY);
    EXPECT_EQ(fd, -1);
    EXPECT_EQ(errno, EROFS);
    Spill(mount.path("second.txt"), "key two's file\n");
    ASSERT_EQ(::mkdir(mount.path("secret-dir").c_str(), 0755), 0);  // same name, other key
    EXPECT_EQ(mount.Stop(), 0) << mount.log();
  }
  {
    MountFixture mount(Spec(key1_));
    ASSERT_TRUE(mount.ok()) << mount.error();
    ProcessResult ls = RunProcess({"ls", "-A", mount.mountpoint()});
    EXPECT_EQ(ls.output, "alpha-link\ngreeting.txt\nplain-readme.txt\nsecret-dir\n");
    EXPECT_EQ(Slurp(mount.path("secret-dir/alpha.bin")), big);
    EXPECT_EQ(RunProcess({"readlink", mount.path("alpha-link")}).output, "secret-dir/alpha.bin\n");
    EXPECT_EQ(mount.Stop(), 0) << mount.log();
  }
  size_t entries = 0;
  for (auto& e : fs::directory_iterator(Store(".enc"))) entries += e.is_symlink() || e.exists();
  EXPECT_EQ(entries, 5u);  // two files, a link and two folders of two keys
}

TEST_F(CryptMountTest, TamperingIsDetectedThroughTheMount) {
  const std::string data = Pattern(4 * crypt::kChunkBytes, 2);
  std::string raw_f, raw_g, raw_a;
  {
    MountFixture mount(Spec(key1_));
    ASSERT_TRUE(mount.ok()) << mount.error();
    ASSERT_EQ(::mkdir(mount.path("d1").c_str(), 0755), 0);
    ASSERT_EQ(::mkdir(mount.path("d2").c_str(), 0755), 0);
    Spill(mount.path("f.bin"), data);
    Spill(mount.path("g.bin"), Pattern(4 * crypt::kChunkBytes, 3));
    Spill(mount.path("d1/a.txt"), "a in d1\n");
    EXPECT_EQ(mount.Stop(), 0) << mount.log();
  }
  // Find the raw objects by size and place.
  for (auto& e : fs::directory_iterator(Store(".enc"))) {
    if (!e.is_regular_file()) continue;
    if (raw_f.empty()) {
      raw_f = e.path();
    } else {
      raw_g = e.path();
    }
  }
  for (auto& d : fs::directory_iterator(Store(".enc"))) {
    if (!d.is_directory()) continue;
    for (auto& e : fs::directory_iterator(d.path())) raw_a = e.path();
  }
  ASSERT_FALSE(raw_f.empty());
  ASSERT_FALSE(raw_g.empty());
  ASSERT_FALSE(raw_a.empty());
  const std::string orig_f = Slurp(raw_f), orig_g = Slurp(raw_g);

  // Reads [off, off + len) like cat does: on until EOF or an error (a read that fails part of
  // the way returns the bytes before the failure first).
  auto read_range = [](const std::string& path, off_t off, size_t len, int& err) {
    std::string buf(len, '\0');
    err = 0;
    int fd = ::open(path.c_str(), O_RDONLY);
    if (fd < 0) {
      err = errno;
      return std::string();
    }
    size_t done = 0;
    while (done < len) {
      ssize_t n = ::pread(fd, buf.data() + done, len - done, off + off_t(done));
      if (n < 0) err = errno;
      if (n <= 0) break;
      done += size_t(n);
    }
    ::close(fd);
    buf.resize(done);
    return buf;
  };
  auto check = [&](const std::string& what, auto&& expect) {
    MountFixture mount(Spec(key1_));
    ASSERT_TRUE(mount.ok()) << mount.error();
    // Which of f.bin and g.bin is raw_f is unknown: try both names.
    expect(mount);
    EXPECT_EQ(mount.Stop(), 0) << what << mount.log();
  };
  // 1. One flipped byte in record 2 of one file: that range EIO, the rest reads.
  std::string t = orig_f;
  t[crypt::RecordOffset(2) + 77] ^= 0x20;
  Spill(raw_f, t);
  check("flip", [&](MountFixture& m) {
    int bad = 0;
    for (const char* name : {"f.bin", "g.bin"}) {
      int err = 0;
      read_range(m.path(name), 2 * crypt::kChunkBytes + 10, 100, err);
      if (err == EIO) {
        ++bad;
        read_range(m.path(name), 0, 2 * crypt::kChunkBytes, err);
        EXPECT_EQ(err, 0);
        read_range(m.path(name), 3 * crypt::kChunkBytes, 4096, err);
        EXPECT_EQ(err, 0);
      }
    }
    EXPECT_EQ(bad, 1);
  });
  // 2. Truncated object.
  Spill(raw_f, orig_f.substr(0, orig_f.size() - 1000));
  check("truncate", [&](MountFixture& m) {
    int errs = 0;
    for (const char* name : {"f.bin", "g.bin"}) {
      int err = 0;
      read_range(m.path(name), 0, 4 * crypt::kChunkBytes, err);
      errs += err == EIO;
    }
    EXPECT_EQ(errs, 1);
  });
  // 3. Two records swapped.
  t = orig_f;
  std::copy_n(orig_f.begin() + crypt::RecordOffset(0), crypt::kRecordBytes,
              t.begin() + crypt::RecordOffset(1));
  std::copy_n(orig_f.begin() + crypt::RecordOffset(1), crypt::kRecordBytes,
              t.begin() + crypt::RecordOffset(0));
  Spill(raw_f, t);
  check("swap records", [&](MountFixture& m) {
    int errs = 0;
    for (const char* name : {"f.bin", "g.bin"}) {
      int err = 0;
      read_range(m.path(name), 0, 4096, err);
      errs += err == EIO;
    }
    EXPECT_EQ(errs, 1);
  });
  // 4. The contents of the two files swapped.
  Spill(raw_f, orig_g);
  Spill(raw_g, orig_f);
  check("swap files", [&](MountFixture& m) {
    for (const char* name : {"f.bin", "g.bin"}) {
      int err = 0;
      read_range(m.path(name), 0, 4096, err);
      EXPECT_EQ(err, EIO) << name;
    }
  });
  Spill(raw_f, orig_f);
  Spill(raw_g, orig_g);
  // 5. An encrypted name moved into another folder: gone from both, never decrypted there.
  fs::path other_dir;
  for (auto& d : fs::directory_iterator(Store(".enc"))) {
    if (d.is_directory() && d.path() != fs::path(raw_a).parent_path()) other_dir = d.path();
  }
  ASSERT_FALSE(other_dir.empty());
  fs::rename(raw_a, other_dir / fs::path(raw_a).filename());
  check("move name", [&](MountFixture& m) {
    EXPECT_EQ(RunProcess({"ls", "-A", m.path("d1")}).output, "");
    EXPECT_EQ(RunProcess({"ls", "-A", m.path("d2")}).output, "");
    EXPECT_EQ(Slurp(m.path("f.bin")) == data || Slurp(m.path("g.bin")) == data, true);
  });
}

TEST_F(CryptMountTest, RandomWritesAndTruncationThroughTheMountMatchAReference) {
  MountFixture mount(Spec(key1_));
  ASSERT_TRUE(mount.ok()) << mount.error();
  const std::string path = mount.path("random.bin");
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  std::string ref;
  std::mt19937_64 rng(42);
  const uint64_t kMax = 6 * crypt::kChunkBytes;
  for (int op = 0; op < 10000; ++op) {
    int kind = rng() % 10;
    if (kind < 7) {
      uint64_t off = rng() % kMax;
      std::string piece = Pattern(1 + rng() % (rng() % 8 == 0 ? 150000 : 4000), op);
      ASSERT_EQ(::pwrite(fd, piece.data(), piece.size(), off_t(off)), ssize_t(piece.size()));
      if (ref.size() < off + piece.size()) ref.resize(off + piece.size(), '\0');
      ref.replace(off, piece.size(), piece);
    } else if (kind < 9) {
      uint64_t size = rng() % kMax;
      ASSERT_EQ(::ftruncate(fd, off_t(size)), 0);
      ref.resize(size, '\0');
    } else {
      uint64_t off = rng() % kMax;
      std::string buf(1 + rng() % 100000, '\0');
      ssize_t n = ::pread(fd, buf.data(), buf.size(), off_t(off));
      ASSERT_GE(n, 0);
      buf.resize(size_t(n));
      ASSERT_EQ(buf, off < ref.size() ? ref.substr(off, buf.size()) : "") << op;
    }
  }
  ASSERT_EQ(::close(fd), 0);
  EXPECT_EQ(Slurp(path), ref);
  EXPECT_EQ(mount.Stop(), 0) << mount.log();
  MountFixture again(Spec(key1_));
  ASSERT_TRUE(again.ok()) << again.error();
  EXPECT_EQ(Slurp(again.path("random.bin")), ref);
  size_t raw_files = 0;
  for (auto& e : fs::directory_iterator(Store(".enc"))) {
    ++raw_files;
    EXPECT_EQ(fs::file_size(e.path()), crypt::CiphertextSize(ref.size()));
  }
  EXPECT_EQ(raw_files, 1u);
}

TEST_F(CryptMountTest, AWrongKeyFileIsRefusedWithAClearMessage) {
  std::string bad = (base_ / "bad.key").string();
  Spill(bad, "too short");
  ::chmod(bad.c_str(), 0600);
  Spill((base_ / "spec.toml").string(), Spec(bad));
  fs::create_directories(base_ / "mnt");
  ProcessResult check = RunProcess({HfvfsBinary(), "check", (base_ / "spec.toml").string(),
                                    "--mountpoint", (base_ / "mnt").string()});
  EXPECT_NE(check.status, 0);
  EXPECT_NE(check.output.find("expected 32 raw bytes or 64 hex characters"), std::string::npos)
      << check.output;
  EXPECT_EQ(check.output.find("too short"), std::string::npos) << check.output;
}

// `hfvfs keygen FILE`: a new 0600 key of 64 hex characters that the layer accepts; an existing
// file is never replaced.
TEST_F(CryptMountTest, KeygenCommandWritesAUsableKeyAndNeverReplacesOne) {
  const std::string key = (base_ / "cli.key").string();
  ProcessResult made = RunProcess({HfvfsBinary(), "keygen", key});
  ASSERT_EQ(made.status, 0) << made.output;
  struct stat st {};
  ASSERT_EQ(::stat(key.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  std::ifstream in(key);
  std::string hex;
  in >> hex;
  EXPECT_EQ(hex.size(), 64u);
  EXPECT_EQ(hex.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(made.output.find(hex), std::string::npos) << "the key must not be printed";

  ProcessResult again = RunProcess({HfvfsBinary(), "keygen", key});
  EXPECT_EQ(again.status, 1) << again.output;
  std::ifstream in2(key);
  std::string hex2;
  in2 >> hex2;
  EXPECT_EQ(hex2, hex) << "an existing key file was replaced";

  {
    MountFixture mount(Spec(key));
    std::ofstream(mount.path("hello.txt")) << "sealed";
  }
  MountFixture mount(Spec(key));
  std::ifstream back(mount.path("hello.txt"));
  std::string word;
  back >> word;
  EXPECT_EQ(word, "sealed");
}

}  // namespace
}  // namespace hfvfs::testing
