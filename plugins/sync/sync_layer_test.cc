#include "sync_layer.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <random>
#include <thread>

#include "fake_lower.h"

namespace hfvfs::sync {
namespace {

using namespace std::chrono_literals;
using testing::FakeHost;
using testing::MemLower;

std::span<const std::byte> Bytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

std::string ReadAll(File& f, size_t max = 1 << 20) {
  std::string out(max, '\0');
  auto n = f.read(0, std::as_writable_bytes(std::span(out.data(), out.size())));
  EXPECT_TRUE(n.ok());
  out.resize(n.ok() ? *n : 0);
  return out;
}

std::string ReadPath(Layer& l, const std::string& path) {
  auto f = l.open(path, O_RDONLY);
  EXPECT_TRUE(f.ok()) << path << ": " << (f.ok() ? "" : f.error().message());
  if (!f.ok()) return "<error>";
  std::string s = ReadAll(**f);
  (void)(*f)->close();
  return s;
}

int64_t Counter(const Layer& l, const std::string& name) {
  std::vector<std::pair<std::string, int64_t>> c;
  l.counters(c);
  for (auto& [k, v] : c)
    if (k == name) return v;
  ADD_FAILURE() << "no counter " << name;
  return -1;
}

template <typename Pred>
bool WaitFor(Pred pred, std::chrono::milliseconds limit = 5s) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return pred();
}

class SyncLayerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    staging_ = std::filesystem::temp_directory_path() /
               ("sync_test_" + std::to_string(::getpid()) + "_" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(staging_);
    lower_ = std::make_shared<MemLower>();
    opt_.staging_dir = staging_.string();
    opt_.poll_interval = 1h;   // tests poll by hand (PollNow)
    opt_.flush_debounce = 1h;  // tests flush by hand unless they test timing
    opt_.flush_max_window = 2h;
    opt_.retry_initial = 20ms;
    opt_.metadata_ttl = 0ms;
  }
  void TearDown() override {
    if (layer_) {
      host_.shutting = true;
      (void)layer_->shutdown(std::chrono::steady_clock::now() + 5s);
      layer_.reset();
    }
    std::filesystem::remove_all(staging_);
  }
  SyncLayer& Make() {
    layer_ = std::make_unique<SyncLayer>(lower_, host_, opt_);
    Status st = layer_->start();
    EXPECT_TRUE(st.ok()) << st.error().message();
    return *layer_;
  }
  std::unique_ptr<File> CreateWith(const std::string& path, const std::string& data) {
    auto f = layer_->create(path, 0644, O_WRONLY | O_CREAT);
    EXPECT_TRUE(f.ok()) << (f.ok() ? "" : f.error().message());
    if (!data.empty()) {
      EXPECT_TRUE((*f)->write(0, Bytes(data)).ok());
    }
    return std::move(*f);
  }

  std::filesystem::path staging_;
  std::shared_ptr<MemLower> lower_;
  FakeHost host_;
  SyncOptions opt_;
  std::unique_ptr<SyncLayer> layer_;
};

TEST_F(SyncLayerTest, RandomWritesReachASequentialOnlyLower) {
  SyncLayer& l = Make();
  auto f = CreateWith("a.bin", "");
  ASSERT_TRUE(f->write(10, Bytes("world")).ok());  // a hole first, then fill it
  ASSERT_TRUE(f->write(0, Bytes("hello, ___")).ok());
  ASSERT_TRUE(f->write(7, Bytes("big")).ok());
  ASSERT_TRUE(f->flush().ok());
  ASSERT_TRUE(f->close().ok());
  EXPECT_EQ(lower_->commits.load(), 0);  // write-back: nothing below yet
  auto st = l.stat("a.bin");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->size, 15u);
  EXPECT_EQ(Counter(l, "dirty_files"), 1);
  EXPECT_EQ(Counter(l, "dirty_bytes"), 15);
  ASSERT_TRUE(l.FlushAllNow().ok());
  EXPECT_EQ(lower_->Data("a.bin"), "hello, bigworld");
  EXPECT_EQ(lower_->commits.load(), 1);
  EXPECT_EQ(Counter(l, "dirty_files"), 0);
  EXPECT_EQ(Counter(l, "staged_files"), 0);  // clean and closed: the staging copy is gone
  EXPECT_EQ(ReadPath(l, "a.bin"), "hello, bigworld");
}

TEST_F(SyncLayerTest, ExistingFileIsFetchedThenPatchedInPlace) {
  lower_->PutRemote("doc.txt", "hello world");
  SyncLayer& l = Make();
  auto f = l.open("doc.txt", O_RDWR);
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->write(6, Bytes("WORLD")).ok());
  EXPECT_EQ(ReadAll(**f), "hello WORLD");
  ASSERT_TRUE((*f)->write(11, Bytes("!")).ok());  // append
  ASSERT_TRUE((*f)->close().ok());
  EXPECT_EQ(lower_->Data("doc.txt"), "hello world");
  ASSERT_TRUE(l.FlushAllNow().ok());
  EXPECT_EQ(lower_->Data("doc.txt"), "hello WORLD!");
  EXPECT_EQ(Counter(l, "conflicts"), 0);
}

TEST_F(SyncLayerTest, OpenWithTruncDoesNotFetchAndTruncateViaSetattr) {
  lower_->PutRemote("t.txt", "abcdef");
  SyncLayer& l = Make();
  SetAttr sa;
  sa.set_size = true;
  sa.size = 3;
  ASSERT_TRUE(l.setattr("t.txt", sa).ok());
  EXPECT_EQ(l.stat("t.txt")->size, 3u);
  EXPECT_EQ(Counter(l, "dirty_files"), 1);  // truncate(2) is journaled: accepted
  ASSERT_TRUE(l.FlushAllNow().ok());
  EXPECT_EQ(lower_->Data("t.txt"), "abc");
  auto f = l.open("t.txt", O_WRONLY | O_TRUNC);
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->write(0, Bytes("xy")).ok());
  ASSERT_TRUE((*f)->close().ok());
  ASSERT_TRUE(l.FlushAllNow().ok());
  EXPECT_EQ(lower_->Data("t.txt"), "xy");
}

