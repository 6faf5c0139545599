// The overlay through real FUSE mounts (hfvfs mount), driven by ordinary tools and syscalls.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>

#include "support/mount_fixture.h"

namespace hfvfs::testing {
namespace {

namespace fs = std::filesystem;

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void Spit(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

// Every entry under `dir` with its type, mode, size, mtime and content: equal before and after
// means the folder was not written.
std::map<std::string, std::string> Snapshot(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    struct stat st;
    EXPECT_EQ(lstat(e.path().c_str(), &st), 0);
    std::string rel = fs::relative(e.path(), dir).string();
    std::string v = std::to_string(st.st_mode) + ":" + std::to_string(st.st_size) + ":" +
                    std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
    if (S_ISREG(st.st_mode)) v += ":" + std::to_string(std::hash<std::string>{}(Slurp(e.path())));
    if (S_ISLNK(st.st_mode)) v += ":" + fs::read_symlink(e.path()).string();
    out[rel] = v;
  }
  return out;
}

std::string LocalOverlaySpec(const std::string& lower, const std::string& overlay_keys = "") {
  return "[[layer]]\ntype = \"local\"\npath = \"" + lower +
         "\"\n\n[[layer]]\ntype = \"overlay\"\n" + overlay_keys;
}

class OverlayE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "hfvfs-overlay-e2e-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    lower_ = dir_ + "/bucket";
    Spit(lower_ + "/readme.md", "remote readme\n");
    Spit(lower_ + "/shared.txt", "remote version\n");
    Spit(lower_ + "/models/config.json", "{\"layers\": 12}\n");
    Spit(lower_ + "/models/sub/deep.txt", "deep\n");
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string dir_, lower_;
};

// ---- the issue's use case: a shared ccache ----

struct CcacheStats {
  long hits = 0;
  long misses = 0;
};

CcacheStats ReadCcacheStats(const std::string& cache_dir) {
  ProcessResult r = RunProcess({"ccache", "--print-stats"}, {{"CCACHE_DIR", cache_dir}});
  EXPECT_EQ(r.status, 0) << r.output;
  CcacheStats s;
  std::istringstream in(r.output);
  std::string key;
  long value;
  while (in >> key >> value) {
    if (key == "direct_cache_hit" || key == "preprocessed_cache_hit") s.hits += value;
    if (key == "cache_miss") s.misses += value;
  }
  return s;
}

class CcacheProject {
 public:
  explicit CcacheProject(std::string dir) : dir_(std::move(dir)) {
    Spit(dir_ + "/src/util.h", "int scale(int x);\nconst char* greeting(void);\n");
    Spit(dir_ + "/src/util.c",
         "#include \"util.h\"\nint scale(int x) { return 3 * x; }\n"
         "const char* greeting(void) { return \"hello\"; }\n");
    Spit(dir_ + "/src/extra.c", "#include \"util.h\"\nint twice(int x) { return 2 * scale(x); }\n");
    Spit(dir_ + "/src/main.c",
         "#include <stdio.h>\n#include \"util.h\"\nint twice(int x);\n"
         "int main(void) { printf(\"%s %d\\n\", greeting(), twice(7)); return 0; }\n");
  }
  // Compiles every unit with ccache into `out`, links, runs; returns the program's output.
  std::string Build(const std::string& cache_dir, const std::string& out) {
    fs::create_directories(out);
    std::map<std::string, std::string> env = {{"CCACHE_DIR", cache_dir}, {"CCACHE_NOHASHDIR", "1"}};
    for (const char* unit : {"util", "extra", "main"}) {
      ProcessResult r = RunProcess({"ccache", "gcc", "-O2", "-c", dir_ + "/src/" + unit + ".c",
                                    "-o", out + "/" + unit + ".o"},
                                   env);
      EXPECT_EQ(r.status, 0) << unit << ": " << r.output;
    }
    ProcessResult link = RunProcess(
        {"gcc", "-o", out + "/prog", out + "/util.o", out + "/extra.o", out + "/main.o"});
    EXPECT_EQ(link.status, 0) << link.output;
    ProcessResult run = RunProcess({out + "/prog"});
    EXPECT_EQ(run.status, 0) << run.output;
    return run.output;
  }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
};

TEST_F(OverlayE2eTest, SharedCcacheHitsFromBelowAndMissesStayLocal) {
  fs::remove_all(lower_);
  fs::create_directories(lower_);
  CcacheProject project(dir_ + "/project");

  // The producer fills the "bucket" through a plain local mount.
  {
    MountFixture producer("[[layer]]\ntype = \"local\"\npath = \"" + lower_ + "\"\n");
    ASSERT_TRUE(producer.ok()) << producer.error();
    EXPECT_EQ(project.Build(producer.mountpoint(), dir_ + "/out-producer"), "hello 42\n");
    CcacheStats s = ReadCcacheStats(producer.mountpoint());
    EXPECT_EQ(s.misses, 3);
    EXPECT_EQ(s.hits, 0);
    EXPECT_EQ(producer.Stop(), 0) << producer.log();
  }
  const auto bucket_before = Snapshot(lower_);

  // A consumer mounts the same folder under an overlay (the lower stays writable: the overlay
  // alone must keep it untouched). The upper layer is the mountpoint's own folder. ccache
  // touches every entry it hits (its LRU): on_touch = "ignore" keeps hits from being copied up.
  MountFixture consumer(LocalOverlaySpec(lower_, "on_touch = \"ignore\"\n"));
  ASSERT_TRUE(consumer.ok()) << consumer.error();
  CcacheStats before = ReadCcacheStats(consumer.mountpoint());
  EXPECT_EQ(project.Build(consumer.mountpoint(), dir_ + "/out-consumer"), "hello 42\n");
  CcacheStats after = ReadCcacheStats(consumer.mountpoint());
  EXPECT_EQ(after.hits - before.hits, 3) << "every unit must be a hit from the bucket";
  EXPECT_EQ(after.misses - before.misses, 0);
  EXPECT_EQ(Slurp(dir_ + "/out-consumer/util.o"), Slurp(dir_ + "/out-producer/util.o"));
  EXPECT_EQ(Snapshot(lower_), bucket_before) << "the overlay wrote to the bucket";

  // A changed file: a miss, compiled and stored in the upper layer only.
  Spit(project.dir() + "/src/util.c",
       "#include \"util.h\"\nint scale(int x) { return 5 * x; }\n"
       "const char* greeting(void) { return \"hello\"; }\n");
  EXPECT_EQ(project.Build(consumer.mountpoint(), dir_ + "/out-consumer2"), "hello 70\n");
  CcacheStats last = ReadCcacheStats(consumer.mountpoint());
  EXPECT_EQ(last.misses - after.misses, 1);
  EXPECT_EQ(last.hits - after.hits, 2);
  EXPECT_EQ(Snapshot(lower_), bucket_before) << "the overlay wrote to the bucket";
  // The same build again is all hits, the new one from the upper layer.
  EXPECT_EQ(project.Build(consumer.mountpoint(), dir_ + "/out-consumer3"), "hello 70\n");
  EXPECT_EQ(ReadCcacheStats(consumer.mountpoint()).hits - last.hits, 3);
  EXPECT_EQ(consumer.Stop(), 0) << consumer.log();

  // Unmounted, the new result is a plain file in the mountpoint's folder, and nowhere below.
  auto count_results = [](const std::string& dir) {
    int n = 0;
    for (const auto& e : fs::recursive_directory_iterator(dir))
      if (e.is_regular_file() && e.path().filename().string().ends_with("R")) ++n;
    return n;
  };
  EXPECT_EQ(count_results(lower_), 3);
  EXPECT_EQ(count_results(consumer.mountpoint()), 1);
}

// Parallel compiles (like make -j8) of 16 units, 8 of them already in the bucket: the overlay
// under concurrent creates, renames and lookups from many ccache processes.
TEST_F(OverlayE2eTest, ParallelCompilesShareTheCache) {
  fs::remove_all(lower_);
  fs::create_directories(lower_);
  const std::string src = dir_ + "/par";
  for (int i = 0; i < 16; ++i)
    Spit(src + "/u" + std::to_string(i) + ".c",
         "int f" + std::to_string(i) + "(int x) { return x * " + std::to_string(i + 3) + "; }\n");
  auto compile = [&](const std::string& cache, int from, int to, const std::string& out) {
    fs::create_directories(out);
    std::string cmd = "seq " + std::to_string(from) + " " + std::to_string(to - 1) +
                      " | xargs -P 8 -I{} ccache gcc -O1 -c " + src + "/u{}.c -o " + out + "/u{}.o";
    ProcessResult r =
        RunProcess({"sh", "-c", cmd}, {{"CCACHE_DIR", cache}, {"CCACHE_NOHASHDIR", "1"}});
    EXPECT_EQ(r.status, 0) << r.output;
  };
  {
    MountFixture producer("[[layer]]\ntype = \"local\"\npath = \"" + lower_ + "\"\n");
    ASSERT_TRUE(producer.ok()) << producer.error();
    compile(producer.mountpoint(), 0, 8, dir_ + "/out-p");
    EXPECT_EQ(producer.Stop(), 0) << producer.log();
  }
  const auto bucket_before = Snapshot(lower_);
  MountFixture consumer(LocalOverlaySpec(lower_, "on_touch = \"ignore\"\n"));
  ASSERT_TRUE(consumer.ok()) << consumer.error();
  CcacheStats before = ReadCcacheStats(consumer.mountpoint());
  compile(consumer.mountpoint(), 0, 16, dir_ + "/out-c");
  CcacheStats after = ReadCcacheStats(consumer.mountpoint());
  EXPECT_EQ(after.hits - before.hits, 8);
  EXPECT_EQ(after.misses - before.misses, 8);
  for (int i = 0; i < 16; ++i)
    EXPECT_TRUE(fs::exists(dir_ + "/out-c/u" + std::to_string(i) + ".o")) << i;
  EXPECT_EQ(Snapshot(lower_), bucket_before) << "the overlay wrote to the bucket";
  EXPECT_EQ(consumer.Stop(), 0) << consumer.log();
}

// ---- the mountpoint's own files, through the CLI (daemonized mount) ----

TEST_F(OverlayE2eTest, FilesAlreadyInTheMountpointStayVisibleAndWin) {
  std::string mnt = dir_ + "/mnt";
  Spit(mnt + "/shared.txt", "local version\n");
  Spit(mnt + "/mine/notes.txt", "kept\n");
  Spit(dir_ + "/spec.toml", LocalOverlaySpec(lower_));
  std::map<std::string, std::string> env = {{"HFVFS_HOME", dir_ + "/home"}};
  ProcessResult mount =
      RunProcess({HfvfsBinary(), "mount", dir_ + "/spec.toml", "--mountpoint", mnt}, env);
  ASSERT_EQ(mount.status, 0) << mount.output;
  ASSERT_TRUE(IsMounted(mnt));

  EXPECT_EQ(Slurp(mnt + "/shared.txt"), "local version\n");
  EXPECT_EQ(Slurp(mnt + "/mine/notes.txt"), "kept\n");
  EXPECT_EQ(Slurp(mnt + "/readme.md"), "remote readme\n");
  ProcessResult ls = RunProcess({"ls", "-A", mnt});
  EXPECT_EQ(ls.output, "mine\nmodels\nreadme.md\nshared.txt\n");
  Spit(mnt + "/models/new.json", "{}\n");

  ProcessResult stop = RunProcess({HfvfsBinary(), "stop", mnt}, env);
  EXPECT_EQ(stop.status, 0) << stop.output;
  EXPECT_FALSE(IsMounted(mnt));
  // Everything written is in the folder itself; the bucket is as it was.
  EXPECT_EQ(Slurp(mnt + "/models/new.json"), "{}\n");
  EXPECT_FALSE(fs::exists(lower_ + "/models/new.json"));
  EXPECT_EQ(Slurp(lower_ + "/shared.txt"), "remote version\n");
}

// ---- copy-up, whiteouts, strict mode, symlinks, mv ----

TEST_F(OverlayE2eTest, CopyUpOfALargeFileKeepsItsBytes) {
  std::string big(48 << 20, '\0');
  std::mt19937_64 rng(7);
  for (size_t i = 0; i + 8 <= big.size(); i += 8) {
    uint64_t v = rng();
    std::memcpy(big.data() + i, &v, 8);
  }
  Spit(lower_ + "/big.bin", big);
  const auto bucket_before = Snapshot(lower_);
  MountFixture m(LocalOverlaySpec(lower_, "upper = \"" + dir_ + "/upper\"\n"));
  ASSERT_TRUE(m.ok()) << m.error();
  int fd = open(m.path("big.bin").c_str(), O_RDWR);
  ASSERT_GE(fd, 0) << strerror(errno);
  ASSERT_EQ(pwrite(fd, "EDIT", 4, 30 << 20), 4);
  ASSERT_EQ(close(fd), 0);
  big.replace(30 << 20, 4, "EDIT");
  EXPECT_TRUE(Slurp(m.path("big.bin")) == big);
  EXPECT_TRUE(Slurp(dir_ + "/upper/big.bin") == big);
  // Appending (shell `>>`) and the editor pattern (write a temp, rename it over) on remote files.
  {
    std::ofstream append(m.path("readme.md"), std::ios::app);
    append << "more\n";
  }
  EXPECT_EQ(Slurp(m.path("readme.md")), "remote readme\nmore\n");
  Spit(m.path("models/.config.json.tmp"), "{\"layers\": 24}\n");
  ASSERT_EQ(rename(m.path("models/.config.json.tmp").c_str(), m.path("models/config.json").c_str()),
            0);
  EXPECT_EQ(Slurp(m.path("models/config.json")), "{\"layers\": 24}\n");
  EXPECT_EQ(Snapshot(lower_), bucket_before);
  EXPECT_EQ(m.Stop(), 0) << m.log();
}

TEST_F(OverlayE2eTest, WhiteoutsSurviveARemount) {
  const std::string spec = LocalOverlaySpec(lower_, "upper = \"" + dir_ + "/upper\"\n");
  {
    MountFixture m(spec);
    ASSERT_TRUE(m.ok()) << m.error();
    ASSERT_EQ(unlink(m.path("readme.md").c_str()), 0) << strerror(errno);
    ASSERT_EQ(unlink(m.path("models/sub/deep.txt").c_str()), 0) << strerror(errno);
    ASSERT_EQ(rmdir(m.path("models/sub").c_str()), 0) << strerror(errno);
    EXPECT_EQ(RunProcess({"ls", "-A", m.mountpoint()}).output, "models\nshared.txt\n");
    EXPECT_EQ(m.Stop(), 0) << m.log();
  }
  MountFixture again(spec);
  ASSERT_TRUE(again.ok()) << again.error();
  struct stat st;
  EXPECT_EQ(stat(again.path("readme.md").c_str(), &st), -1);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_EQ(stat(again.path("models/sub").c_str(), &st), -1);
  EXPECT_EQ(RunProcess({"ls", "-A", again.path("models")}).output, "config.json\n");
  // A new folder with the old name starts empty.
  ASSERT_EQ(mkdir(again.path("models/sub").c_str(), 0755), 0);
  EXPECT_EQ(RunProcess({"ls", "-A", again.path("models/sub")}).output, "");
  EXPECT_TRUE(fs::exists(lower_ + "/readme.md"));
  EXPECT_TRUE(fs::exists(lower_ + "/models/sub/deep.txt"));
  EXPECT_EQ(again.Stop(), 0) << again.log();
}

TEST_F(OverlayE2eTest, StrictModeAnswersEperm) {
  MountFixture m(LocalOverlaySpec(lower_, "copy_up = false\n"));
  ASSERT_TRUE(m.ok()) << m.error();
  errno = 0;
  EXPECT_EQ(open(m.path("readme.md").c_str(), O_WRONLY), -1);
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(unlink(m.path("readme.md").c_str()), -1);
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(chmod(m.path("readme.md").c_str(), 0600), -1);
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(truncate(m.path("readme.md").c_str(), 0), -1);
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(Slurp(m.path("readme.md")), "remote readme\n");
  // New files are local and behave like local files.
  Spit(m.path("models/local.txt"), "mine");
  ASSERT_EQ(truncate(m.path("models/local.txt").c_str(), 2), 0);
  EXPECT_EQ(Slurp(m.path("models/local.txt")), "mi");
  ASSERT_EQ(unlink(m.path("models/local.txt").c_str()), 0);
  EXPECT_EQ(m.Stop(), 0) << m.log();
  EXPECT_EQ(Slurp(lower_ + "/readme.md"), "remote readme\n");
}

TEST_F(OverlayE2eTest, SymlinkEscapesAreRefused) {
  Spit(dir_ + "/outside/secret", "secret");
  fs::create_directories(dir_ + "/upper");
  fs::create_symlink(dir_ + "/outside/secret", dir_ + "/upper/planted");
  MountFixture m(LocalOverlaySpec(lower_, "upper = \"" + dir_ + "/upper\"\n"));
  ASSERT_TRUE(m.ok()) << m.error();
  EXPECT_EQ(symlink("/etc/passwd", m.path("abs").c_str()), -1);
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(symlink("../../outside/secret", m.path("models/up").c_str()), -1);
  EXPECT_EQ(errno, EPERM);
  // A link planted in the upper folder before mounting cannot be followed.
  EXPECT_NE(Slurp(m.path("planted")), "secret");
  char buf[256];
  EXPECT_EQ(readlink(m.path("planted").c_str(), buf, sizeof buf), -1);
  EXPECT_EQ(errno, EPERM);
  // Contained links work.
  ASSERT_EQ(symlink("../readme.md", m.path("models/link").c_str()), 0) << strerror(errno);
  EXPECT_EQ(Slurp(m.path("models/link")), "remote readme\n");
  EXPECT_EQ(m.Stop(), 0) << m.log();
}

TEST_F(OverlayE2eTest, MvOfALowerFolderFallsBackToCopy) {
  MountFixture m(LocalOverlaySpec(lower_));
  ASSERT_TRUE(m.ok()) << m.error();
  EXPECT_EQ(rename(m.path("models").c_str(), m.path("renamed").c_str()), -1);
  EXPECT_EQ(errno, EXDEV);
  ProcessResult mv = RunProcess({"mv", m.path("models"), m.path("renamed")});
  EXPECT_EQ(mv.status, 0) << mv.output;
  EXPECT_EQ(Slurp(m.path("renamed/sub/deep.txt")), "deep\n");
  EXPECT_FALSE(fs::exists(m.path("models")));
  // A file renames in place (copied up first).
  ASSERT_EQ(rename(m.path("readme.md").c_str(), m.path("README").c_str()), 0);
  EXPECT_EQ(Slurp(m.path("README")), "remote readme\n");
  EXPECT_EQ(m.Stop(), 0) << m.log();
  EXPECT_EQ(Slurp(lower_ + "/models/sub/deep.txt"), "deep\n");
  EXPECT_TRUE(fs::exists(lower_ + "/readme.md"));
}

}  // namespace
}  // namespace hfvfs::testing
