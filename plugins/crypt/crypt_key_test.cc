#include "crypt_key.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace hfvfs::crypt {
namespace {

namespace fs = std::filesystem;

class KeyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("crypt_key_test_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Write(const std::string& name, const std::string& content, mode_t mode = 0600) {
    std::string p = dir_ / name;
    std::ofstream(p, std::ios::binary) << content;
    ::chmod(p.c_str(), mode);
    return p;
  }
  fs::path dir_;
};

TEST_F(KeyTest, KeygenWritesA0600HexKeyAndRefusesToReplaceIt) {
  std::string p = dir_ / "new.key";
  ASSERT_TRUE(GenerateKeyFile(p));
  struct stat st {};
  ASSERT_EQ(::stat(p.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(st.st_size, 65);
  std::string warning;
  Result<Key> k = LoadKeyFile(p, warning);
  ASSERT_TRUE(k) << k.error().message();
  EXPECT_TRUE(warning.empty());
  EXPECT_EQ(GenerateKeyFile(p).code(), EEXIST);
  std::string p2 = dir_ / "other.key";
  ASSERT_TRUE(GenerateKeyFile(p2));
  EXPECT_NE(*LoadKeyFile(p2, warning), *k);  // random
}

TEST_F(KeyTest, AcceptsRawAndHexWithWhitespace) {
  std::string raw(32, '\0');
  for (int i = 0; i < 32; ++i) raw[i] = char(i);
  std::string warning;
  Result<Key> a = LoadKeyFile(Write("raw.key", raw), warning);
  ASSERT_TRUE(a);
  Result<Key> b = LoadKeyFile(
      Write("hex.key", "  000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\r\n"),
      warning);
  ASSERT_TRUE(b) << b.error().message();
  EXPECT_EQ(*a, *b);
  EXPECT_TRUE(
      ParseHexKey("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F", "env"));
}

TEST_F(KeyTest, RefusesWrongLengthsWithoutShowingTheKey) {
  std::string warning;
  for (std::string bad : {std::string(31, 'k'), std::string(33, 'k'), std::string(63, 'a'),
                          std::string(64, 'g'), std::string(66, 'a'), std::string()}) {
    Result<Key> k = LoadKeyFile(Write("bad.key", bad), warning);
    ASSERT_FALSE(k) << bad.size();
    EXPECT_EQ(k.code(), EINVAL);
    EXPECT_NE(k.error().message().find("expected 32 raw bytes or 64 hex"), std::string::npos);
    if (!bad.empty()) {
      EXPECT_EQ(k.error().message().find(bad), std::string::npos);
    }
  }
  Result<Key> missing = LoadKeyFile(dir_ / "absent.key", warning);
  EXPECT_EQ(missing.code(), ENOENT);
  Result<Key> env = ParseHexKey("secretsecret", "environment variable X");
  ASSERT_FALSE(env);
  EXPECT_EQ(env.error().message().find("secretsecret"), std::string::npos);
}

TEST_F(KeyTest, WarnsWhenOthersCanReadTheKeyFile) {
  std::string warning;
  Result<Key> k = LoadKeyFile(Write("open.key", std::string(32, 'k'), 0644), warning);
  ASSERT_TRUE(k);
  EXPECT_NE(warning.find("chmod 600"), std::string::npos);
  EXPECT_EQ(warning.find("kkkk"), std::string::npos);
}

}  // namespace
}  // namespace hfvfs::crypt