TEST_F(SyncLayerTest, UploadWaitsForTheDebounceAfterClose) {
  opt_.flush_debounce = 300ms;
  opt_.flush_max_window = 10s;
  SyncLayer& l = Make();
  auto start = std::chrono::steady_clock::now();
  auto f = CreateWith("d.txt", "data");
  ASSERT_TRUE(f->close().ok());
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(lower_->commits.load(), 0);
  ASSERT_TRUE(WaitFor([&] { return lower_->Data("d.txt") == "data"; }));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 300ms);
  EXPECT_TRUE(WaitFor([&] { return Counter(l, "dirty_files") == 0; }));
}

TEST_F(SyncLayerTest, MaxWindowUploadsAFileThatIsNeverClosed) {
  opt_.flush_debounce = 1h;
  opt_.flush_max_window = 300ms;
  Make();
  auto f = CreateWith("open.log", "line1\n");
  ASSERT_TRUE(f->flush().ok());
  ASSERT_TRUE(f->write(6, Bytes("line2\n")).ok());
  // Still open, still being written: the window forces an upload anyway.
  ASSERT_TRUE(WaitFor([&] { return lower_->Data("open.log") == "line1\nline2\n"; }, 3s));
  ASSERT_TRUE(f->close().ok());
}

TEST_F(SyncLayerTest, FsyncUploadsBeforeReturning) {
  SyncLayer& l = Make();
  auto f = CreateWith("db", "page");
  ASSERT_TRUE(f->fsync(false).ok());
  EXPECT_EQ(lower_->Data("db"), "page");
  ASSERT_TRUE(f->write(4, Bytes("2")).ok());
  ASSERT_TRUE(f->fsync(true).ok());
  EXPECT_EQ(lower_->Data("db"), "page2");
  ASSERT_TRUE(f->close().ok());
  EXPECT_EQ(Counter(l, "dirty_files"), 0);
}

TEST_F(SyncLayerTest, FsyncReportsAFailedUploadAndTheDataStaysStaged) {
  SyncLayer& l = Make();
  auto f = CreateWith("x", "keep me");
  lower_->unreachable = true;
  Status st = f->fsync(false);
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(st.code(), EIO);
  EXPECT_EQ(ReadAll(*f), "keep me");
  EXPECT_GE(Counter(l, "upload_retries"), 1);
  EXPECT_EQ(Counter(l, "last_error_errno"), EIO);
  lower_->unreachable = false;
  ASSERT_TRUE(f->close().ok());
  ASSERT_TRUE(l.FlushAllNow().ok());
  EXPECT_EQ(lower_->Data("x"), "keep me");
}

TEST_F(SyncLayerTest, FailedUploadsAreRetriedWithBackoff) {
  opt_.flush_debounce = 10ms;
  SyncLayer& l = Make();
  lower_->fail_uploads = 3;
  auto f = CreateWith("r", "retry");
  ASSERT_TRUE(f->close().ok());
  ASSERT_TRUE(WaitFor([&] { return lower_->Data("r") == "retry"; }));
  EXPECT_EQ(Counter(l, "upload_retries"), 3);
  EXPECT_EQ(lower_->creates.load(), 4);
}

TEST_F(SyncLayerTest, RenameOfAStagedFileIsLocalAndTheOldNameIsRemovedBelow) {
  lower_->PutRemote("old.txt", "v1");
  SyncLayer& l = Make();
  auto f = l.open("old.txt", O_RDWR);
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->write(0, Bytes("v2")).ok());
  ASSERT_TRUE((*f)->close().ok());
  ASSERT_TRUE(l.rename("old.txt", "new.txt", false).ok());  // MemLower has no rename
  EXPECT_FALSE(lower_->Has("old.txt"));
  EXPECT_EQ(l.stat("old.txt").code(), ENOENT);
  EXPECT_EQ(ReadPath(l, "new.txt"), "v2");
  ASSERT_TRUE(l.FlushAllNow().ok());
  EXPECT_EQ(lower_->Data("new.txt"), "v2");
  EXPECT_FALSE(lower_->Has("old.txt"));
}

TEST_F(SyncLayerTest, RenameOfACleanFileWorksWithoutRenameBelow) {
  lower_->PutRemote("a", "content");
  lower_->PutRemote("b", "replaced");
  SyncLayer& l = Make();
  EXPECT_EQ(l.rename("a", "b", true).code(), EEXIST);
  ASSERT_TRUE(l.rename("a", "b", false).ok());
  ASSERT_TRUE(l.FlushAllNow().ok());
  EXPECT_FALSE(lower_->Has("a"));
  EXPECT_EQ(lower_->Data("b"), "content");
  EXPECT_EQ(Counter(l, "conflicts"), 0);  // replacing b is not a conflict
}

TEST_F(SyncLayerTest, RenameBelowWhenTheLowerCanRename) {
  lower_->can_rename = true;
  lower_->PutRemote("a", "content");
  SyncLayer& l = Make();
  ASSERT_TRUE(l.rename("a", "c", false).ok());
  EXPECT_EQ(lower_->creates.load(), 0);  // no copy through staging
  EXPECT_EQ(lower_->Data("c"), "content");
}

TEST_F(SyncLayerTest, UnlinkOfADirtyNewFileNeverReachesTheLower) {
  SyncLayer& l = Make();
  auto f = CreateWith("tmp", "scratch");
  ASSERT_TRUE(f->close().ok());
  ASSERT_TRUE(l.remove("tmp").ok());
  EXPECT_EQ(l.stat("tmp").code(), ENOENT);
  ASSERT_TRUE(l.FlushAllNow().ok());
  EXPECT_FALSE(lower_->Has("tmp"));
  EXPECT_EQ(lower_->creates.load(), 0);
}

