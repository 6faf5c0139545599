#include "overlay_layer.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <future>
#include <random>
#include <set>
#include <thread>

#include "mem_layer.h"

namespace hfvfs::overlay {
namespace {

namespace fs = std::filesystem;

std::string ReadDisk(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteDisk(const fs::path& p, const std::string& s) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << s;
}

std::string ReadAll(Layer& layer, std::string_view path) {
  auto f = layer.open(path, O_RDONLY);
  EXPECT_TRUE(f) << (f ? "" : f.error().message());
  if (!f) return "<error>";
  std::string out;
  std::vector<std::byte> buf(1 << 16);
  for (uint64_t off = 0;;) {
    auto n = (*f)->read(off, buf);
    EXPECT_TRUE(n);
    if (!n || *n == 0) break;
    out.append(reinterpret_cast<const char*>(buf.data()), *n);
    off += *n;
  }
  EXPECT_TRUE((*f)->close());
  return out;
}

Status WriteAt(File& f, uint64_t off, std::string_view s) {
  auto n = f.write(off, std::as_bytes(std::span(s.data(), s.size())));
  if (!n) return n.error();
  return Ok();
}

std::set<std::string> Names(Layer& layer, std::string_view dir) {
  auto l = layer.list(dir);
  EXPECT_TRUE(l) << (l ? "" : l.error().message());
  std::set<std::string> out;
  if (l)
    for (const DirEntry& e : *l) out.insert(e.name);
  return out;
}

class OverlayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/hfvfs-overlay-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    upper_ = root_ / "upper";
    fs::create_directories(upper_);
    lower_ = std::make_shared<MemLayer>();
    lower_->AddFile("readme.md", "lower readme\n");
    lower_->AddFile("models/gpt2/config.json", "{\"n\": 12}\n", 0644);
    lower_->AddFile("models/gpt2/weights.bin", "WEIGHTS", 0444);
    lower_->AddDir("models/empty");
    lower_->AddFile("cache/ab/cdef.o", "object code");
  }
  void TearDown() override {
    EXPECT_EQ(lower_->writes(), 0) << "the overlay wrote to its lower layer";
    overlay_.reset();
    fs::remove_all(root_);
  }

  OverlayLayer& Mount(bool copy_up = true) {
    OverlayOptions o;
    o.copy_up = copy_up;
    auto l = OverlayLayer::Open(lower_, upper_.string(), o);
    EXPECT_TRUE(l) << (l ? "" : l.error().message());
    overlay_ = std::move(*l);
    EXPECT_TRUE(overlay_->start());
    return *overlay_;
  }

  fs::path root_, upper_;
  std::shared_ptr<MemLayer> lower_;
  std::unique_ptr<OverlayLayer> overlay_;
};

TEST_F(OverlayTest, ListingMergesAndUpperWins) {
  WriteDisk(upper_ / "readme.md", "local readme\n");
  WriteDisk(upper_ / "local.txt", "only here");
  fs::create_directories(upper_ / "models" / "gpt2");
  WriteDisk(upper_ / "models" / "gpt2" / "notes.txt", "n");
  lower_->AddFile("clash", "a lower file");
  fs::create_directories(upper_ / "clash");  // a folder above a file: the folder wins
  OverlayLayer& o = Mount();

  EXPECT_EQ(Names(o, ""),
            (std::set<std::string>{"readme.md", "local.txt", "models", "cache", "clash"}));
  EXPECT_EQ(ReadAll(o, "readme.md"), "local readme\n");
  EXPECT_EQ(ReadAll(o, "models/gpt2/config.json"), "{\"n\": 12}\n");
  EXPECT_EQ(Names(o, "models/gpt2"),
            (std::set<std::string>{"config.json", "weights.bin", "notes.txt"}));
  auto clash = o.stat("clash");
  ASSERT_TRUE(clash);
  EXPECT_TRUE(clash->is_dir());
  EXPECT_TRUE(Names(o, "clash").empty());
  auto lower_attr = o.stat("models/gpt2/weights.bin");
  ASSERT_TRUE(lower_attr);
  EXPECT_EQ(lower_attr->size, 7u);
  EXPECT_EQ(lower_attr->mode, 0444u);
  EXPECT_EQ(o.stat("nope").code(), ENOENT);
  EXPECT_EQ(o.stat("readme.md/x").code(), ENOTDIR);
  EXPECT_EQ(o.list("readme.md").code(), ENOTDIR);
}

