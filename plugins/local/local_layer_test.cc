// Unit tests of the local layer: what the conformance suite cannot see from the contract alone
// (containment below the root, both path-resolution strategies, special files, exact modes,
// the read-only switch, counters). The contract itself is exercised by
// tests/conformance/local_conformance_test.cc.
#include "local_layer.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace hfvfs::local {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    const char* tmp = getenv("TMPDIR");
    std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/hfvfs-local-XXXXXX";
    EXPECT_NE(mkdtemp(tmpl.data()), nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string Write(const std::string& name, const std::string& text) const {
    std::string file = path_ + "/" + name;
    fs::create_directories(fs::path(file).parent_path());
    std::ofstream(file, std::ios::binary) << text;
    return file;
  }
  std::string Read(const std::string& name) const {
    std::ifstream in(path_ + "/" + name, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

 private:
  std::string path_;
};

std::string ReadAll(File& file) {
  std::string out;
  std::vector<std::byte> buf(1 << 16);
  uint64_t offset = 0;
  for (;;) {
    Result<size_t> n = file.read(offset, buf);
    EXPECT_TRUE(n.ok()) << n.error().message();
    if (!n || *n == 0) break;
    out.append(reinterpret_cast<const char*>(buf.data()), *n);
    offset += *n;
  }
  return out;
}

std::span<const std::byte> Bytes(std::string_view s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

// Both ways of resolving paths must behave the same.
class LocalLayerTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    outside_.Write("secret.txt", "outside the root");
    root_.Write("inside.txt", "inside");
    root_.Write("dir/child.txt", "child");
    ASSERT_EQ(::symlink(outside_.path().c_str(), (root_.path() + "/abs-escape").c_str()), 0);
    ASSERT_EQ(::symlink("..", (root_.path() + "/dir/up").c_str()), 0);
    ASSERT_EQ(::symlink("../..", (root_.path() + "/dotdot-escape").c_str()), 0);
    ASSERT_EQ(::symlink((outside_.path() + "/secret.txt").c_str(),
                        (root_.path() + "/file-escape").c_str()),
              0);
    LocalOptions options;
    options.walk_components = GetParam();
    auto layer = LocalLayer::Open(root_.path(), options);
    ASSERT_TRUE(layer.ok()) << layer.error().message();
    layer_ = std::move(*layer);
  }

  TempDir outside_;
  TempDir root_;
  std::unique_ptr<LocalLayer> layer_;
};

TEST_P(LocalLayerTest, SymlinksInTheMiddleOfAPathAreNotFollowed) {
  EXPECT_EQ(layer_->stat("abs-escape/secret.txt").code(), ENOTDIR);
  EXPECT_EQ(layer_->open("abs-escape/secret.txt", O_RDONLY).code(), ENOTDIR);
  EXPECT_EQ(layer_->list("abs-escape").code(), ENOTDIR);
  EXPECT_EQ(layer_->stat("dotdot-escape/secret.txt").code(), ENOTDIR);
  EXPECT_EQ(layer_->stat("dir/up/inside.txt").code(), ENOTDIR);
  EXPECT_EQ(layer_->create("abs-escape/new.txt", 0644, O_WRONLY).code(), ENOTDIR);
  EXPECT_EQ(layer_->mkdir("abs-escape/newdir", 0755).code(), ENOTDIR);
  EXPECT_EQ(layer_->rename("inside.txt", "abs-escape/moved.txt", false).code(), ENOTDIR);
  EXPECT_FALSE(fs::exists(outside_.path() + "/new.txt"));
  EXPECT_FALSE(fs::exists(outside_.path() + "/newdir"));
  EXPECT_FALSE(fs::exists(outside_.path() + "/moved.txt"));
  EXPECT_TRUE(fs::exists(root_.path() + "/inside.txt"));
}

TEST_P(LocalLayerTest, AFinalSymlinkIsNeverFollowed) {
  Result<Attr> attr = layer_->stat("file-escape");
  ASSERT_TRUE(attr.ok()) << attr.error().message();
  EXPECT_TRUE(attr->is_symlink());
  EXPECT_EQ(layer_->open("file-escape", O_RDONLY).code(), ELOOP);
  EXPECT_EQ(layer_->open("file-escape", O_WRONLY | O_TRUNC).code(), ELOOP);
  // chmod would follow the link on Linux; the layer refuses instead.
  SetAttr chmod;
  chmod.set_mode = true;
  chmod.mode = 0777;
  EXPECT_EQ(layer_->setattr("file-escape", chmod).code(), EOPNOTSUPP);
  SetAttr truncate;
  truncate.set_size = true;
  EXPECT_FALSE(layer_->setattr("file-escape", truncate).ok());
  EXPECT_EQ(outside_.Read("secret.txt"), "outside the root");
  struct stat st;
  ASSERT_EQ(::stat((outside_.path() + "/secret.txt").c_str(), &st), 0);
  EXPECT_NE(st.st_mode & 0777, 0777u);
  // utimens and unlink act on the link itself.
  SetAttr touch;
  touch.set_mtime = true;
  touch.mtime_ns = 1'000'000'000;
  ASSERT_TRUE(layer_->setattr("file-escape", touch).ok());
  EXPECT_NE(st.st_mtim.tv_sec, 1);
  ASSERT_EQ(::stat((outside_.path() + "/secret.txt").c_str(), &st), 0);
  EXPECT_NE(st.st_mtim.tv_sec, 1);
  ASSERT_TRUE(layer_->remove("file-escape").ok());
  EXPECT_TRUE(fs::exists(outside_.path() + "/secret.txt"));
  Result<std::string> target = layer_->readlink("abs-escape");
  ASSERT_TRUE(target.ok());
  EXPECT_EQ(*target, outside_.path());
}

TEST_P(LocalLayerTest, PathsThatAreNotLayerPathsAreRefused) {
  for (std::string_view bad : {"..", "../x", "dir/../inside.txt", "/inside.txt", "inside.txt/",
                               "dir//child.txt", ".", "./inside.txt"}) {
    EXPECT_EQ(layer_->stat(bad).code(), EINVAL) << bad;
    EXPECT_EQ(layer_->open(bad, O_RDONLY).code(), EINVAL) << bad;
    EXPECT_EQ(layer_->remove(bad).code(), EINVAL) << bad;
  }
  EXPECT_EQ(layer_->stat(std::string_view("a\0b", 3)).code(), EINVAL);
}

TEST_P(LocalLayerTest, SpecialFilesAreLeftOut) {
  ASSERT_EQ(::mkfifo((root_.path() + "/fifo").c_str(), 0644), 0);
  auto entries = layer_->list("");
  ASSERT_TRUE(entries.ok());
  for (const DirEntry& e : *entries) EXPECT_NE(e.name, "fifo");
  EXPECT_EQ(layer_->stat("fifo").code(), ENOENT);
  // Does not block on the FIFO.
  EXPECT_EQ(layer_->open("fifo", O_RDONLY).code(), ENOENT);
}

TEST_P(LocalLayerTest, ModesAreStoredExactlyWhateverTheUmask) {
  mode_t old = ::umask(077);
  auto file = layer_->create("m.txt", 0664, O_WRONLY | O_CREAT);
  Status made = layer_->mkdir("mdir", 0775);
  ::umask(old);
  ASSERT_TRUE(file.ok()) << file.error().message();
  ASSERT_TRUE(made.ok()) << made.error().message();
  ASSERT_TRUE((*file)->close().ok());
  EXPECT_EQ(layer_->stat("m.txt")->mode, 0664u);
  EXPECT_EQ(layer_->stat("mdir")->mode, 0775u);
}

TEST_P(LocalLayerTest, CreateWithoutExclOpensTheExistingFile) {
  auto file = layer_->create("inside.txt", 0600, O_WRONLY | O_CREAT);
  ASSERT_TRUE(file.ok()) << file.error().message();
  ASSERT_TRUE((*file)->write(0, Bytes("IN")).ok());
  ASSERT_TRUE((*file)->close().ok());
  EXPECT_EQ(root_.Read("inside.txt"), "INside");
  EXPECT_EQ(layer_->create("inside.txt", 0600, O_WRONLY | O_CREAT | O_EXCL).code(), EEXIST);
  auto trunc = layer_->create("inside.txt", 0600, O_WRONLY | O_CREAT | O_TRUNC);
  ASSERT_TRUE(trunc.ok());
  ASSERT_TRUE((*trunc)->close().ok());
  EXPECT_EQ(root_.Read("inside.txt"), "");
}

TEST_P(LocalLayerTest, VersionFollowsContentAndReplacement) {
  Attr before = *layer_->stat("inside.txt");
  EXPECT_FALSE(before.version.empty());
  EXPECT_EQ(layer_->stat("inside.txt")->version, before.version);
  // Same size, replaced by rename: the inode differs even within one clock tick.
  root_.Write("other.txt", "INSIDE");
  ASSERT_TRUE(layer_->rename("other.txt", "inside.txt", false).ok());
  Attr after = *layer_->stat("inside.txt");
  EXPECT_NE(after.version, before.version);
  EXPECT_EQ(after.size, before.size);
}

TEST_P(LocalLayerTest, AppendFlagDoesNotMoveWritesToTheEnd) {
  // The kernel sends offsets; a write at an explicit offset must land there.
  auto file = layer_->open("inside.txt", O_WRONLY | O_APPEND);
  ASSERT_TRUE(file.ok());
  ASSERT_TRUE((*file)->write(0, Bytes("X")).ok());
  ASSERT_TRUE((*file)->close().ok());
  EXPECT_EQ(root_.Read("inside.txt"), "Xnside");
}

TEST_P(LocalLayerTest, WriteOnlyFileCanStillBeOpenedForWriting) {
  root_.Write("wo.txt", "abc");
  ASSERT_EQ(::chmod((root_.path() + "/wo.txt").c_str(), 0200), 0);
  auto file = layer_->open("wo.txt", O_WRONLY);
  ASSERT_TRUE(file.ok()) << file.error().message();
  ASSERT_TRUE((*file)->write(3, Bytes("d")).ok());
  ASSERT_TRUE((*file)->close().ok());
  ASSERT_EQ(::chmod((root_.path() + "/wo.txt").c_str(), 0600), 0);
  EXPECT_EQ(root_.Read("wo.txt"), "abcd");
}

TEST_P(LocalLayerTest, ReadOnlyRefusesEveryWriteAndClaimsNothing) {
  LocalOptions options;
  options.read_only = true;
  options.walk_components = GetParam();
  auto ro = LocalLayer::Open(root_.path(), options);
  ASSERT_TRUE(ro.ok());
  Capabilities caps = (*ro)->capabilities();
  EXPECT_FALSE(caps.writable);
  EXPECT_FALSE(caps.random_write);
  EXPECT_FALSE(caps.rename);
  EXPECT_FALSE(caps.symlinks);
  EXPECT_EQ((*ro)->create("n.txt", 0644, O_WRONLY).code(), EROFS);
  EXPECT_EQ((*ro)->open("inside.txt", O_RDWR).code(), EROFS);
  EXPECT_EQ((*ro)->open("inside.txt", O_RDONLY | O_TRUNC).code(), EROFS);
  EXPECT_EQ((*ro)->mkdir("d2", 0755).code(), EROFS);
  EXPECT_EQ((*ro)->remove("inside.txt").code(), EROFS);
  EXPECT_EQ((*ro)->rmdir("dir").code(), EROFS);
  EXPECT_EQ((*ro)->rename("inside.txt", "x", false).code(), EROFS);
  EXPECT_EQ((*ro)->symlink("inside.txt", "l").code(), EROFS);
  SetAttr change;
  change.set_mode = true;
  change.mode = 0600;
  EXPECT_EQ((*ro)->setattr("inside.txt", change).code(), EROFS);
  // Reading still works, links included.
  auto file = (*ro)->open("inside.txt", O_RDONLY);
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(ReadAll(**file), "inside");
  EXPECT_EQ(*(*ro)->readlink("dir/up"), "..");
  EXPECT_EQ(root_.Read("inside.txt"), "inside");
}

TEST_P(LocalLayerTest, RootCannotBeRemovedOrRenamed) {
  EXPECT_TRUE(layer_->stat("")->is_dir());
  EXPECT_EQ(layer_->rmdir("").code(), EBUSY);
  EXPECT_EQ(layer_->rename("", "x", false).code(), EBUSY);
  EXPECT_EQ(layer_->rename("dir", "", false).code(), EBUSY);
  EXPECT_EQ(layer_->open("", O_RDONLY).code(), EISDIR);
  EXPECT_EQ(layer_->mkdir("", 0755).code(), EEXIST);
}

TEST_P(LocalLayerTest, RenameNoreplaceAndDirectoryIntoItself) {
  EXPECT_EQ(layer_->rename("inside.txt", "dir/child.txt", true).code(), EEXIST);
  EXPECT_EQ(root_.Read("dir/child.txt"), "child");
  EXPECT_EQ(layer_->rename("dir", "dir/sub", false).code(), EINVAL);
  ASSERT_TRUE(layer_->rename("inside.txt", "dir/moved.txt", true).ok());
  EXPECT_EQ(root_.Read("dir/moved.txt"), "inside");
}

TEST_P(LocalLayerTest, CountersCountBytesAndOpenFiles) {
  auto file = layer_->open("inside.txt", O_RDWR);
  ASSERT_TRUE(file.ok());
  std::vector<std::pair<std::string, int64_t>> counters;
  layer_->counters(counters);
  auto value = [&](const std::string& name) {
    for (auto& [k, v] : counters)
      if (k == name) return v;
    ADD_FAILURE() << "no counter " << name;
    return int64_t{-1};
  };
  EXPECT_EQ(value("files_open"), 1);
  EXPECT_EQ(ReadAll(**file), "inside");
  ASSERT_TRUE((*file)->write(6, Bytes("!!")).ok());
  ASSERT_TRUE((*file)->close().ok());
  counters.clear();
  layer_->counters(counters);
  EXPECT_EQ(value("files_open"), 0);
  EXPECT_EQ(value("bytes_read"), 6);
  EXPECT_EQ(value("bytes_written"), 2);
}

TEST_P(LocalLayerTest, StatfsReportsTheUnderlyingFileSystem) {
  auto stats = layer_->statfs();
  ASSERT_TRUE(stats.ok());
  EXPECT_GT(stats->block_size, 0u);
  EXPECT_GT(stats->total_blocks, 0u);
  EXPECT_GE(stats->name_max, 255u);
}

TEST_P(LocalLayerTest, ConcurrentCreatesInOneFolder) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) {
        std::string name = "dir/t" + std::to_string(t) + "-" + std::to_string(i);
        auto file = layer_->create(name, 0644, O_WRONLY | O_EXCL);
        ASSERT_TRUE(file.ok()) << file.error().message();
        ASSERT_TRUE((*file)->write(0, Bytes(name)).ok());
        ASSERT_TRUE((*file)->close().ok());
      }
    });
  }
  for (auto& t : threads) t.join();
  auto entries = layer_->list("dir");
  ASSERT_TRUE(entries.ok());
  EXPECT_EQ(entries->size(), 2u + 8 * 20);  // child.txt, up, and the new files
}

TEST(LocalLayerOpen, MissingOrNonFolderRootIsNamed) {
  TempDir dir;
  auto missing = LocalLayer::Open(dir.path() + "/nope", {});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.code(), ENOENT);
  EXPECT_NE(missing.error().message().find(dir.path() + "/nope"), std::string::npos);
  std::string file = dir.Write("f", "x");
  EXPECT_EQ(LocalLayer::Open(file, {}).code(), ENOTDIR);
  EXPECT_EQ(LocalLayer::Open("", {}).code(), EINVAL);
}

INSTANTIATE_TEST_SUITE_P(Resolution, LocalLayerTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? std::string("WalkComponents")
                                             : std::string("Openat2");
                         });

}  // namespace
}  // namespace hfvfs::local