TEST_F(SyncLayerTest, UnlinkWhileOpenKeepsTheHandleWorking) {
  SyncLayer& l = Make();
  auto f = CreateWith("held", "abc");
  ASSERT_TRUE(l.remove("held").ok());
  ASSERT_TRUE(f->write(3, Bytes("def")).ok());
  EXPECT_EQ(ReadAll(*f), "abcdef");
  ASSERT_TRUE(f->close().ok());
  ASSERT_TRUE(l.FlushAllNow().ok());
  EXPECT_FALSE(lower_->Has("held"));
  EXPECT_TRUE(std::filesystem::is_empty(staging_ / "test-mount" / "data"));
}

TEST_F(SyncLayerTest, FailedRemoveBelowIsJournaledAndRetried) {
  lower_->PutRemote("gone", "x");
  opt_.flush_debounce = 10ms;
  SyncLayer& l = Make();
  auto f = l.open("gone", O_RDWR);  // staged, so the unlink is accepted locally
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->close().ok());
  auto g = l.open("gone", O_RDWR);
  ASSERT_TRUE((*g)->write(0, Bytes("y")).ok());
  ASSERT_TRUE((*g)->close().ok());
  lower_->unreachable = true;
  Status removed = l.remove("gone");
  ASSERT_TRUE(removed.ok()) << removed.error().message();
  EXPECT_EQ(l.stat("gone").code(), ENOENT);
  EXPECT_EQ(Counter(l, "pending_removes"), 1);
  lower_->unreachable = false;
  ASSERT_TRUE(WaitFor([&] { return !lower_->Has("gone"); }));
  EXPECT_TRUE(WaitFor([&] { return Counter(l, "pending_removes") == 0; }));
}

TEST_F(SyncLayerTest, ListShowsStagedFilesWithTheirLocalSize) {
  lower_->PutRemote("below", "1234");
  ASSERT_TRUE(lower_->mkdir("sub", 0755).ok());
  SyncLayer& l = Make();
  auto f = CreateWith("sub/new", "123456789");
  auto g = l.open("below", O_RDWR);
  ASSERT_TRUE((*g)->write(4, Bytes("5")).ok());
  auto root = l.list("");
  ASSERT_TRUE(root.ok());
  std::map<std::string, uint64_t> sizes;
  for (auto& de : *root) sizes[de.name] = de.attr.size;
  EXPECT_EQ(sizes["below"], 5u);
  EXPECT_EQ(sizes.size(), 2u);
  auto sub = l.list("sub");
  ASSERT_TRUE(sub.ok());
  ASSERT_EQ(sub->size(), 1u);
  EXPECT_EQ((*sub)[0].name, "new");
  EXPECT_EQ((*sub)[0].attr.size, 9u);
  EXPECT_EQ(l.rmdir("sub").code(), ENOTEMPTY);
  ASSERT_TRUE(f->close().ok());
  ASSERT_TRUE((*g)->close().ok());
  // The version of a dirty file moves with every change (caches above key on it).
  std::string v1 = l.stat("below")->version;
  auto h = l.open("below", O_RDWR);
  ASSERT_TRUE((*h)->write(0, Bytes("0")).ok());
  EXPECT_NE(l.stat("below")->version, v1);
  ASSERT_TRUE((*h)->close().ok());
}

TEST_F(SyncLayerTest, AFreshListingAnswersLookupsOfNewNamesWithoutAskingBelow) {
  opt_.metadata_ttl = 10s;
  lower_->PutRemote("known", "k");
  SyncLayer& l = Make();
  ASSERT_TRUE(l.mkdir("out", 0755).ok());
  ASSERT_TRUE(l.list("").ok());
  int before = lower_->stats.load();
  for (int i = 0; i < 50; ++i) {
    std::string p = "out/f" + std::to_string(i);
    EXPECT_EQ(l.stat(p).code(), ENOENT);  // the kernel's lookup before create
    auto f = CreateWith(p, "x");
    ASSERT_TRUE(f->close().ok());
  }
  EXPECT_EQ(l.stat("known")->size, 1u);
  EXPECT_EQ(l.stat("nope").code(), ENOENT);
  EXPECT_EQ(lower_->stats.load() - before, 0);
  EXPECT_GT(Counter(l, "listing_hits"), 100);
  // After the upload the name is asked below again (its version changed there).
  ASSERT_TRUE(l.FlushAllNow().ok());
  EXPECT_EQ(l.stat("out/f0")->version.substr(0, 1), "v");
  // Within the TTL a remote addition in a listed folder is not seen; after it, it is.
  lower_->PutRemote("late", "1");
  EXPECT_EQ(l.stat("late").code(), ENOENT);
}

TEST_F(SyncLayerTest, PollReportsRemoteChangesUpAndToTheKernel) {
  SyncLayer& l = Make();
  lower_->PutRemote("keep", "1");
  lower_->PutRemote("mod", "1");
  lower_->PutRemote("del", "1");
  ASSERT_TRUE(l.list("").ok());  // the mount has seen ""
  ASSERT_TRUE(l.PollNow().ok());
  ASSERT_TRUE(l.changes()->changes.empty());
  lower_->PutRemote("mod", "2");
  lower_->PutRemote("add", "1");
  lower_->RemoveRemote("del");
  ASSERT_TRUE(l.PollNow().ok());
  auto c = l.changes();
  ASSERT_TRUE(c.ok());
  std::map<std::string, Change::Kind> got;
  for (auto& ch : c->changes) got[ch.path] = ch.kind;
  EXPECT_EQ(got.size(), 3u);
  EXPECT_EQ(got["mod"], Change::Kind::kModified);
  EXPECT_EQ(got["add"], Change::Kind::kAdded);
  EXPECT_EQ(got["del"], Change::Kind::kRemoved);
  EXPECT_TRUE(host_.Saw("mod", Invalidation::kContent));
  EXPECT_TRUE(host_.Saw("add", Invalidation::kEntry));
  EXPECT_TRUE(host_.Saw("del", Invalidation::kEntry));
  EXPECT_TRUE(host_.Saw("", Invalidation::kChildren));
  EXPECT_FALSE(host_.Saw("keep", Invalidation::kContent));
  EXPECT_EQ(Counter(l, "remote_changes"), 3);
  // Taken once: the next call has nothing.
  EXPECT_TRUE(l.changes()->changes.empty());
}