TEST_F(OverlayTest, NewFilesAndFoldersLandInUpper) {
  OverlayLayer& o = Mount();
  auto f = o.create("cache/ab/new.o", 0640, O_WRONLY | O_CREAT | O_EXCL);
  ASSERT_TRUE(f) << f.error().message();
  ASSERT_TRUE(WriteAt(**f, 0, "fresh"));
  ASSERT_TRUE((*f)->close());
  EXPECT_EQ(ReadDisk(upper_ / "cache" / "ab" / "new.o"), "fresh");
  EXPECT_EQ(fs::status(upper_ / "cache" / "ab" / "new.o").permissions(), fs::perms(0640));
  EXPECT_EQ(Names(o, "cache/ab"), (std::set<std::string>{"cdef.o", "new.o"}));
  EXPECT_EQ(o.create("cache/ab/new.o", 0644, O_WRONLY | O_CREAT | O_EXCL).code(), EEXIST);
  EXPECT_EQ(o.create("cache/ab/cdef.o", 0644, O_WRONLY | O_CREAT | O_EXCL).code(), EEXIST);
  EXPECT_EQ(o.create("nodir/x", 0644, O_WRONLY | O_CREAT).code(), ENOENT);

  ASSERT_TRUE(o.mkdir("cache/zz", 0750));
  EXPECT_TRUE(fs::is_directory(upper_ / "cache" / "zz"));
  EXPECT_EQ(o.mkdir("models", 0755).code(), EEXIST);
  // Upper files change like local files, and survive a remount.
  ASSERT_TRUE(o.setattr("cache/ab/new.o", SetAttr{.set_mode = true, .mode = 0600}));
  ASSERT_TRUE(o.rename("cache/ab/new.o", "cache/zz/moved.o", false));
  overlay_.reset();
  OverlayLayer& again = Mount();
  EXPECT_EQ(ReadAll(again, "cache/zz/moved.o"), "fresh");
  EXPECT_EQ(again.stat("cache/zz/moved.o")->mode, 0600u);
  EXPECT_EQ(again.stat("cache/ab/new.o").code(), ENOENT);
}

TEST_F(OverlayTest, WriteCopiesUpAtomicallyKeepingModeAndMtime) {
  OverlayLayer& o = Mount();
  auto before = o.stat("models/gpt2/config.json");
  ASSERT_TRUE(before);
  auto f = o.open("models/gpt2/config.json", O_RDWR);
  ASSERT_TRUE(f) << f.error().message();
  ASSERT_TRUE(WriteAt(**f, 6, "24"));
  ASSERT_TRUE((*f)->close());
  EXPECT_EQ(ReadAll(o, "models/gpt2/config.json"), "{\"n\": 24}\n");
  EXPECT_EQ(ReadDisk(upper_ / "models" / "gpt2" / "config.json"), "{\"n\": 24}\n");
  // The lower file is untouched.
  EXPECT_EQ(ReadAll(*lower_, "models/gpt2/config.json"), "{\"n\": 12}\n");
  auto after = o.stat("models/gpt2/config.json");
  ASSERT_TRUE(after);
  EXPECT_EQ(after->mode, 0644u);
  EXPECT_NE(after->version, before->version);
  // The sibling stays below, and the listing still shows both once.
  EXPECT_FALSE(fs::exists(upper_ / "models" / "gpt2" / "weights.bin"));
  EXPECT_EQ(Names(o, "models/gpt2"), (std::set<std::string>{"config.json", "weights.bin"}));
  // No temporaries left in the work folder.
  EXPECT_TRUE(fs::is_empty(upper_ / std::string(kWorkDirName)));
  std::vector<std::pair<std::string, int64_t>> counters;
  o.counters(counters);
  EXPECT_EQ(counters.at(0), (std::pair<std::string, int64_t>{"copy_ups", 1}));
}

