#include "vfs.h"

#include <fcntl.h>
#include <gtest/gtest.h>

#include <thread>

#include "mem_fs.h"

namespace hfvfs::kernel {
namespace {

using hfvfs::testing::MemFs;
using namespace std::chrono_literals;

std::span<const std::byte> Bytes(std::string_view text) {
  return std::as_bytes(std::span(text.data(), text.size()));
}

class VfsTest : public ::testing::Test {
 protected:
  void Make(VfsOptions options = {}) {
    fs_ = std::make_shared<MemFs>();
    fs_->Put("hello.txt", "hello");
    fs_->Put("dir/a.txt", "aaa");
    fs_->Put("dir/sub/b.txt", "bb");
    vfs_ = std::make_unique<Vfs>(fs_, options);
  }
  void SetUp() override { Make(); }

  uint64_t Ino(uint64_t parent, std::string_view name) {
    Result<Entry> e = vfs_->Lookup(parent, name);
    EXPECT_TRUE(e.ok()) << name << ": " << (e ? "" : e.error().message());
    return e ? e->ino : 0;
  }
  std::string ReadAll(uint64_t fh) {
    std::vector<std::byte> buf(1 << 16);
    Result<size_t> n = vfs_->Read(fh, 0, buf);
    EXPECT_TRUE(n.ok());
    return n ? std::string(reinterpret_cast<const char*>(buf.data()), *n) : "";
  }
  std::vector<std::string> Names(uint64_t dir_ino) {
    Result<Vfs::Opened> dh = vfs_->OpenDir(dir_ino);
    EXPECT_TRUE(dh.ok());
    std::vector<std::string> names;
    Result<std::vector<DirItem>> items = vfs_->ReadDir(dh->fh, 0, 1000);
    for (const DirItem& item : *items) names.push_back(item.name);
    vfs_->ReleaseDir(dh->fh);
    std::sort(names.begin(), names.end());
    return names;
  }