TEST_F(SyncLayerTest, PollProbesFirstAndReListsOnlyWhenTheRevisionMoved) {
  SyncLayer& l = Make();
  ASSERT_TRUE(l.list("").ok());
  ASSERT_TRUE(l.PollNow().ok());  // the first probe establishes the revision
  int lists = lower_->lists.load();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(l.PollNow().ok());
  EXPECT_EQ(lower_->lists.load(), lists);  // probe only
  EXPECT_EQ(lower_->probes.load(), 6);
  lower_->PutRemote("n", "1");
  ASSERT_TRUE(l.PollNow().ok());
  EXPECT_EQ(lower_->lists.load(), lists + 1);  // one listed directory, re-listed once
  EXPECT_EQ(l.changes()->changes.size(), 1u);
}

TEST_F(SyncLayerTest, OwnUploadsAreNotReportedAsRemoteChanges) {
  SyncLayer& l = Make();
  ASSERT_TRUE(l.list("").ok());
  auto f = CreateWith("mine", "x");
  ASSERT_TRUE(f->close().ok());
  ASSERT_TRUE(l.FlushAllNow().ok());
  lower_->PutRemote("theirs", "y");  // moves the revision so the poll re-lists
  ASSERT_TRUE(l.PollNow().ok());
  auto c = l.changes();
  ASSERT_EQ(c->changes.size(), 1u);
  EXPECT_EQ(c->changes[0].path, "theirs");
}

TEST_F(SyncLayerTest, APollFailureReportsNoDeletion) {
  SyncLayer& l = Make();
  lower_->PutRemote("f", "1");
  ASSERT_TRUE(l.list("").ok());
  lower_->RemoveRemote("f");
  lower_->unreachable = true;
  EXPECT_FALSE(l.PollNow().ok());
  EXPECT_TRUE(l.changes()->changes.empty());
  lower_->unreachable = false;
  ASSERT_TRUE(l.PollNow().ok());
  auto c = l.changes();
  ASSERT_EQ(c->changes.size(), 1u);
  EXPECT_EQ(c->changes[0].kind, Change::Kind::kRemoved);
}

TEST_F(SyncLayerTest, BackgroundPollerDeliversWithinTheInterval) {
  opt_.poll_interval = 100ms;
  SyncLayer& l = Make();
  ASSERT_TRUE(l.list("").ok());
  std::this_thread::sleep_for(150ms);  // one poll establishes the revision
  lower_->PutRemote("late", "1");
  EXPECT_TRUE(WaitFor([&] { return host_.Saw("late", Invalidation::kEntry); }, 2s));
}

TEST_F(SyncLayerTest, KeptCopiesAreEvictedLeastRecentlyUsedFirst) {
  opt_.max_staging_size = 25;
  SyncLayer& l = Make();
  for (const char* name : {"a", "b"}) {
    auto f = CreateWith(name, std::string(10, name[0]));
    ASSERT_TRUE(f->close().ok());
  }
  ASSERT_TRUE(l.FlushAllNow().ok());
  EXPECT_EQ(lower_->Data("a"), std::string(10, 'a'));
  // Uploaded and closed, 20 bytes <= 25: both stay as local copies.
  EXPECT_TRUE(WaitFor([&] { return Counter(l, "staged_files") == 2; }));
  EXPECT_EQ(Counter(l, "staged_bytes"), 20);
  // Reopened for writing, a kept copy is not fetched again; reading uses it too.
  auto fa = l.open("a", O_RDWR);
  ASSERT_TRUE(fa.ok());
  EXPECT_EQ(ReadAll(**fa), std::string(10, 'a'));
  ASSERT_TRUE((*fa)->close().ok());
  EXPECT_EQ(lower_->read_opens.load(), 0);
  // `a` was used last: a third file beyond the bound evicts `b`.
  auto fc = CreateWith("c", std::string(10, 'c'));
  ASSERT_TRUE(fc->close().ok());
  ASSERT_TRUE(l.FlushAllNow().ok());
  EXPECT_TRUE(WaitFor([&] { return Counter(l, "evictions") == 1; }));
  EXPECT_EQ(Counter(l, "staged_files"), 2);
  EXPECT_EQ(Counter(l, "staged_bytes"), 20);
  EXPECT_EQ(ReadPath(l, "b"), std::string(10, 'b'));  // from below now
  EXPECT_EQ(lower_->read_opens.load(), 1);
  EXPECT_EQ(ReadPath(l, "a"), std::string(10, 'a'));  // still kept
  EXPECT_EQ(lower_->read_opens.load(), 1);
  size_t files = 0;
  for (auto& d : std::filesystem::recursive_directory_iterator(staging_)) {
    if (d.path().parent_path().filename() == "data") ++files;
  }
  EXPECT_EQ(files, 2u);
}

TEST_F(SyncLayerTest, DirtyAndOpenFilesAreNeverEvicted) {
  opt_.max_staging_size = 5;
  SyncLayer& l = Make();
  auto f = CreateWith("big", std::string(100, 'x'));
  ASSERT_TRUE(f->flush().ok());
  auto g = CreateWith("other", std::string(100, 'y'));
  ASSERT_TRUE(g->close().ok());
  EXPECT_EQ(Counter(l, "staged_files"), 2);  // dirty: over the bound, but kept
  ASSERT_TRUE(l.FlushAllNow().ok());
  // `other` is clean and closed: evicted; `big` is clean but open: kept until its close.
  EXPECT_TRUE(WaitFor([&] { return Counter(l, "staged_files") == 1; }));
  EXPECT_EQ(ReadAll(*f), std::string(100, 'x'));
  ASSERT_TRUE(f->close().ok());
  EXPECT_EQ(Counter(l, "staged_files"), 0);
  EXPECT_EQ(Counter(l, "evictions"), 2);
  EXPECT_EQ(lower_->Data("big"), std::string(100, 'x'));
}