TEST_F(OverlayTest, CopyUpOfALargeFileKeepsEveryByte) {
  std::string big(5 * (1 << 20) + 123, '\0');
  std::mt19937 rng(42);
  for (char& c : big) c = static_cast<char>(rng());
  lower_->AddFile("big.bin", big, 0600, 1'650'000'000'123'456'789);
  OverlayLayer& o = Mount();
  auto f = o.open("big.bin", O_WRONLY);
  ASSERT_TRUE(f) << f.error().message();
  ASSERT_TRUE(WriteAt(**f, big.size(), "tail"));
  ASSERT_TRUE((*f)->close());
  std::string on_disk = ReadDisk(upper_ / "big.bin");
  ASSERT_EQ(on_disk.size(), big.size() + 4);
  EXPECT_TRUE(on_disk.compare(0, big.size(), big) == 0);
  EXPECT_EQ(on_disk.substr(big.size()), "tail");
  struct stat st;
  ASSERT_EQ(::stat((upper_ / "big.bin").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(ReadAll(o, "big.bin").size(), big.size() + 4);
}

TEST_F(OverlayTest, TruncateAndOTruncCopyOnlyWhatIsKept) {
  OverlayLayer& o = Mount();
  ASSERT_TRUE(o.setattr("readme.md", SetAttr{.set_size = true, .size = 5}));
  EXPECT_EQ(ReadAll(o, "readme.md"), "lower");
  auto f = o.open("cache/ab/cdef.o", O_WRONLY | O_TRUNC);
  ASSERT_TRUE(f);
  ASSERT_TRUE(WriteAt(**f, 0, "new"));
  ASSERT_TRUE((*f)->close());
  EXPECT_EQ(ReadAll(o, "cache/ab/cdef.o"), "new");
  // chmod and utimens copy up too, keeping the bytes.
  ASSERT_TRUE(o.setattr("models/gpt2/weights.bin", SetAttr{.set_mode = true,
                                                           .mode = 0640,
                                                           .set_mtime = true,
                                                           .mtime_ns = 1'700'000'000'000'000'000}));
  auto a = o.stat("models/gpt2/weights.bin");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->mode, 0640u);
  EXPECT_EQ(a->mtime_ns, 1'700'000'000'000'000'000);
  EXPECT_EQ(ReadAll(o, "models/gpt2/weights.bin"), "WEIGHTS");
}

TEST_F(OverlayTest, ReadOnlyOpenOfALowerFileCannotWriteIt) {
  OverlayLayer& o = Mount();
  auto f = o.open("readme.md", O_RDONLY);
  ASSERT_TRUE(f);
  EXPECT_EQ(WriteAt(**f, 0, "x").code(), EBADF);
  EXPECT_EQ((*f)->truncate(0).code(), EBADF);
  ASSERT_TRUE((*f)->close());
  EXPECT_FALSE(fs::exists(upper_ / "readme.md"));
}

TEST_F(OverlayTest, DeletesAreWhiteoutsThatSurviveARemount) {
  OverlayLayer& o = Mount();
  ASSERT_TRUE(o.remove("readme.md"));
  EXPECT_EQ(o.stat("readme.md").code(), ENOENT);
  EXPECT_EQ(o.remove("readme.md").code(), ENOENT);
  EXPECT_TRUE(fs::exists(upper_ / ".wh.readme.md"));
  EXPECT_FALSE(Names(o, "").contains("readme.md"));
  EXPECT_FALSE(Names(o, "").contains(".wh.readme.md"));
  EXPECT_EQ(o.stat(".wh.readme.md").code(), ENOENT);
  // A deep delete creates the upper folders it needs.
  ASSERT_TRUE(o.remove("models/gpt2/weights.bin"));
  EXPECT_EQ(Names(o, "models/gpt2"), (std::set<std::string>{"config.json"}));

  overlay_.reset();
  OverlayLayer& again = Mount();
  EXPECT_EQ(again.stat("readme.md").code(), ENOENT);
  EXPECT_EQ(again.stat("models/gpt2/weights.bin").code(), ENOENT);
  // A new file of the same name shows its own content; deleting it hides the lower one again.
  auto f = again.create("readme.md", 0644, O_WRONLY | O_CREAT | O_EXCL);
  ASSERT_TRUE(f) << f.error().message();
  ASSERT_TRUE(WriteAt(**f, 0, "mine"));
  ASSERT_TRUE((*f)->close());
  EXPECT_EQ(ReadAll(again, "readme.md"), "mine");
  ASSERT_TRUE(again.remove("readme.md"));
  EXPECT_EQ(again.stat("readme.md").code(), ENOENT);
  // An upper-only file leaves no whiteout.
  auto g = again.create("scratch", 0644, O_WRONLY | O_CREAT);
  ASSERT_TRUE(g);
  ASSERT_TRUE((*g)->close());
  ASSERT_TRUE(again.remove("scratch"));
  EXPECT_FALSE(fs::exists(upper_ / ".wh.scratch"));
}

TEST_F(OverlayTest, RemovedLowerFolderRecreatedIsOpaque) {
  OverlayLayer& o = Mount();
  EXPECT_EQ(o.rmdir("cache/ab").code(), ENOTEMPTY);
  EXPECT_EQ(o.rmdir("readme.md").code(), ENOTDIR);
  EXPECT_EQ(o.remove("cache/ab").code(), EISDIR);
  ASSERT_TRUE(o.remove("cache/ab/cdef.o"));
  ASSERT_TRUE(o.rmdir("cache/ab"));
  EXPECT_EQ(o.stat("cache/ab").code(), ENOENT);
  EXPECT_TRUE(Names(o, "cache").empty());
  ASSERT_TRUE(o.mkdir("cache/ab", 0755));
  EXPECT_TRUE(Names(o, "cache/ab").empty()) << "the lower folder's children came back";
  EXPECT_EQ(o.stat("cache/ab/cdef.o").code(), ENOENT);
  EXPECT_TRUE(fs::exists(upper_ / "cache" / "ab" / std::string(kOpaqueMarker)));
  // An opaque folder removed again leaves a whiteout, not the lower folder.
  ASSERT_TRUE(o.rmdir("cache/ab"));
  EXPECT_EQ(o.stat("cache/ab").code(), ENOENT);
  ASSERT_TRUE(o.rmdir("models/empty"));
  EXPECT_EQ(Names(o, "models"), (std::set<std::string>{"gpt2"}));
}

TEST_F(OverlayTest, StrictModeRefusesChangesToLowerFiles) {
  OverlayLayer& o = Mount(/*copy_up=*/false);
  EXPECT_EQ(o.open("readme.md", O_RDWR).code(), EPERM);
  EXPECT_EQ(o.open("readme.md", O_RDONLY | O_TRUNC).code(), EPERM);
  EXPECT_EQ(o.remove("readme.md").code(), EPERM);
  EXPECT_EQ(o.setattr("readme.md", SetAttr{.set_mode = true, .mode = 0600}).code(), EPERM);
  EXPECT_EQ(o.setattr("readme.md", SetAttr{.set_size = true, .size = 0}).code(), EPERM);
  EXPECT_EQ(o.rename("readme.md", "other.md", false).code(), EPERM);
  EXPECT_EQ(o.rmdir("models/empty").code(), EPERM);
  EXPECT_EQ(o.create("readme.md", 0644, O_WRONLY | O_CREAT).code(), EPERM);
  EXPECT_EQ(ReadAll(o, "readme.md"), "lower readme\n");
  EXPECT_TRUE(Names(o, "").contains("readme.md"));
  // New files are fine, and stay changeable.
  auto f = o.create("models/gpt2/local.txt", 0644, O_RDWR | O_CREAT);
  ASSERT_TRUE(f);
  ASSERT_TRUE(WriteAt(**f, 0, "abc"));
  ASSERT_TRUE((*f)->close());
  ASSERT_TRUE(o.setattr("models/gpt2/local.txt", SetAttr{.set_size = true, .size = 1}));
  ASSERT_TRUE(o.rename("models/gpt2/local.txt", "models/gpt2/l.txt", false));
  EXPECT_EQ(ReadAll(o, "models/gpt2/l.txt"), "a");
  ASSERT_TRUE(o.remove("models/gpt2/l.txt"));
  EXPECT_FALSE(fs::exists(upper_ / "models" / "gpt2" / ".wh.l.txt"));
}

TEST_F(OverlayTest, RenameCopiesUpFilesAndRefusesLowerFoldersWithExdev) {
  OverlayLayer& o = Mount();
  ASSERT_TRUE(o.rename("models/gpt2/config.json", "config-copy.json", false));
  EXPECT_EQ(o.stat("models/gpt2/config.json").code(), ENOENT);
  EXPECT_EQ(ReadAll(o, "config-copy.json"), "{\"n\": 12}\n");
  EXPECT_EQ(o.rename("models", "renamed", false).code(), EXDEV);
  EXPECT_EQ(o.rename("models/empty", "e2", false).code(), EXDEV);
  EXPECT_EQ(o.rename("nope", "x", false).code(), ENOENT);
  // An upper folder renames, also over an empty lower folder, which it then hides.
  ASSERT_TRUE(o.mkdir("mine", 0755));
  auto f = o.create("mine/a", 0644, O_WRONLY | O_CREAT);
  ASSERT_TRUE(f);
  ASSERT_TRUE((*f)->close());
  EXPECT_EQ(o.rename("mine", "models/empty", true).code(), EEXIST);
  EXPECT_EQ(o.rename("mine", "readme.md", false).code(), ENOTDIR);
  EXPECT_EQ(o.rename("config-copy.json", "models", false).code(), EISDIR);
  EXPECT_EQ(o.rename("mine", "models", false).code(), ENOTEMPTY);
  EXPECT_EQ(o.rename("mine", "mine/sub", false).code(), EINVAL);
  lower_->AddDir("target");
  ASSERT_TRUE(o.rename("mine", "target", false));
  EXPECT_EQ(Names(o, "target"), (std::set<std::string>{"a"}));
  lower_->AddFile("target/late", "appeared below later");
  EXPECT_EQ(Names(o, "target"), (std::set<std::string>{"a"})) << "must be opaque";
  // Replacing a lower file with an upper one.
  ASSERT_TRUE(o.rename("config-copy.json", "readme.md", false));
  EXPECT_EQ(ReadAll(o, "readme.md"), "{\"n\": 12}\n");
  ASSERT_TRUE(o.remove("readme.md"));
  EXPECT_EQ(o.stat("readme.md").code(), ENOENT);
  EXPECT_EQ(o.rename("x", ".wh.x", false).code(), EINVAL);
}

TEST_F(OverlayTest, SymlinksNeverLeadOutside) {
  fs::path outside = root_ / "outside";
  WriteDisk(outside / "secret", "secret");
  OverlayLayer& o = Mount();
  EXPECT_EQ(o.symlink("/etc/passwd", "abs").code(), EPERM);
  EXPECT_EQ(o.symlink("../outside/secret", "up").code(), EPERM);
  EXPECT_EQ(o.symlink("../../x", "models/deep").code(), EPERM);
  EXPECT_EQ(o.symlink("gpt2/../../../x", "models/sneaky").code(), EPERM);
  EXPECT_FALSE(fs::exists(fs::symlink_status(upper_ / "abs")));
  ASSERT_TRUE(o.symlink("../readme.md", "models/ok"));
  ASSERT_TRUE(o.symlink("gpt2/config.json", "models/down"));
  EXPECT_EQ(*o.readlink("models/ok"), "../readme.md");
  EXPECT_TRUE(o.stat("models/ok")->is_symlink());
  // A link renamed to where it would escape is refused when read.
  ASSERT_TRUE(o.rename("models/ok", "moved", false));
  EXPECT_EQ(o.readlink("moved").code(), EPERM);

  // Links put into the upper folder from outside are refused too, and the overlay never
  // follows a link inside the upper folder, whatever the path.
  fs::create_symlink(outside, upper_ / "escape");
  fs::create_symlink(outside / "secret", upper_ / "secret-link");
  EXPECT_EQ(o.readlink("escape").code(), EPERM);
  EXPECT_EQ(o.readlink("secret-link").code(), EPERM);
  EXPECT_NE(o.stat("escape/secret").code(), 0);
  EXPECT_NE(o.open("escape/secret", O_RDONLY).code(), 0);
  EXPECT_NE(o.open("secret-link", O_RDONLY).code(), 0);
  EXPECT_NE(o.create("escape/new", 0644, O_WRONLY | O_CREAT).code(), 0);
  EXPECT_NE(o.mkdir("escape/dir", 0755).code(), 0);
  EXPECT_NE(o.setattr("secret-link", SetAttr{.set_size = true, .size = 0}).code(), 0);
  EXPECT_EQ(ReadDisk(outside / "secret"), "secret");
  EXPECT_FALSE(fs::exists(outside / "new"));
  EXPECT_FALSE(fs::exists(outside / "dir"));
  // Lower symlinks that escape are not copied up.
  lower_->AddSymlink("lowlink", "/etc/hostname");
  EXPECT_EQ(*o.readlink("lowlink"), "/etc/hostname");
  EXPECT_EQ(o.rename("lowlink", "l2", false).code(), EPERM);
}

TEST(SymlinkPolicyTest, Containment) {
  EXPECT_TRUE(CheckSymlinkContained("a", "b"));
  EXPECT_TRUE(CheckSymlinkContained("a/b/l", "../../c/d"));
  EXPECT_TRUE(CheckSymlinkContained("a/l", "./b/./c//d"));
  EXPECT_EQ(CheckSymlinkContained("a/l", "../../c").code(), EPERM);
  EXPECT_EQ(CheckSymlinkContained("l", "..").code(), EPERM);
  EXPECT_EQ(CheckSymlinkContained("a/l", "b/../c").code(), EPERM);
  EXPECT_EQ(CheckSymlinkContained("a/l", "/a").code(), EPERM);
  EXPECT_EQ(CheckSymlinkContained("a/l", "").code(), ENOENT);
}

TEST_F(OverlayTest, AnOpaqueUpperRootHidesTheWholeLowerLayer) {
  WriteDisk(upper_ / std::string(kOpaqueMarker), "");
  WriteDisk(upper_ / "only.txt", "upper");
  OverlayLayer& o = Mount();
  EXPECT_EQ(Names(o, ""), (std::set<std::string>{"only.txt"}));
  EXPECT_EQ(o.stat("readme.md").code(), ENOENT);
  EXPECT_EQ(o.create("models/x", 0644, O_WRONLY | O_CREAT).code(), ENOENT);
}

TEST_F(OverlayTest, ReservedNamesAreHiddenAndRefused) {
  lower_->AddFile(".wh.lowerfile", "x");
  OverlayLayer& o = Mount();
  EXPECT_EQ(o.create(".wh.foo", 0644, O_WRONLY | O_CREAT).code(), EINVAL);
  EXPECT_EQ(o.mkdir(".wh..wh..opq", 0755).code(), EINVAL);
  EXPECT_EQ(o.symlink("a", ".wh.a").code(), EINVAL);
  EXPECT_EQ(o.stat(std::string(kWorkDirName)).code(), ENOENT);
  EXPECT_EQ(o.list(std::string(kWorkDirName)).code(), ENOENT);
  EXPECT_EQ(o.stat(".wh.lowerfile").code(), ENOENT);
  for (const std::string& n : Names(o, "")) EXPECT_FALSE(n.starts_with(".wh.")) << n;
  EXPECT_TRUE(fs::is_directory(upper_ / std::string(kWorkDirName)));
}

TEST_F(OverlayTest, ConcurrentCopyUpsOfOneFileAgree) {
  std::string content(3 << 20, 'q');
  lower_->AddFile("shared.bin", content);
  OverlayLayer& o = Mount();
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      auto f = o.open("shared.bin", O_RDWR);
      if (!f) return;
      std::string mark(1, static_cast<char>('a' + i));
      if (WriteAt(**f, static_cast<uint64_t>(i), mark) && (*f)->close()) ++ok;
    });
    threads.emplace_back([&, i] {
      auto f = o.create("cache/ab/t" + std::to_string(i), 0644, O_WRONLY | O_CREAT | O_EXCL);
      if (f && (*f)->close()) ++ok;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 16);
  std::string got = ReadAll(o, "shared.bin");
  ASSERT_EQ(got.size(), content.size());
  EXPECT_EQ(got.substr(0, 8), "abcdefgh") << "a write went to a copy that lost";
  EXPECT_EQ(got.substr(8), content.substr(8));
  EXPECT_EQ(Names(o, "cache/ab").size(), 9u);
  EXPECT_TRUE(fs::is_empty(upper_ / std::string(kWorkDirName)));
}

