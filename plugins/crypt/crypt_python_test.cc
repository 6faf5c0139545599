// The layer's files, read back by the independent Python reader (crypt_check.py).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sodium.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>

#include "crypt_layer.h"
#include "testing/dir_layer.h"

namespace hfvfs::crypt {
namespace {

namespace fs = std::filesystem;

std::string Sha256Hex(const std::string& data) {
  unsigned char d[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(d, reinterpret_cast<const unsigned char*>(data.data()), data.size());
  char hex[2 * sizeof d + 1];
  sodium_bin2hex(hex, sizeof hex, d, sizeof d);
  return hex;
}

std::string RunPython(const std::string& args, int& status) {
  std::string cmd = "/usr/bin/python3 " + std::string(HFVFS_SOURCE_DIR) +
                    "/plugins/crypt/crypt_check.py " + args + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  status = ::pclose(p);
  return out;
}

std::set<std::string> Lines(const std::string& text) {
  std::set<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.insert(line);
  return out;
}

class PythonReaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(SodiumReady());
    dir_ = fs::temp_directory_path() / ("crypt_python_test_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "store");
    key_file_ = (dir_ / "test.key").string();
    Key key{};
    for (size_t i = 0; i < key.size(); ++i) key[i] = uint8_t(200 + i);
    std::ofstream(key_file_, std::ios::binary)
        .write(reinterpret_cast<const char*>(key.data()), key.size());
    layer_ =
        std::make_shared<CryptLayer>(testing::MakeDirLayer(dir_ / "store"), key, CryptOptions{});
  }
  void TearDown() override { fs::remove_all(dir_); }

  void Put(const std::string& path, const std::string& data) {
    auto f = *layer_->create(path, 0644, O_WRONLY);
    ASSERT_TRUE(f->write(0, {reinterpret_cast<const std::byte*>(data.data()), data.size()}));
    ASSERT_TRUE(f->close());
    expected_.insert("f " + path + " " + std::to_string(data.size()) + " " + Sha256Hex(data));
  }

  fs::path dir_;
  std::string key_file_;
  std::shared_ptr<CryptLayer> layer_;
  std::set<std::string> expected_;
};

TEST_F(PythonReaderTest, ReadsEverythingTheLayerWrote) {
  std::mt19937 rng(5);
  auto random_text = [&](size_t n) {
    std::string s(n, '\0');
    for (auto& c : s) c = char(rng());
    return s;
  };
  ASSERT_TRUE(layer_->mkdir("models", 0755));
  ASSERT_TRUE(layer_->mkdir("models/gpt", 0755));
  expected_.insert("d models");
  expected_.insert("d models/gpt");
  Put("empty", "");
  Put("one", "1");
  Put("exact", random_text(kChunkBytes));
  Put("models/gpt/weights.bin", random_text(3 * kChunkBytes + 17));
  Put(std::string(175, 'L'), "long name");
  Put("caf\xc3\xa9.txt", "utf-8 name");
  // Random writes and a truncation, then the expected content as a reference computes it.
  std::string ref = random_text(200000);
  {
    auto f = *layer_->create("edited", 0644, O_RDWR);
    ASSERT_TRUE(f->write(0, {reinterpret_cast<const std::byte*>(ref.data()), ref.size()}));
    for (int i = 0; i < 50; ++i) {
      uint64_t off = rng() % 250000;
      std::string piece = random_text(1 + rng() % 9000);
      ASSERT_TRUE(f->write(off, {reinterpret_cast<const std::byte*>(piece.data()), piece.size()}));
      if (ref.size() < off + piece.size()) ref.resize(off + piece.size(), '\0');
      ref.replace(off, piece.size(), piece);
    }
    ASSERT_TRUE(f->truncate(123457));
    ref.resize(123457);
    ASSERT_TRUE(f->close());
  }
  expected_.insert("f edited 123457 " + Sha256Hex(ref));
  // Symlinks: sealed targets, one of them re-sealed by the folder rename below.
  ASSERT_TRUE(layer_->symlink("gpt/weights.bin", "models/latest"));
  ASSERT_TRUE(layer_->symlink("one", "top-link"));
  expected_.insert("l models/latest -> gpt/weights.bin");
  expected_.insert("l top-link -> one");
  // A folder rename re-encrypts names and rebinds headers below it.
  ASSERT_TRUE(layer_->rename("models", "renamed", false));
  std::set<std::string> renamed;
  for (const std::string& line : expected_) {
    std::string l = line;
    for (std::string from : {"d models", "f models", "l models"}) {
      if (l.rfind(from, 0) == 0) l = l.substr(0, 2) + "renamed" + l.substr(from.size());
    }
    renamed.insert(l);
  }
  int status = 0;
  std::string out =
      RunPython("decrypt --key-file " + key_file_ + " " + (dir_ / "store").string(), status);
  EXPECT_EQ(status, 0) << out;
  EXPECT_EQ(Lines(out), renamed) << out;

  // The reader is not a rubber stamp: a flipped byte makes it fail.
  fs::path raw = dir_ / "store" / *layer_->EncryptedPath("one");
  std::fstream f(raw, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(80);
  const char byte = static_cast<char>(f.get());
  f.seekp(80);
  f.put(static_cast<char>(byte ^ 0x55));  // a flip: writing a fixed value left 1 in 256 unchanged
  f.close();
  out = RunPython("decrypt --key-file " + key_file_ + " " + (dir_ / "store").string(), status);
  EXPECT_NE(status, 0);
  EXPECT_NE(out.find("FAIL one: record 0 failed authentication"), std::string::npos) << out;
}

}  // namespace
}  // namespace hfvfs::crypt