TEST_F(SyncLayerTest, AKeptCopyChangedBelowIsDroppedAtTheNextOpen) {
  opt_.max_staging_size = 1 << 20;
  SyncLayer& l = Make();
  auto f = CreateWith("cfg", "mine");
  ASSERT_TRUE(f->close().ok());
  ASSERT_TRUE(l.FlushAllNow().ok());
  EXPECT_TRUE(WaitFor([&] { return Counter(l, "staged_files") == 1; }));
  EXPECT_EQ(ReadPath(l, "cfg"), "mine");
  lower_->PutRemote("cfg", "theirs, longer");  // no poll: found by the open's stat below
  EXPECT_EQ(ReadPath(l, "cfg"), "theirs, longer");
  EXPECT_EQ(l.stat("cfg")->size, 14u);
  EXPECT_EQ(Counter(l, "staged_files"), 0);
  // Written again, kept again; a poll that sees a remote change drops it and reports it.
  auto g = l.open("cfg", O_WRONLY | O_TRUNC);
  ASSERT_TRUE(g.ok());
  ASSERT_TRUE((*g)->write(0, Bytes("v3")).ok());
  ASSERT_TRUE((*g)->close().ok());
  ASSERT_TRUE(l.FlushAllNow().ok());
  EXPECT_TRUE(WaitFor([&] { return Counter(l, "staged_files") == 1; }));
  ASSERT_TRUE(l.list("").ok());
  ASSERT_TRUE(l.PollNow().ok());
  lower_->PutRemote("cfg", "v4 from elsewhere");
  ASSERT_TRUE(l.PollNow().ok());
  EXPECT_EQ(Counter(l, "staged_files"), 0);
  EXPECT_TRUE(host_.Saw("cfg", Invalidation::kContent));
  EXPECT_EQ(ReadPath(l, "cfg"), "v4 from elsewhere");
}

TEST_F(SyncLayerTest, KeptCopiesDoNotBlockRmdirOrRename) {
  opt_.max_staging_size = 1 << 20;
  lower_->can_rename = true;
  SyncLayer& l = Make();
  ASSERT_TRUE(l.mkdir("d", 0755).ok());
  auto f = CreateWith("d/x", "x");
  ASSERT_TRUE(f->close().ok());
  auto g = CreateWith("y", "y");
  ASSERT_TRUE(g->close().ok());
  ASSERT_TRUE(l.FlushAllNow().ok());
  EXPECT_TRUE(WaitFor([&] { return Counter(l, "staged_files") == 2; }));
  int creates = lower_->creates.load();
  ASSERT_TRUE(l.rename("y", "z", false).ok());  // the lower renames: nothing uploaded again
  EXPECT_EQ(lower_->creates.load(), creates);
  EXPECT_EQ(lower_->Data("z"), "y");
  ASSERT_TRUE(l.remove("d/x").ok());
  EXPECT_FALSE(lower_->Has("d/x"));
  ASSERT_TRUE(l.rmdir("d").ok());
  EXPECT_EQ(Counter(l, "staged_files"), 0);
}

std::string Pattern(size_t size) {
  std::string s(size, '\0');
  for (size_t i = 0; i < size; ++i) s[i] = static_cast<char>('a' + (i / 4096 + i) % 26);
  return s;
}

TEST_F(SyncLayerTest, OpeningABigFileForWritingDoesNotWaitForItsContent) {
  const size_t size = 8 << 20;
  std::string want = Pattern(size);
  lower_->PutRemote("big.bin", want);
  opt_.upload_chunk = 64 << 10;  // 128 background reads of 20 ms: about 2.6 s for the file
  SyncLayer& l = Make();
  lower_->read_delay_ms = 20;
  auto t0 = std::chrono::steady_clock::now();
  auto f = l.open("big.bin", O_RDWR);
  ASSERT_TRUE(f.ok()) << f.error().message();
  EXPECT_EQ(l.stat("big.bin")->size, size);
  ASSERT_TRUE((*f)->write(100, Bytes("patched")).ok());
  want.replace(100, 7, "patched");
  ASSERT_TRUE((*f)->write(size - 3, Bytes("tail+")).ok());  // also extends it by 2 bytes
  want.replace(size - 3, 3, "tail+");
  // A read far ahead of the background fetch fetches its own range.
  std::string got(4096, '\0');
  auto n = (*f)->read(6 << 20, std::as_writable_bytes(std::span(got.data(), got.size())));
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(got, want.substr(6 << 20, 4096));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1500ms);
  EXPECT_LT(lower_->bytes_read.load(), static_cast<int64_t>(size / 2));
  EXPECT_EQ(Counter(l, "fills_in_flight"), 1);
  // close() waits for the rest: only complete content is journaled.
  lower_->read_delay_ms = 1;
  ASSERT_TRUE((*f)->close().ok());
  EXPECT_TRUE(WaitFor([&] { return Counter(l, "fills_in_flight") == 0; }));  // thread exits
  EXPECT_EQ(Counter(l, "dirty_files"), 1);
  ASSERT_TRUE(l.FlushAllNow().ok());
  EXPECT_TRUE(lower_->Data("big.bin") == want);
  // Each byte came from below at most about once (own-range reads may overlap the fetcher's).
  EXPECT_LT(lower_->bytes_read.load(), static_cast<int64_t>(size + (1 << 20)));
}

TEST_F(SyncLayerTest, WritesAndTruncationDuringTheFetchAreNotOverwritten) {
  const size_t size = 2 << 20;
  std::string want = Pattern(size);
  lower_->PutRemote("f", want);
  opt_.upload_chunk = 16 << 10;
  SyncLayer& l = Make();
  lower_->read_delay_ms = 2;
  auto f = l.open("f", O_RDWR);
  ASSERT_TRUE(f.ok());
  std::mt19937 rng(7);
  for (int i = 0; i < 200; ++i) {
    size_t off = rng() % size, len = 1 + rng() % 5000;
    std::string data(len, static_cast<char>('A' + i % 26));
    ASSERT_TRUE((*f)->write(off, Bytes(data)).ok());
    if (want.size() < off + len) want.resize(off + len, '\0');
    want.replace(off, len, data);
  }
  ASSERT_TRUE((*f)->truncate(1 << 20).ok());
  want.resize(1 << 20);
  ASSERT_TRUE((*f)->write((3 << 20) / 2, Bytes("after a hole")).ok());
  want.resize((3 << 20) / 2, '\0');
  want += "after a hole";
  std::string got(want.size() + 10, '\0');
  auto n = (*f)->read(0, std::as_writable_bytes(std::span(got.data(), got.size())));
  ASSERT_TRUE(n.ok());
  got.resize(*n);
  EXPECT_TRUE(got == want);
  ASSERT_TRUE((*f)->close().ok());
  ASSERT_TRUE(l.FlushAllNow().ok());
  EXPECT_TRUE(lower_->Data("f") == want);
}