// A slow lower layer (a remote HEAD) must not hold up other changes: it is asked before the
// overlay's namespace lock is taken.
TEST_F(OverlayTest, ASlowLowerLookupDoesNotBlockOtherCreates) {
  OverlayLayer& o = Mount();
  lower_->BlockStat("models/gpt2/slow.txt");
  std::thread slow([&] {
    auto f = o.create("models/gpt2/slow.txt", 0644, O_WRONLY | O_CREAT | O_EXCL);
    EXPECT_TRUE(f);
    if (f) {
      EXPECT_TRUE((*f)->close());
    }
  });
  while (!lower_->stat_waiting()) std::this_thread::yield();
  auto fast = std::async(std::launch::async, [&] {
    auto f = o.create("cache/ab/fast.o", 0644, O_WRONLY | O_CREAT | O_EXCL);
    return f && (*f)->close().ok();
  });
  bool done = fast.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
  lower_->Unblock();
  slow.join();
  EXPECT_TRUE(done) << "a create waited for another path's lower lookup";
  EXPECT_TRUE(fast.get());
  EXPECT_TRUE(o.stat("models/gpt2/slow.txt"));
}

TEST_F(OverlayTest, ChangesUnderUpperEntriesAreDropped) {
  WriteDisk(upper_ / "readme.md", "local");
  OverlayLayer& o = Mount();
  ASSERT_TRUE(o.remove("cache/ab/cdef.o"));
  lower_->AddChange({Change::Kind::kModified, "readme.md"});
  lower_->AddChange({Change::Kind::kModified, "cache/ab/cdef.o"});
  lower_->AddChange({Change::Kind::kAdded, "models/gpt2/new.json"});
  auto c = o.changes();
  ASSERT_TRUE(c);
  ASSERT_EQ(c->changes.size(), 1u);
  EXPECT_EQ(c->changes[0].path, "models/gpt2/new.json");
}