  std::shared_ptr<MemFs> fs_;
  std::unique_ptr<Vfs> vfs_;
};

TEST_F(VfsTest, LookupGivesAttributesAndStableInodes) {
  Result<Entry> e = vfs_->Lookup(kRootInode, "hello.txt");
  ASSERT_TRUE(e.ok());
  EXPECT_TRUE(S_ISREG(e->attr.st_mode));
  EXPECT_EQ(e->attr.st_size, 5);
  EXPECT_EQ(e->attr.st_ino, e->ino);
  EXPECT_DOUBLE_EQ(e->entry_timeout, 10.0);
  EXPECT_EQ(Ino(kRootInode, "hello.txt"), e->ino);
  uint64_t dir = Ino(kRootInode, "dir");
  Result<AttrReply> a = vfs_->GetAttr(dir);
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(S_ISDIR(a->attr.st_mode));
  EXPECT_EQ(a->attr.st_mode & 07777, 0755u);
}

TEST_F(VfsTest, AttributesAreCachedForTheTtl) {
  VfsOptions options;
  options.attr_ttl = 100ms;
  Make(options);
  uint64_t ino = Ino(kRootInode, "hello.txt");
  int calls = fs_->stat_calls;
  ASSERT_TRUE(vfs_->GetAttr(ino).ok());
  EXPECT_EQ(fs_->stat_calls, calls) << "served from the cache";
  fs_->Put("hello.txt", "changed below the mount");
  EXPECT_EQ(vfs_->GetAttr(ino)->attr.st_size, 5) << "still cached";
  std::this_thread::sleep_for(150ms);
  EXPECT_EQ(vfs_->GetAttr(ino)->attr.st_size, 23) << "the TTL expired";
}

TEST_F(VfsTest, NegativeEntriesAreCachedBriefly) {
  VfsOptions options;
  options.negative_ttl = 100ms;
  Make(options);
  EXPECT_EQ(vfs_->Lookup(kRootInode, "late.txt").code(), ENOENT);
  fs_->Put("late.txt", "x");
  EXPECT_EQ(vfs_->Lookup(kRootInode, "late.txt").code(), ENOENT) << "negative cache";
  std::this_thread::sleep_for(150ms);
  EXPECT_TRUE(vfs_->Lookup(kRootInode, "late.txt").ok());
}

TEST_F(VfsTest, CreateThroughTheMountClearsTheNegativeEntry) {
  EXPECT_EQ(vfs_->Lookup(kRootInode, "new.txt").code(), ENOENT);
  auto created = vfs_->Create(kRootInode, "new.txt", 0600, O_WRONLY | O_CREAT);
  ASSERT_TRUE(created.ok());
  EXPECT_EQ(created->first.attr.st_mode & 07777, 0600u);
  ASSERT_TRUE(vfs_->Release(created->second.fh).ok());
  EXPECT_TRUE(vfs_->Lookup(kRootInode, "new.txt").ok());
  EXPECT_EQ(Names(kRootInode),
            (std::vector<std::string>{".", "..", "dir", "hello.txt", "new.txt"}));
}

TEST_F(VfsTest, ReadDirServesDotsThenTheListingFromAnyOffset) {
  uint64_t dir = Ino(kRootInode, "dir");
  Result<Vfs::Opened> opened = vfs_->OpenDir(dir);
  ASSERT_TRUE(opened.ok());
  const uint64_t* dh = &opened->fh;
  Result<std::vector<DirItem>> all = vfs_->ReadDir(*dh, 0, 100);
  ASSERT_EQ(all->size(), 4u);
  EXPECT_EQ((*all)[0].name, ".");
  EXPECT_EQ((*all)[1].name, "..");
  Result<std::vector<DirItem>> tail = vfs_->ReadDir(*dh, 3, 100);
  ASSERT_EQ(tail->size(), 1u);
  EXPECT_EQ(tail->front().name, (*all)[3].name);
  EXPECT_TRUE(vfs_->ReadDir(*dh, 4, 100)->empty());

  // readdirplus entries take a reference, plain readdir numbers do not; both agree.
  const DirItem& child = (*all)[2];
  uint64_t plain = vfs_->InoForItem(*dh, child);
  Entry plus = vfs_->EntryForItem(*dh, child);
  EXPECT_EQ(plain, plus.ino);
  EXPECT_EQ(vfs_->InoForItem(*dh, (*all)[0]), dir);
  EXPECT_EQ(vfs_->InoForItem(*dh, (*all)[1]), kRootInode);
  vfs_->ReleaseDir(*dh);
  EXPECT_EQ(vfs_->ReadDir(*dh, 0, 10).code(), EBADF);
}

TEST_F(VfsTest, DirKeepCacheOnlyWhileTheNamesAreUnchanged) {
  uint64_t dir = Ino(kRootInode, "dir");
  auto open_dir = [&] {
    Result<Vfs::Opened> opened = vfs_->OpenDir(dir);
    EXPECT_TRUE(opened.ok());
    vfs_->ReleaseDir(opened->fh);
    return opened->keep_cache;
  };
  EXPECT_FALSE(open_dir()) << "first listing";
  EXPECT_TRUE(open_dir());
  fs_->Put("dir/a.txt", "new content, same name");
  vfs_->DropCaches("dir/a.txt");
  EXPECT_TRUE(open_dir()) << "content changes do not touch the names";
  auto created = vfs_->Create(dir, "c.txt", 0644, O_WRONLY | O_CREAT);
  ASSERT_TRUE(created.ok());
  (void)vfs_->Release(created->second.fh);
  EXPECT_FALSE(open_dir()) << "a new name";
  EXPECT_TRUE(open_dir());
}

TEST_F(VfsTest, ListingsAreCachedAndAnswerLookups) {
  uint64_t dir = Ino(kRootInode, "dir");
  Names(dir);
  int lists = fs_->list_calls, stats = fs_->stat_calls;
  Names(dir);
  EXPECT_EQ(fs_->list_calls, lists);
  EXPECT_TRUE(vfs_->Lookup(dir, "a.txt").ok());
  EXPECT_EQ(vfs_->Lookup(dir, "zzz").code(), ENOENT);
  EXPECT_EQ(fs_->stat_calls, stats) << "a fresh listing answers lookups of its children";
}

TEST_F(VfsTest, WriteReadAndSizeThroughTheOpenHandle) {
  auto created = vfs_->Create(kRootInode, "w.txt", 0644, O_RDWR | O_CREAT);
  ASSERT_TRUE(created.ok());
  uint64_t fh = created->second.fh, ino = created->first.ino;
  ASSERT_EQ(*vfs_->Write(fh, 0, Bytes("hello world")), 11u);
  ASSERT_EQ(*vfs_->Write(fh, 6, Bytes("WORLD!")), 6u);
  EXPECT_EQ(vfs_->GetAttr(ino)->attr.st_size, 12);
  EXPECT_EQ(ReadAll(fh), "hello WORLD!");
  ASSERT_TRUE(vfs_->Flush(fh).ok());
  ASSERT_TRUE(vfs_->Fsync(fh, false).ok());
  ASSERT_TRUE(vfs_->Release(fh).ok());
  EXPECT_EQ(vfs_->Release(fh).code(), EBADF);
  EXPECT_EQ(vfs_->counters().bytes_written.load(), 17);

  Result<Vfs::Opened> ro = vfs_->Open(ino, O_RDONLY);
  ASSERT_TRUE(ro.ok());
  EXPECT_EQ(vfs_->Write(ro->fh, 0, Bytes("x")).code(), EBADF);
  (void)vfs_->Release(ro->fh);
}

TEST_F(VfsTest, KeepCacheOnlyWhenTheContentVersionIsUnchanged) {
  uint64_t ino = Ino(kRootInode, "hello.txt");
  auto first = vfs_->Open(ino, O_RDONLY);
  EXPECT_FALSE(first->keep_cache) << "the kernel has no pages yet";
  (void)vfs_->Release(first->fh);
  auto second = vfs_->Open(ino, O_RDONLY);
  EXPECT_TRUE(second->keep_cache);
  (void)vfs_->Release(second->fh);
  fs_->Put("hello.txt", "new content");
  auto third = vfs_->Open(ino, O_RDONLY);
  EXPECT_FALSE(third->keep_cache) << "the version changed";
  (void)vfs_->Release(third->fh);
}

TEST_F(VfsTest, UnlinkedOpenFileStaysReadable) {
  uint64_t ino = Ino(kRootInode, "hello.txt");
  auto opened = vfs_->Open(ino, O_RDONLY);
  ASSERT_TRUE(opened.ok());
  ASSERT_TRUE(vfs_->Unlink(kRootInode, "hello.txt").ok());
  EXPECT_EQ(vfs_->Lookup(kRootInode, "hello.txt").code(), ENOENT);
  EXPECT_EQ(ReadAll(opened->fh), "hello");
  EXPECT_EQ(vfs_->GetAttr(ino)->attr.st_size, 5) << "fstat of an unlinked open file";
  EXPECT_EQ(vfs_->inode_stats().orphans, 1u);
  (void)vfs_->Release(opened->fh);
  vfs_->Forget(ino, 1);
  EXPECT_EQ(vfs_->inode_stats().orphans, 0u);
}

TEST_F(VfsTest, RenameMovesInodesAndReplacesTargets) {
  uint64_t dir = Ino(kRootInode, "dir");
  uint64_t sub = Ino(dir, "sub");
  uint64_t b = Ino(sub, "b.txt");
  ASSERT_TRUE(vfs_->Rename(kRootInode, "dir", kRootInode, "moved", false).ok());
  EXPECT_EQ(vfs_->Lookup(kRootInode, "dir").code(), ENOENT);
  EXPECT_EQ(Ino(kRootInode, "moved"), dir);
  EXPECT_EQ(Ino(sub, "b.txt"), b) << "children follow their folder";
  auto opened = vfs_->Open(b, O_RDONLY);
  EXPECT_EQ(ReadAll(opened->fh), "bb");
  (void)vfs_->Release(opened->fh);

  // Over an existing file: the old target becomes unreachable; with noreplace: EEXIST.
  uint64_t hello = Ino(kRootInode, "hello.txt");
  EXPECT_EQ(vfs_->Rename(sub, "b.txt", kRootInode, "hello.txt", true).code(), EEXIST);
  ASSERT_TRUE(vfs_->Rename(sub, "b.txt", kRootInode, "hello.txt", false).ok());
  EXPECT_EQ(Ino(kRootInode, "hello.txt"), b);
  EXPECT_NE(b, hello);
  EXPECT_EQ(vfs_->GetAttr(hello).code(), ENOENT);
  EXPECT_EQ(vfs_->Rename(kRootInode, "moved", sub, "x", false).code(), EINVAL);
}

TEST_F(VfsTest, FoldersAndSymlinks) {
  Result<Entry> d = vfs_->Mkdir(kRootInode, "new", 0700);
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(S_ISDIR(d->attr.st_mode));
  EXPECT_EQ(d->attr.st_mode & 07777, 0700u);
  EXPECT_EQ(vfs_->Mkdir(kRootInode, "new", 0700).code(), EEXIST);
  Result<Entry> link = vfs_->Symlink("../hello.txt", d->ino, "link");
  ASSERT_TRUE(link.ok());
  EXPECT_TRUE(S_ISLNK(link->attr.st_mode));
  EXPECT_EQ(*vfs_->Readlink(link->ino), "../hello.txt");
  EXPECT_EQ(vfs_->Rmdir(kRootInode, "new").code(), ENOTEMPTY);
  ASSERT_TRUE(vfs_->Unlink(d->ino, "link").ok());
  ASSERT_TRUE(vfs_->Rmdir(kRootInode, "new").ok());
  EXPECT_EQ(vfs_->Lookup(kRootInode, "new").code(), ENOENT);
  EXPECT_EQ(vfs_->OpenDir(Ino(kRootInode, "hello.txt")).code(), ENOTDIR);
}

TEST_F(VfsTest, SetAttrTruncatesChmodsAndTouches) {
  uint64_t ino = Ino(kRootInode, "hello.txt");
  hfvfs::SetAttr change;
  change.set_size = true;
  change.size = 2;
  change.set_mode = true;
  change.mode = 0600;
  change.set_mtime = true;
  change.mtime_ns = 1'000'000'000'123;
  Result<AttrReply> a = vfs_->SetAttr(ino, change, 0);
  ASSERT_TRUE(a.ok()) << a.error().message();
  EXPECT_EQ(a->attr.st_size, 2);
  EXPECT_EQ(a->attr.st_mode & 07777, 0600u);
  EXPECT_EQ(a->attr.st_mtim.tv_sec, 1000);
  EXPECT_EQ(a->attr.st_mtim.tv_nsec, 123);

  // Through an open handle (ftruncate).
  auto opened = vfs_->Open(ino, O_RDWR);
  hfvfs::SetAttr grow;
  grow.set_size = true;
  grow.size = 4;
  EXPECT_EQ(vfs_->SetAttr(ino, grow, opened->fh)->attr.st_size, 4);
  EXPECT_EQ(ReadAll(opened->fh), std::string("he\0\0", 4));
  (void)vfs_->Release(opened->fh);
}

TEST_F(VfsTest, ReadOnlyRefusesEveryChange) {
  VfsOptions options;
  options.read_only = true;
  Make(options);
  uint64_t ino = Ino(kRootInode, "hello.txt");
  EXPECT_EQ(vfs_->Open(ino, O_WRONLY).code(), EROFS);
  EXPECT_EQ(vfs_->Open(ino, O_RDONLY | O_TRUNC).code(), EROFS);
  EXPECT_EQ(vfs_->Create(kRootInode, "x", 0644, O_WRONLY).code(), EROFS);
  EXPECT_EQ(vfs_->Mkdir(kRootInode, "x", 0755).code(), EROFS);
  EXPECT_EQ(vfs_->Unlink(kRootInode, "hello.txt").code(), EROFS);
  EXPECT_EQ(vfs_->Rename(kRootInode, "hello.txt", kRootInode, "x", false).code(), EROFS);
  EXPECT_EQ(vfs_->Symlink("t", kRootInode, "x").code(), EROFS);
  EXPECT_EQ(vfs_->SetAttr(ino, hfvfs::SetAttr{}, 0).code(), EROFS);
  auto opened = vfs_->Open(ino, O_RDONLY);
  ASSERT_TRUE(opened.ok());
  EXPECT_EQ(ReadAll(opened->fh), "hello");
  (void)vfs_->Release(opened->fh);
}

TEST_F(VfsTest, OwnerAndStatfsComeFromOptionsAndLayer) {
  VfsOptions options;
  options.uid = 1234;
  options.gid = 5678;
  Make(options);
  Result<AttrReply> a = vfs_->GetAttr(kRootInode);
  EXPECT_EQ(a->attr.st_uid, 1234u);
  EXPECT_EQ(a->attr.st_gid, 5678u);
  Result<struct statvfs> st = vfs_->Statfs();
  ASSERT_TRUE(st.ok());
  EXPECT_GT(st->f_blocks, 0u) << "unknown capacity is reported as large, not zero";
  EXPECT_EQ(st->f_bavail, st->f_blocks);
  EXPECT_EQ(st->f_namemax, 255u);
}

TEST_F(VfsTest, BadNamesAndUnknownInodes) {
  EXPECT_EQ(vfs_->Lookup(kRootInode, std::string(300, 'x')).code(), ENAMETOOLONG);
  EXPECT_EQ(vfs_->Lookup(987654, "x").code(), ESTALE);
  EXPECT_EQ(vfs_->GetAttr(987654).code(), ESTALE);
  EXPECT_EQ(vfs_->Read(999, 0, {}).code(), EBADF);
}

// A source that says its content never changes (a pinned Hub commit).
class ImmutableFs final : public LayerWrapper {
 public:
  using LayerWrapper::LayerWrapper;
  std::string_view type() const override { return "immutable"; }
  Capabilities capabilities() const override {
    Capabilities c = lower().capabilities();
    c.immutable = true;
    return c;
  }
};

TEST_F(VfsTest, ImmutableStacksGetLongTimeouts) {
  Vfs vfs(std::make_shared<ImmutableFs>(fs_), VfsOptions{});
  EXPECT_TRUE(vfs.immutable());
  Result<Entry> e = vfs.Lookup(kRootInode, "hello.txt");
  ASSERT_TRUE(e.ok());
  EXPECT_GE(e->entry_timeout, 3600.0);
  EXPECT_GE(e->attr_timeout, 3600.0);
}

TEST_F(VfsTest, ConcurrentLookupsAndReadsAgree) {
  uint64_t ino = Ino(kRootInode, "hello.txt");
  std::vector<std::thread> threads;
  threads.reserve(8);
  std::atomic<int> failures{0};
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) {
        Result<Entry> e = vfs_->Lookup(kRootInode, "hello.txt");
        if (!e || e->ino != ino) ++failures;
        auto opened = vfs_->Open(ino, O_RDONLY);
        std::vector<std::byte> buf(16);
        if (!opened || *vfs_->Read(opened->fh, 0, buf) != 5) ++failures;
        (void)vfs_->Release(opened->fh);
        vfs_->Forget(ino, 1);
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(vfs_->open_handles(), 0u);
}

}  // namespace
}  // namespace hfvfs::kernel