TEST_F(SyncLayerTest, AFailedFetchFailsTheCloseAndIsRetriedByTheUpload) {
  std::string want = Pattern(1 << 20);
  lower_->PutRemote("f", want);
  opt_.upload_chunk = 64 << 10;
  SyncLayer& l = Make();
  lower_->read_delay_ms = 50;  // the fetcher's first read is still sleeping when reads fail
  auto f = l.open("f", O_RDWR);
  ASSERT_TRUE(f.ok());
  lower_->fail_reads = true;
  ASSERT_TRUE((*f)->write(0, Bytes("new head")).ok());
  want.replace(0, 8, "new head");
  Status closed = (*f)->close();
  ASSERT_FALSE(closed.ok());
  EXPECT_EQ(closed.code(), EIO);
  EXPECT_NE(closed.error().message().find("could not be fetched"), std::string::npos);
  EXPECT_EQ(Counter(l, "dirty_files"), 1);  // still staged, retried by the uploads
  lower_->read_delay_ms = 0;
  lower_->fail_reads = false;
  ASSERT_TRUE(l.FlushAllNow().ok());
  EXPECT_TRUE(lower_->Data("f") == want);
}

TEST_F(SyncLayerTest, UnlinkDuringTheFetchStopsIt) {
  lower_->PutRemote("f", Pattern(4 << 20));
  opt_.upload_chunk = 64 << 10;
  SyncLayer& l = Make();
  lower_->read_delay_ms = 20;
  auto f = l.open("f", O_RDWR);
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE(l.remove("f").ok());
  ASSERT_TRUE((*f)->close().ok());
  EXPECT_TRUE(WaitFor([&] { return Counter(l, "fills_in_flight") == 0; }, 2s));
  EXPECT_LT(lower_->bytes_read.load(), 1 << 20);
  EXPECT_FALSE(lower_->Has("f"));
}

TEST_F(SyncLayerTest, ConcurrentClosesShareJournalSyncs) {
  SyncLayer& l = Make();
  constexpr int kThreads = 8, kEach = 25;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        std::string name = "t" + std::to_string(t) + "_" + std::to_string(i);
        auto f = layer_->create(name, 0644, O_WRONLY | O_CREAT);
        ASSERT_TRUE(f.ok());
        ASSERT_TRUE((*f)->write(0, Bytes("content of " + name)).ok());
        ASSERT_TRUE((*f)->flush().ok());  // close(2): journaled and durable on return
        ASSERT_TRUE((*f)->close().ok());  // release: nothing left to journal
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(Counter(l, "dirty_files"), kThreads * kEach);
  EXPECT_EQ(Counter(l, "journal_skips"), kThreads * kEach);
  // One record (one durable commit) per file, and commits share fdatasyncs.
  EXPECT_GE(Counter(l, "journal_syncs"), 1);
  EXPECT_LE(Counter(l, "journal_syncs"), kThreads * kEach);
  ASSERT_TRUE(l.FlushAllNow().ok());
  EXPECT_EQ(lower_->Data("t3_7"), "content of t3_7");
}

// Small files are journaled with their bytes in the record: after kill -9 the next mount
// restores them even when their staging files are gone (they are never fdatasync'd).
TEST_F(SyncLayerTest, KillNineAfterClosesOfSmallFilesNeedsNoStagingFiles) {
  std::filesystem::create_directories(staging_);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto lower = std::make_shared<MemLower>();
    FakeHost host;
    SyncLayer l(lower, host, opt_);
    if (!l.start().ok()) ::_exit(2);
    for (int i = 0; i < 20; ++i) {
      auto f = l.create("s" + std::to_string(i), 0644, O_WRONLY | O_CREAT);
      if (!f.ok()) ::_exit(3);
      if (!(*f)->write(0, Bytes("first " + std::to_string(i))).ok()) ::_exit(4);
      if (!(*f)->close().ok()) ::_exit(5);
    }
    // Rewritten after its first close: the newer record wins.
    auto g = l.open("s7", O_RDWR);
    if (!g.ok()) ::_exit(6);
    if (!(*g)->write(0, Bytes("SECOND")).ok()) ::_exit(7);
    if (!(*g)->close().ok()) ::_exit(8);
    ::kill(::getpid(), SIGKILL);
    ::_exit(9);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exit " << WEXITSTATUS(status);
  size_t removed = 0;
  for (auto& d : std::filesystem::recursive_directory_iterator(staging_)) {
    if (d.is_regular_file() && d.path().parent_path().filename() == "data") {
      std::filesystem::remove(d.path());
      ++removed;
    }
  }
  EXPECT_EQ(removed, 20u);
  SyncLayer& l = Make();
  EXPECT_EQ(Counter(l, "replayed_files"), 20);
  EXPECT_EQ(ReadPath(l, "s7"), "SECOND7");
  ASSERT_TRUE(l.FlushAllNow().ok());
  EXPECT_EQ(lower_->Data("s0"), "first 0");
  EXPECT_EQ(lower_->Data("s19"), "first 19");
  EXPECT_EQ(lower_->Data("s7"), "SECOND7");
}

