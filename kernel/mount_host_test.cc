#include "mount_host.h"

#include <fcntl.h>
#include <gtest/gtest.h>

#include <condition_variable>
#include <thread>

#include "mem_fs.h"
#include "vfs.h"

namespace hfvfs::kernel {
namespace {

using namespace std::chrono_literals;

// Records notifications and the thread they came from.
class RecordingNotifier final : public KernelNotifier {
 public:
  struct Call {
    std::string kind;
    uint64_t ino;
    int64_t offset;
    std::string name;
    std::thread::id thread;
  };
  int InvalidateInode(uint64_t ino, int64_t offset, int64_t) override {
    Record({"inode", ino, offset, "", std::this_thread::get_id()});
    return 0;
  }
  int InvalidateEntry(uint64_t parent, std::string_view name) override {
    Record({"entry", parent, 0, std::string(name), std::this_thread::get_id()});
    return 0;
  }
  // Waits until `count` calls have been recorded.
  std::vector<Call> WaitFor(size_t count) {
    std::unique_lock lock(mutex_);
    cv_.wait_for(lock, 5s, [&] { return calls_.size() >= count; });
    return calls_;
  }

 private:
  void Record(Call call) {
    std::lock_guard lock(mutex_);
    calls_.push_back(std::move(call));
    cv_.notify_all();
  }
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<Call> calls_;
};

class MountHostTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs_ = std::make_shared<hfvfs::testing::MemFs>();
    fs_->Put("d/f.txt", "x");
    vfs_ = std::make_unique<Vfs>(fs_, VfsOptions{});
    host_.Attach(vfs_.get(), &notifier_);
    dir_ = vfs_->Lookup(kRootInode, "d")->ino;
    file_ = vfs_->Lookup(dir_, "f.txt")->ino;
  }

  std::shared_ptr<hfvfs::testing::MemFs> fs_;
  std::unique_ptr<Vfs> vfs_;
  RecordingNotifier notifier_;
  MountHost host_{"test-mount"};
  uint64_t dir_ = 0, file_ = 0;
};

TEST_F(MountHostTest, ContentInvalidationIsFullForClosedFilesAndAttrOnlyForOpenOnes) {
  host_.invalidate("d/f.txt", Invalidation::kContent);
  auto calls = notifier_.WaitFor(1);
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].kind, "inode");
  EXPECT_EQ(calls[0].ino, file_);
  EXPECT_EQ(calls[0].offset, 0) << "pages and attributes";
  EXPECT_NE(calls[0].thread, std::this_thread::get_id()) << "delivered by the host's thread";

  auto opened = vfs_->Open(file_, O_RDONLY);
  ASSERT_TRUE(opened.ok());
  host_.invalidate("d/f.txt", Invalidation::kContent);
  calls = notifier_.WaitFor(2);
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[1].offset, -1) << "attributes only while the file is open";
  (void)vfs_->Release(opened->fh);
}

TEST_F(MountHostTest, EntryInvalidationNamesTheParentAndTheName) {
  host_.invalidate("d/f.txt", Invalidation::kEntry);
  auto calls = notifier_.WaitFor(2);
  ASSERT_GE(calls.size(), 1u);
  EXPECT_EQ(calls[0].kind, "entry");
  EXPECT_EQ(calls[0].ino, dir_);
  EXPECT_EQ(calls[0].name, "f.txt");
  host_.invalidate("nowhere/x", Invalidation::kEntry);  // unknown parent: nothing to say
  host_.invalidate("d", Invalidation::kChildren);
  calls = notifier_.WaitFor(3);
  EXPECT_EQ(calls.back().kind, "inode");
  EXPECT_EQ(calls.back().ino, dir_);
}

TEST_F(MountHostTest, InvalidateDropsTheVfsCachesAtOnce) {
  ASSERT_TRUE(vfs_->GetAttr(file_).ok());
  int stats = fs_->stat_calls;
  ASSERT_TRUE(vfs_->GetAttr(file_).ok());
  EXPECT_EQ(fs_->stat_calls, stats) << "cached";
  fs_->Put("d/f.txt", "longer content");
  host_.invalidate("d/f.txt", Invalidation::kContent);
  EXPECT_EQ(vfs_->GetAttr(file_)->attr.st_size, 14) << "no need to wait for the thread";
}

TEST_F(MountHostTest, NothingIsSentOnceShutdownBegins) {
  EXPECT_FALSE(host_.shutting_down());
  host_.BeginShutdown();
  EXPECT_TRUE(host_.shutting_down());
  host_.invalidate("d/f.txt", Invalidation::kContent);
  std::this_thread::sleep_for(50ms);
  EXPECT_TRUE(notifier_.WaitFor(0).empty());
  EXPECT_EQ(host_.stats().dropped, 1u);
  EXPECT_EQ(host_.mount_id(), "test-mount");
}

TEST(MountHostDetachedTest, CallsBeforeAttachAreDropped) {
  MountHost host("id");
  host.invalidate("x", Invalidation::kEntry);
  EXPECT_EQ(host.stats().dropped, 1u);
  EXPECT_EQ(host.stats().queued, 0u);
}

}  // namespace
}  // namespace hfvfs::kernel