TEST_F(OverlayTest, CapabilitiesAndStatfs) {
  OverlayLayer& o = Mount();
  Capabilities c = o.capabilities();
  EXPECT_TRUE(c.writable && c.random_write && c.rename && c.symlinks && c.set_mode);
  EXPECT_FALSE(c.immutable);
  EXPECT_TRUE(c.changes);  // as the lower layer says
  auto s = o.statfs();
  ASSERT_TRUE(s);
  EXPECT_GT(s->total_blocks, 0u);
}

TEST(OverlayOpenTest, AMissingUpperIsCreatedUnlessChecking) {
  char tmpl[] = "/tmp/hfvfs-overlay-open-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  fs::path root = tmpl;
  auto lower = std::make_shared<MemLayer>();
  auto checking = OverlayLayer::Open(lower, (root / "a" / "b").string(), {}, false);
  ASSERT_TRUE(checking);
  EXPECT_FALSE(fs::exists(root / "a"));
  EXPECT_EQ((*checking)->start().code(), EINVAL);
  auto real = OverlayLayer::Open(lower, (root / "a" / "b").string(), {}, true);
  ASSERT_TRUE(real);
  EXPECT_TRUE(fs::is_directory(root / "a" / "b"));
  EXPECT_TRUE((*real)->start());
  fs::remove_all(root);
}

}  // namespace
}  // namespace hfvfs::overlay