TEST_F(SyncLayerTest, StatusNotesNameTheLastErrorAndItsPath) {
  SyncLayer& l = Make();
  std::vector<std::string> notes;
  l.status_notes(notes);
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_EQ(notes[0], "last error: none");
  lower_->fail_uploads = 1;
  ASSERT_TRUE(l.mkdir("models", 0755).ok());
  auto f = CreateWith("models/a.bin", "data");
  ASSERT_TRUE(f->close().ok());
  ASSERT_TRUE(l.FlushAllNow().ok());  // the first attempt fails, the retry succeeds
  notes.clear();
  l.status_notes(notes);
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("last error ("), std::string::npos) << notes[0];
  EXPECT_NE(notes[0].find("errno 5 "), std::string::npos) << notes[0];
  EXPECT_NE(notes[0].find("sync: upload 'models/a.bin'"), std::string::npos) << notes[0];
  EXPECT_NE(notes[0].find("injected upload failure"), std::string::npos) << notes[0];
  // A failed removal below is named too.
  auto g = l.open("models/a.bin", O_RDWR);  // staged again: it exists below
  ASSERT_TRUE(g.ok());
  ASSERT_TRUE((*g)->write(0, Bytes("D")).ok());
  ASSERT_TRUE((*g)->close().ok());
  lower_->unreachable = true;
  ASSERT_TRUE(l.remove("models/a.bin").ok());  // accepted, retried in the background
  EXPECT_TRUE(WaitFor([&] {
    notes.clear();
    l.status_notes(notes);
    return notes[0].find("sync: remove 'models/a.bin' below") != std::string::npos;
  })) << notes[0];
  lower_->unreachable = false;
  EXPECT_TRUE(WaitFor([&] { return !lower_->Has("models/a.bin"); }));
}

TEST_F(SyncLayerTest, ConflictLocalWinsByDefault) {
  lower_->PutRemote("c.txt", "base");
  SyncLayer& l = Make();
  auto f = l.open("c.txt", O_RDWR);
  ASSERT_TRUE((*f)->write(0, Bytes("LOCAL")).ok());
  ASSERT_TRUE((*f)->close().ok());
  lower_->PutRemote("c.txt", "remote");
  ASSERT_TRUE(l.FlushAllNow().ok());
  EXPECT_EQ(lower_->Data("c.txt"), "LOCAL");
  EXPECT_EQ(Counter(l, "conflicts"), 1);
  EXPECT_EQ(lower_->Paths().size(), 2u);  // "" and c.txt: no copy
}

TEST_F(SyncLayerTest, ConflictKeepBothKeepsTheRemoteVersionBesideIt) {
  opt_.conflict = ConflictPolicy::kKeepBoth;
  lower_->PutRemote("c.txt", "base");
  SyncLayer& l = Make();
  auto f = l.open("c.txt", O_RDWR);
  ASSERT_TRUE((*f)->write(0, Bytes("LOCAL")).ok());
  ASSERT_TRUE((*f)->close().ok());
  lower_->PutRemote("c.txt", "remote");
  ASSERT_TRUE(l.FlushAllNow().ok());
  EXPECT_EQ(lower_->Data("c.txt"), "LOCAL");
  std::string copy;
  for (auto& p : lower_->Paths())
    if (p.rfind("c.txt.conflict-", 0) == 0) copy = p;
  ASSERT_FALSE(copy.empty());
  EXPECT_EQ(lower_->Data(copy), "remote");
  EXPECT_EQ(Counter(l, "conflicts"), 1);
}

TEST_F(SyncLayerTest, ShutdownIsBoundedAndTheNextMountUploadsTheRest) {
  opt_.shutdown_timeout = 300ms;
  Make();
  auto f = CreateWith("late.bin", "pending data");
  ASSERT_TRUE(f->close().ok());
  f.reset();
  lower_->hang_uploads = true;  // the store stops answering
  host_.shutting = true;
  auto t0 = std::chrono::steady_clock::now();
  Status st = layer_->shutdown(t0 + 60s);
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_FALSE(st.ok());
  // The bound, plus the short wait for a worker stuck below before leaving it behind.
  EXPECT_LT(took, 300ms + 2s + 500ms);
  layer_.reset();
  // The stuck upload fails when the store comes back broken; the worker left behind exits.
  lower_->unreachable = true;
  lower_->ReleaseHang();
  std::this_thread::sleep_for(300ms);
  EXPECT_FALSE(lower_->Has("late.bin"));

  auto fresh = std::make_shared<MemLower>();
  lower_ = fresh;
  host_.shutting = false;
  SyncLayer& l = Make();
  EXPECT_EQ(Counter(l, "replayed_files"), 1);
  EXPECT_EQ(ReadPath(l, "late.bin"), "pending data");
  ASSERT_TRUE(WaitFor([&] { return fresh->Data("late.bin") == "pending data"; }));
}

TEST_F(SyncLayerTest, SecondMountOfTheSameStagingIsRefused) {
  Make();
  SyncLayer other(lower_, host_, opt_);
  Status st = other.start();
  EXPECT_EQ(st.code(), EBUSY);
}

// The journal survives a real SIGKILL right after close() returned: a child process writes,
// closes and kills itself; the next "mount" replays and uploads.
TEST_F(SyncLayerTest, KillNineAfterCloseLosesNothing) {
  std::filesystem::create_directories(staging_);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto lower = std::make_shared<MemLower>();
    FakeHost host;
    SyncLayer l(lower, host, opt_);
    if (!l.start().ok()) ::_exit(2);
    auto f = l.create("crash.txt", 0600, O_WRONLY | O_CREAT);
    if (!f.ok()) ::_exit(3);
    std::string big(3 << 20, 'z');
    if (!(*f)->write(0, Bytes(big)).ok()) ::_exit(4);
    if (!(*f)->write(5, Bytes("survives")).ok()) ::_exit(4);
    if (!(*f)->flush().ok()) ::_exit(5);  // close(2) returned
    ::kill(::getpid(), SIGKILL);
    ::_exit(6);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exit " << WEXITSTATUS(status);
  ASSERT_EQ(WTERMSIG(status), SIGKILL);

  SyncLayer& l = Make();
  EXPECT_EQ(Counter(l, "replayed_files"), 1);
  auto st = l.stat("crash.txt");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->size, 3u << 20);
  EXPECT_EQ(st->mode, 0600u);
  ASSERT_TRUE(WaitFor([&] { return lower_->Has("crash.txt"); }));
  std::string want(3 << 20, 'z');
  want.replace(5, 8, "survives");
  EXPECT_EQ(lower_->Data("crash.txt"), want);
}

// A seeded, repeatable model test at the layer level: random writes, truncates, reads,
// renames, unlinks, closes, fsyncs and background flushes against an in-memory model.
TEST_F(SyncLayerTest, RandomizedOperationsMatchAModel) {
  if (getenv("SYNC_SLOW_FLUSH")) {
    opt_.flush_debounce = 1h;
  } else {
    opt_.flush_debounce = 5ms;
    opt_.flush_max_window = 20ms;
  }
  SyncLayer& l = Make();
  std::mt19937 rng(12345);
  const std::vector<std::string> names = {"f0", "f1", "f2", "f3"};
  std::map<std::string, std::string> model;
  std::map<std::string, std::unique_ptr<File>> open;
  auto rnd = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  int mismatches = 0;
  std::vector<std::string> history;
  auto describe = [&](const std::string& got, const std::string& want) {
    size_t i = 0;
    while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
    std::string h;
    for (size_t k = history.size() > 40 ? history.size() - 40 : 0; k < history.size(); ++k)
      h += history[k] + "\n";
    return "got " + std::to_string(got.size()) + " bytes, want " + std::to_string(want.size()) +
           ", first difference at " + std::to_string(i) + "\n" + h;
  };
  for (int op = 0; op < 20000; ++op) {
    auto op_start = std::chrono::steady_clock::now();
    auto slow = [&] {
      auto took = std::chrono::steady_clock::now() - op_start;
      EXPECT_LT(took, 2s) << "op " << op << " took "
                          << std::chrono::duration_cast<std::chrono::milliseconds>(took).count();
    };
    const std::string& name = names[rnd(names.size())];
    int kind = rnd(10);
    bool exists = model.count(name) > 0;
    if (!open.count(name) && kind < 7) {
      auto f = exists ? l.open(name, O_RDWR) : l.create(name, 0644, O_RDWR | O_CREAT);
      ASSERT_TRUE(f.ok()) << op << " " << name << ": " << f.error().message();
      open[name] = std::move(*f);
      if (!exists) model[name] = "";
    }
    File* f = open.count(name) ? open[name].get() : nullptr;
    history.push_back(std::to_string(op) + " " + name + " kind " + std::to_string(kind) +
                      (open.count(name) ? " open" : "") + " size " +
                      std::to_string(model.count(name) ? model[name].size() : 0));
    switch (kind) {
      case 0:
      case 1:
      case 2: {  // write at a random offset
        size_t off = rnd(3000), len = 1 + rnd(500);
        std::string data(len, static_cast<char>('a' + rnd(26)));
        ASSERT_TRUE(f->write(off, Bytes(data)).ok());
        std::string& m = model[name];
        if (m.size() < off + len) m.resize(off + len, '\0');
        m.replace(off, len, data);
        break;
      }
      case 3: {  // truncate
        size_t size = rnd(3500);
        ASSERT_TRUE(f->truncate(size).ok());
        model[name].resize(size, '\0');
        break;
      }
      case 4:  // read back through the handle
        if (std::string got = ReadAll(*f); got != model[name]) {
          ++mismatches;
          ADD_FAILURE() << "op " << op << ": handle read of " << name
                        << " differs: " << describe(got, model[name])
                        << " below: " << lower_->Data(name).size()
                        << " stat: " << l.stat(name)->size << " version " << l.stat(name)->version
                        << " handle stat " << f->stat()->size << "\n"
                        << lower_->Log();
        }
        break;
      case 5:  // close
        ASSERT_TRUE(f->flush().ok());
        ASSERT_TRUE(f->close().ok());
        open.erase(name);
        break;
      case 6:
        if (rnd(4) == 0) {
          ASSERT_TRUE(f->fsync(false).ok());
        }
        break;
      case 7: {  // rename onto another name (replacing it)
        if (!exists) break;
        const std::string& to = names[rnd(names.size())];
        if (to == name || open.count(to)) break;
        Status st = l.rename(name, to, false);
        ASSERT_TRUE(st.ok()) << op << ": " << st.error().message();
        model[to] = model[name];
        model.erase(name);
        if (open.count(name)) {
          open[to] = std::move(open[name]);
          open.erase(name);
        }
        break;
      }
      case 8:  // unlink (not while open, to keep the model simple)
        if (exists && !open.count(name)) {
          Status st = l.remove(name);
          ASSERT_TRUE(st.ok()) << op << ": " << st.error().message();
          model.erase(name);
        }
        break;
      case 9:  // read through a fresh open of the layer
        if (exists && !open.count(name)) {
          std::string got = ReadPath(l, name);
          if (got != model[name]) {
            ++mismatches;
            ADD_FAILURE() << "op " << op << ": fresh read of " << name
                          << " differs: " << describe(got, model[name])
                          << " below: " << lower_->Data(name).size()
                          << " stat: " << l.stat(name)->size << " version "
                          << l.stat(name)->version;
          }
        }
        break;
    }
    slow();
  }
  for (auto& [n, f] : open) {
    ASSERT_TRUE(f->flush().ok());
    ASSERT_TRUE(f->close().ok());
  }
  open.clear();
  EXPECT_EQ(mismatches, 0);
  ASSERT_TRUE(l.FlushAllNow().ok());
  for (const std::string& n : names) {
    if (model.count(n)) {
      EXPECT_EQ(lower_->Data(n), model[n]) << n;
    } else {
      EXPECT_FALSE(lower_->Has(n)) << n;
    }
  }
  EXPECT_EQ(Counter(l, "dirty_files"), 0);
  EXPECT_EQ(Counter(l, "conflicts"), 0);       // no false conflicts from our own uploads
  EXPECT_GT(Counter(l, "uploads_done"), 100);  // background uploads raced the operations
}

}  // namespace
}  // namespace hfvfs::sync
