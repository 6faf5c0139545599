// Tests of the hub source against the Hub emulator (tests/support/hub_emulator.py): listing,
// reads, revisions, subfolders, private repos and tokens, pagination, faults and changes().
#include "hub_layer.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "hfvfs/config.h"
#include "hfvfs/path.h"
#include "hub_emulator_process.h"

namespace hfvfs::hub {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using std::chrono::milliseconds;

std::string ReadAll(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string AsString(std::span<const std::byte> b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

class HubLayerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    fixtures_ = new std::string(hfvfs::testing::HubEmulatorProcess::DefaultFixtures());
    manifest_ = new json(json::parse(ReadAll(*fixtures_ + "/manifest.json")));
    emu_ = new hfvfs::testing::HubEmulatorProcess();
    ASSERT_TRUE(emu_->Start(*fixtures_)) << emu_->error();
  }
  static void TearDownTestSuite() {
    delete emu_;
    emu_ = nullptr;
    delete manifest_;
    delete fixtures_;
  }
  void SetUp() override {
    ASSERT_NE(emu_, nullptr);
    emu_->Reset();
  }

  static HubOptions Options(const std::string& repo, const std::string& revision = "main") {
    HubOptions o;
    o.repo = repo;
    o.revision = revision;
    o.endpoint = emu_->endpoint();
    o.token = "";
    o.retry_base = milliseconds(20);
    o.max_retry_wait = milliseconds(5000);
    return o;
  }
  static std::unique_ptr<HubLayer> Started(HubOptions o) {
    auto layer = std::make_unique<HubLayer>(std::move(o));
    Status s = layer->start();
    EXPECT_TRUE(s) << s.error().message();
    return layer;
  }
  static const json& Repo(const std::string& key) { return (*manifest_)["repos"][key]; }
  static fs::path FilesDir(const std::string& key, const std::string& commit_name = "main") {
    return Repo(key)["files_dir"][commit_name].get<std::string>();
  }
  static std::string Token() { return (*manifest_)["tokens"]["reader"].get<std::string>(); }

  static std::string ReadFile(Layer& layer, const std::string& path, size_t chunk = 1 << 20) {
    auto f = layer.open(path, O_RDONLY);
    EXPECT_TRUE(f) << path << ": " << f.error().message();
    if (!f) return "";
    std::string out;
    std::vector<std::byte> buf(chunk);
    for (uint64_t off = 0;;) {
      auto n = (*f)->read(off, buf);
      EXPECT_TRUE(n) << path << ": " << n.error().message();
      if (!n || *n == 0) break;
      out += AsString(std::span(buf).first(*n));
      off += *n;
    }
    EXPECT_TRUE((*f)->close());
    return out;
  }

  // Walks the layer and the fixture folder together: same names, kinds, sizes and bytes.
  static void ExpectSameTree(Layer& layer, const fs::path& dir, const std::string& at,
                             bool compare_bytes, int* files) {
    auto entries = layer.list(at);
    ASSERT_TRUE(entries) << at << ": " << entries.error().message();
    std::map<std::string, Attr> got;
    for (auto& e : *entries) got[e.name] = e.attr;
    std::map<std::string, fs::directory_entry> want;
    for (auto& e : fs::directory_iterator(dir)) want[e.path().filename().string()] = e;
    ASSERT_EQ(got.size(), want.size()) << "in '" << at << "'";
    for (auto& [name, de] : want) {
      ASSERT_TRUE(got.count(name)) << "missing " << JoinPath(at, name);
      const Attr& a = got[name];
      std::string path = JoinPath(at, name);
      if (de.is_directory()) {
        EXPECT_TRUE(a.is_dir()) << path;
        ExpectSameTree(layer, de.path(), path, compare_bytes, files);
      } else {
        ++*files;
        EXPECT_TRUE(a.is_file()) << path;
        EXPECT_EQ(a.size, de.file_size()) << path;
        EXPECT_FALSE(a.version.empty());
        if (compare_bytes) {
          EXPECT_EQ(ReadFile(layer, path), ReadAll(de.path())) << path;
        }
      }
    }
  }

  static inline hfvfs::testing::HubEmulatorProcess* emu_ = nullptr;
  static inline std::string* fixtures_ = nullptr;
  static inline json* manifest_ = nullptr;
};

TEST(HubOptionsTest, RepoRevisionAndSignedUrlParsing) {
  auto m = ParseRepo("openai-community/gpt2");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->first, RepoType::kModel);
  EXPECT_EQ(m->second, "openai-community/gpt2");
  auto d = ParseRepo("datasets/org/data.set");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->first, RepoType::kDataset);
  EXPECT_EQ(ParseRepo("spaces/o/s")->first, RepoType::kSpace);
  EXPECT_EQ(ParseRepo("gpt2")->second, "gpt2");
  EXPECT_FALSE(ParseRepo("a/b/c"));
  EXPECT_FALSE(ParseRepo("a/../b"));
  EXPECT_FALSE(ParseRepo(""));
  EXPECT_TRUE(CheckRevision("refs/pr/1"));
  EXPECT_TRUE(CheckRevision("v1.0"));
  EXPECT_FALSE(CheckRevision("main?x=1"));
  EXPECT_FALSE(CheckRevision("a/../b"));
  EXPECT_FALSE(CheckRevision("has space"));
  EXPECT_EQ(SignedUrlExpiry("http://c/lfs/x?Expires=1700000000&Signature=s"), 1700000000);
  EXPECT_EQ(SignedUrlExpiry("https://s3/x?X-Amz-Date=20240101T000000Z&X-Amz-Expires=3600"),
            1704067200 + 3600);
  EXPECT_FALSE(SignedUrlExpiry("http://c/lfs/x"));
}

TEST(HubOptionsTest, SpecTableIsParsedAndCheckedByKey) {
  auto cfg = ConfigView::FromToml(
      "repo = \"datasets/o/n\"\nrevision = \"refs/pr/3\"\nsubfolder = \"/a/b/\"\n"
      "max_retries = 5\nseek_window = \"2MiB\"\n",
      "spec.toml");
  ASSERT_TRUE(cfg);
  auto o = ParseOptions(**cfg);
  ASSERT_TRUE(o) << o.error().message();
  EXPECT_EQ(o->revision, "refs/pr/3");
  EXPECT_EQ(o->subfolder, "a/b");
  EXPECT_EQ(o->max_retries, 5);
  EXPECT_EQ(o->seek_window, 2u << 20);
  EXPECT_TRUE((*cfg)->check_unused());
  auto bad = ConfigView::FromToml("repo = \"o/n\"\nrevision = \"main?evil\"\n", "spec.toml");
  auto e = ParseOptions(**bad);
  ASSERT_FALSE(e);
  EXPECT_EQ(e.code(), EINVAL);
  EXPECT_NE(e.error().message().find("revision"), std::string::npos);
}

TEST(HubRawPrefixTest, EntriesOutsideTheFolderAreDroppedAcrossPages) {
  hfvfs::testing::HubEmulatorProcess sloppy;
  ASSERT_TRUE(sloppy.StartScript(
      std::string(HFVFS_SOURCE_DIR) + "/plugins/hub/testdata/raw_prefix_hub.py", {}))
      << sloppy.error();
  HubOptions o;
  o.repo = "o/n";
  o.endpoint = sloppy.endpoint();
  o.token = "";
  HubLayer layer(o);
  ASSERT_TRUE(layer.start());
  auto entries = layer.list("a");
  ASSERT_TRUE(entries) << entries.error().message();
  std::map<std::string, Attr> got;
  for (auto& e : *entries) got[e.name] = e.attr;
  // a/x.txt (page 1), a/b and a/big.bin (page 2); not ab/..., a.json, a itself or a/b/deeper.
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got["x.txt"].size, 3u);
  EXPECT_TRUE(got["b"].is_dir());
  EXPECT_EQ(got["big.bin"].size, 123456789u);  // lfs.size, not the pointer's 134
  EXPECT_EQ(layer.stat("a/neighbour.txt").code(), ENOENT);
  EXPECT_EQ(layer.hub_counters().listings.load(), 3);  // the root at start, two pages of a
}

TEST_F(HubLayerTest, StartResolvesTheRevisionToItsCommit) {
  auto layer = Started(Options("hfvfs-test/tiny-model"));
  const json& repo = Repo("model/hfvfs-test/tiny-model");
  EXPECT_EQ(layer->commit(), repo["commits"]["main"].get<std::string>());
  EXPECT_FALSE(layer->capabilities().immutable);
  EXPECT_TRUE(layer->capabilities().changes);
  EXPECT_FALSE(layer->capabilities().writable);
  auto a = layer->stat("config.json");
  ASSERT_TRUE(a) << a.error().message();
  EXPECT_EQ(a->version.substr(0, 41), layer->commit() + ":");
  EXPECT_GT(a->mtime_ns, 0);

  auto pinned = Started(Options("hfvfs-test/tiny-model", repo["commits"]["v1"].get<std::string>()));
  EXPECT_TRUE(pinned->capabilities().immutable);
  EXPECT_FALSE(pinned->capabilities().changes);
}

TEST_F(HubLayerTest, WholeModelTreeMatchesTheFixtureByteForByte) {
  auto layer = Started(Options("hfvfs-test/tiny-model"));
  int files = 0;
  ExpectSameTree(*layer, FilesDir("model/hfvfs-test/tiny-model"), "", true, &files);
  EXPECT_GE(files, 10);
  // LFS files report their real size, not the pointer's.
  auto st = layer->stat("model.safetensors");
  ASSERT_TRUE(st);
  EXPECT_EQ(st->size, fs::file_size(FilesDir("model/hfvfs-test/tiny-model") / "model.safetensors"));
}

TEST_F(HubLayerTest, EveryRevisionForm) {
  const json& repo = Repo("model/hfvfs-test/tiny-model");
  struct Case {
    std::string revision, commit_name;
  } cases[] = {{"v1.0", "v1"},
               {"refs/pr/1", "pr1"},
               {repo["commits"]["main"].get<std::string>(), "main"},
               {"feature/x", "v1"}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.revision);
    auto layer = Started(Options("hfvfs-test/tiny-model", c.revision));
    EXPECT_EQ(layer->commit(), repo["commits"][c.commit_name].get<std::string>());
    int files = 0;
    ExpectSameTree(*layer, FilesDir("model/hfvfs-test/tiny-model", c.commit_name), "", true,
                   &files);
  }
  auto missing = std::make_unique<HubLayer>(Options("hfvfs-test/tiny-model", "no-such-branch"));
  Status s = missing->start();
  ASSERT_FALSE(s);
  EXPECT_EQ(s.code(), ENOENT);
}

TEST_F(HubLayerTest, RangeReadsAtOddOffsetsThroughTheCdn) {
  auto layer = Started(Options("hfvfs-test/tiny-model"));
  std::string want = ReadAll(FilesDir("model/hfvfs-test/tiny-model") / "onnx" / "model.onnx");
  auto f = layer->open("onnx/model.onnx", O_RDONLY);
  ASSERT_TRUE(f);
  for (uint64_t off : {0ul, 1ul, 4095ul, 33333ul, 65535ul, 12345ul}) {
    std::vector<std::byte> buf(777);
    auto n = (*f)->read(off, buf);
    ASSERT_TRUE(n) << n.error().message();
    size_t expect = std::min<size_t>(777, want.size() - off);
    ASSERT_EQ(*n, expect) << off;
    EXPECT_EQ(AsString(std::span(buf).first(*n)), want.substr(off, expect)) << off;
  }
  std::vector<std::byte> past(10);
  EXPECT_EQ(*(*f)->read(want.size(), past), 0u);
  // The signed CDN URL was resolved once and then reused.
  EXPECT_EQ(layer->hub_counters().resolves.load(), 1);
  EXPECT_GE(layer->hub_counters().url_cache_hits.load(), 5);
}

TEST_F(HubLayerTest, SequentialReaderUsesOneStream) {
  auto layer = Started(Options("hfvfs-test/tiny-model"));
  std::string want = ReadAll(FilesDir("model/hfvfs-test/tiny-model") / "onnx" / "model.onnx");
  ASSERT_TRUE(layer->stat("onnx/model.onnx"));  // the listing of onnx/ is not counted
  int64_t before = layer->http().counters().requests.load();
  EXPECT_EQ(ReadFile(*layer, "onnx/model.onnx", 4096), want);
  int64_t requests = layer->http().counters().requests.load() - before;
  // resolve (302) + first ranged read + one stream for the other 15 reads.
  EXPECT_LE(requests, 3) << emu_->Stats();
  EXPECT_EQ(layer->hub_counters().streams.load(), 1);
  // A small forward seek stays in the stream.
  auto f = layer->open("onnx/model.onnx", O_RDONLY);
  std::vector<std::byte> buf(1000);
  ASSERT_TRUE((*f)->read(0, buf));
  ASSERT_TRUE((*f)->read(1000, buf));
  auto n = (*f)->read(5000, buf);
  ASSERT_TRUE(n);
  EXPECT_EQ(AsString(std::span(buf).first(*n)), want.substr(5000, 1000));
  EXPECT_EQ(layer->hub_counters().skipped_bytes.load(), 3000);
}

TEST_F(HubLayerTest, FirstByteOfAColdLfsFileTakesTwoRequests) {
  auto layer = Started(Options("hfvfs-test/tiny-model"));
  int64_t before = layer->http().counters().requests.load();
  auto f = layer->open("model.safetensors", O_RDONLY);  // the root was listed by start()
  ASSERT_TRUE(f) << f.error().message();
  std::vector<std::byte> one(1);
  auto n = (*f)->read(0, one);
  ASSERT_TRUE(n) << n.error().message();
  EXPECT_EQ(*n, 1u);
  EXPECT_EQ(layer->http().counters().requests.load() - before, 2);  // resolve (302) + CDN
}

// Reads the 8 KiB block at `off` of `file` and checks it against `want`.
void ExpectBlockAt(File& file, const std::string& want, uint64_t off) {
  std::vector<std::byte> buf(8192);
  auto n = file.read(off, buf);
  ASSERT_TRUE(n) << n.error().message();
  ASSERT_EQ(*n, buf.size()) << off;
  EXPECT_EQ(AsString(buf), want.substr(off, buf.size())) << off;
}

TEST_F(HubLayerTest, OutOfOrderReadaheadIsServedFromOneStream) {
  auto layer = Started(Options("hfvfs-test/tiny-model"));
  std::string want = ReadAll(FilesDir("model/hfvfs-test/tiny-model") / "onnx" / "model.onnx");
  auto f = layer->open("onnx/model.onnx", O_RDONLY);
  ASSERT_TRUE(f);
  auto expect_at = [&](uint64_t off) { ExpectBlockAt(**f, want, off); };
  expect_at(0);
  expect_at(8192);  // sequential: the stream starts here
  // The kernel's readahead asks for later blocks first.
  for (uint64_t off : {40960ul, 16384ul, 24576ul, 32768ul, 49152ul, 57344ul}) expect_at(off);
  EXPECT_EQ(layer->hub_counters().streams.load(), 1);
  EXPECT_EQ(layer->hub_counters().ranged.load(), 1);  // only the very first read
  EXPECT_EQ(layer->hub_counters().saved_hits.load(), 3);
}

TEST_F(HubLayerTest, ALateReadBehindTheStreamDoesNotRestartIt) {
  auto layer = Started(Options("hfvfs-test/tiny-model"));
  std::string want = ReadAll(FilesDir("model/hfvfs-test/tiny-model") / "onnx" / "model.onnx");
  ASSERT_GE(want.size(), 6u * 8192);
  auto f = layer->open("onnx/model.onnx", O_RDONLY);
  ASSERT_TRUE(f);
  auto expect_at = [&](uint64_t off) { ExpectBlockAt(**f, want, off); };
  expect_at(0);      // ranged
  expect_at(8192);   // the stream starts here
  expect_at(32768);  // skips ahead in it (16384..32767 kept)
  expect_at(0);      // behind the stream: ranged
  expect_at(8192);   // the end of the last read, but behind the stream: ranged, stream kept
  expect_at(40960);  // the stream goes on
  EXPECT_EQ(layer->hub_counters().streams.load(), 1);
  EXPECT_EQ(layer->hub_counters().ranged.load(), 3);
}

TEST_F(HubLayerTest, ConcurrentReadAheadOfTheStreamWaitsForTheEarlierRead) {
  HubOptions o = Options("hfvfs-test/tiny-model");
  o.reorder_grace = milliseconds(5000);  // long, so the test does not depend on timing
  auto layer = Started(o);
  std::string want = ReadAll(FilesDir("model/hfvfs-test/tiny-model") / "onnx" / "model.onnx");
  ASSERT_GE(want.size(), 6u * 8192);
  auto f = layer->open("onnx/model.onnx", O_RDONLY);
  ASSERT_TRUE(f);
  File& file = **f;
  auto read_at = [&](uint64_t off) {
    std::vector<std::byte> buf(8192);
    auto n = file.read(off, buf);
    return n && *n == buf.size() && AsString(buf) == want.substr(off, buf.size());
  };
  // Two reads overlap in time (the first one's CDN answer is delayed): the handle now knows it
  // has concurrent readers.
  emu_->Control("POST", "/_emulator/faults",
                R"({"path_glob":"/lfs/*","kind":"delay","delay_ms":400,"port":"cdn",)"
                R"("times":1})");
  std::thread first([&] { EXPECT_TRUE(read_at(0)); });
  std::this_thread::sleep_for(milliseconds(150));
  EXPECT_TRUE(read_at(8192));
  first.join();
  EXPECT_TRUE(read_at(16384));
  EXPECT_TRUE(read_at(24576));  // the second read in a row: the stream opens, now at 32768
  ASSERT_EQ(layer->hub_counters().streams.load(), 1);
  // The read of the next block but one comes first and waits; the next block's read then
  // takes the stream, and the waiting read follows it: nothing is skipped or kept.
  auto t0 = std::chrono::steady_clock::now();
  std::thread ahead([&] { EXPECT_TRUE(read_at(40960)); });
  std::this_thread::sleep_for(milliseconds(200));
  EXPECT_TRUE(read_at(32768));
  ahead.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, milliseconds(3000));  // not the grace
  EXPECT_GE(layer->hub_counters().inorder_waits.load(), 1);
  EXPECT_EQ(layer->hub_counters().skipped_bytes.load(), 0);
  EXPECT_EQ(layer->hub_counters().saved_hits.load(), 0);
  EXPECT_EQ(layer->hub_counters().streams.load(), 1);
}

TEST_F(HubLayerTest, ConcurrentReadersOfOneFileGetTheRightBytes) {
  auto layer = Started(Options("hfvfs-test/tiny-model"));
  std::string want = ReadAll(FilesDir("model/hfvfs-test/tiny-model") / "onnx" / "model.onnx");
  auto f = layer->open("onnx/model.onnx", O_RDONLY);
  ASSERT_TRUE(f);
  File& file = **f;
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      std::vector<std::byte> buf(1000 + 517 * t);
      for (int i = 0; i < 40; ++i) {
        // Half the threads walk forward (sequential), half jump around.
        uint64_t off = t % 2 ? (uint64_t(i) * buf.size()) % want.size()
                             : (uint64_t(i) * 7919 + t * 1237) % want.size();
        auto n = file.read(off, buf);
        size_t expect = std::min<size_t>(buf.size(), want.size() - off);
        if (!n || *n != expect || AsString(std::span(buf).first(*n)) != want.substr(off, expect)) {
          ++wrong;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST_F(HubLayerTest, ConcurrentColdLookupsInOneFolderListItOnce) {
  emu_->Control(
      "POST", "/_emulator/faults",
      R"({"path_glob":"*/tree/*/train/part-000*","kind":"delay","delay_ms":300,"times":1})");
  auto layer = Started(Options("datasets/hfvfs-test/many-files"));
  auto root = layer->list("");
  ASSERT_TRUE(root) << root.error().message();
  ASSERT_TRUE(layer->list("train"));
  std::string dir = "train/part-000";
  auto files = std::make_shared<std::vector<std::string>>();
  {
    // The names, from the fixture (the layer has not listed `dir` yet).
    for (auto& e : fs::directory_iterator(FilesDir("dataset/hfvfs-test/many-files") / dir)) {
      files->push_back(e.path().filename().string());
    }
  }
  int64_t pages_before = layer->hub_counters().listings.load();
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      if (!layer->stat(dir + "/" + (*files)[t % files->size()])) ++wrong;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(layer->hub_counters().listings.load() - pages_before, 1);
}

TEST_F(HubLayerTest, StalledResponseIsAbortedAndRetried) {
  HubOptions o = Options("hfvfs-test/tiny-model");
  o.stall_timeout = milliseconds(400);
  auto layer = Started(o);
  emu_->Control(
      "POST", "/_emulator/faults",
      R"({"path_glob":"*/resolve/*/tokenizer.json","kind":"delay","delay_ms":3000,"times":1})");
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(ReadFile(*layer, "tokenizer.json"),
            ReadAll(FilesDir("model/hfvfs-test/tiny-model") / "tokenizer.json"));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, milliseconds(2500));
  EXPECT_GE(layer->http().counters().retries.load(), 1);
}

TEST_F(HubLayerTest, SubfolderMount) {
  HubOptions o = Options("hfvfs-test/tiny-model");
  o.subfolder = "a/b";
  auto layer = Started(o);
  auto root = layer->list("");
  ASSERT_TRUE(root) << root.error().message();
  ASSERT_EQ(root->size(), 1u);
  EXPECT_EQ((*root)[0].name, "c");
  EXPECT_EQ(ReadFile(*layer, "c/deep.txt"),
            ReadAll(FilesDir("model/hfvfs-test/tiny-model") / "a/b/c/deep.txt"));
  EXPECT_EQ(layer->stat("config.json").code(), ENOENT);

  HubOptions bad = Options("hfvfs-test/tiny-model");
  bad.subfolder = "nope";
  HubLayer missing(bad);
  EXPECT_EQ(missing.start().code(), ENOENT);
  HubOptions file = Options("hfvfs-test/tiny-model");
  file.subfolder = "onnx/config.json";
  HubLayer not_a_folder(file);
  EXPECT_EQ(not_a_folder.start().code(), ENOTDIR);
}

TEST_F(HubLayerTest, DatasetWithPaginationAndSpace) {
  emu_->Control("POST", "/_emulator/config", R"({"tree_page_size": 37})");
  auto layer = Started(Options("datasets/hfvfs-test/many-files"));
  int files = 0;
  ExpectSameTree(*layer, FilesDir("dataset/hfvfs-test/many-files"), "", false, &files);
  EXPECT_EQ(files, 10000);
  EXPECT_GT(layer->hub_counters().listings.load(), 10000 / 37);

  auto space = Started(Options("spaces/hfvfs-test/tiny-space"));
  int space_files = 0;
  ExpectSameTree(*space, FilesDir("space/hfvfs-test/tiny-space"), "", true, &space_files);
  EXPECT_GE(space_files, 1);
}

TEST_F(HubLayerTest, PrivateRepoNeedsAToken) {
  HubLayer anonymous(Options("hfvfs-test/private-model"));
  Status s = anonymous.start();
  ASSERT_FALSE(s);
  EXPECT_EQ(s.code(), EACCES);
  EXPECT_EQ(s.error().message().find("hf_"), std::string::npos);  // no token in messages

  HubOptions o = Options("hfvfs-test/private-model");
  o.token = Token();
  auto layer = Started(o);
  int files = 0;
  ExpectSameTree(*layer, FilesDir("model/hfvfs-test/private-model"), "", true, &files);
  // The LFS file went through the CDN, which never saw the token.
  json stats = json::parse(emu_->Stats());
  EXPECT_GT(stats["requests"]["cdn"].get<int>(), 0);
  EXPECT_TRUE(stats["cdn_authorization"].empty()) << stats["cdn_authorization"].dump();
  EXPECT_GT(stats["hub_authorization_count"].get<int>(), 0);
}

TEST_F(HubLayerTest, GatedRepoListsButReadsNeedAGrantedToken) {
  auto layer = Started(Options("hfvfs-test/gated-model"));
  auto f = layer->open("config.json", O_RDONLY);
  ASSERT_TRUE(f) << f.error().message();
  std::vector<std::byte> buf(8);
  auto n = (*f)->read(0, buf);
  ASSERT_FALSE(n);
  EXPECT_EQ(n.code(), EACCES);
  EXPECT_NE(n.error().message().find("GatedRepo"), std::string::npos) << n.error().message();
  HubOptions o = Options("hfvfs-test/gated-model");
  o.token = Token();
  auto granted = Started(o);
  EXPECT_EQ(ReadFile(*granted, "config.json"),
            ReadAll(FilesDir("model/hfvfs-test/gated-model") / "config.json"));
}

TEST_F(HubLayerTest, EndpointAndTokenFromTheEnvironment) {
  HubOptions o = Options("hfvfs-test/private-model");
  o.endpoint = "";
  o.token.reset();
  setenv("HF_ENDPOINT", emu_->endpoint().c_str(), 1);
  setenv("HF_TOKEN", Token().c_str(), 1);
  auto layer = Started(o);
  unsetenv("HF_ENDPOINT");
  unsetenv("HF_TOKEN");
  EXPECT_EQ(ReadFile(*layer, "config.json"),
            ReadAll(FilesDir("model/hfvfs-test/private-model") / "config.json"));
}

TEST_F(HubLayerTest, TokenFileIsReReadWhenItChanges) {
  char tmpl[] = "/tmp/hfvfs-hub-token-XXXXXX";
  int fd = mkstemp(tmpl);
  ASSERT_GE(fd, 0);
  close(fd);
  std::string path = tmpl;
  std::ofstream(path) << Token() << "\n";
  HubOptions o = Options("hfvfs-test/private-model");
  o.token_file = path;
  auto layer = Started(o);
  EXPECT_TRUE(layer->stat("config.json"));
  // Rotate to a revoked token: requests now fail with EACCES...
  std::this_thread::sleep_for(milliseconds(20));
  std::ofstream(path, std::ios::trunc) << "hf_revoked_token_000000000000000000\n";
  auto f = layer->open("README.md", O_RDONLY);
  ASSERT_TRUE(f);
  std::vector<std::byte> buf(16);
  auto n = (*f)->read(0, buf);
  ASSERT_FALSE(n);
  EXPECT_EQ(n.code(), EACCES);
  EXPECT_EQ(n.error().message().find("hf_revoked"), std::string::npos);
  // ...and work again once the file holds a valid one.
  std::this_thread::sleep_for(milliseconds(20));
  std::ofstream(path, std::ios::trunc) << Token() << "\n";
  auto again = (*f)->read(0, buf);
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_GT(*again, 0u);
  unlink(path.c_str());
}

TEST_F(HubLayerTest, WritesAreRefused) {
  auto layer = Started(Options("hfvfs-test/tiny-model"));
  EXPECT_EQ(layer->open("config.json", O_WRONLY).code(), EROFS);
  EXPECT_EQ(layer->open("config.json", O_RDWR).code(), EROFS);
  EXPECT_EQ(layer->create("new.txt", 0644, O_WRONLY).code(), EROFS);
  EXPECT_EQ(layer->mkdir("d", 0755).code(), EROFS);
  EXPECT_EQ(layer->remove("config.json").code(), EROFS);
  EXPECT_EQ(layer->rename("config.json", "x", false).code(), EROFS);
  EXPECT_EQ(layer->stat("nope.txt").code(), ENOENT);
  EXPECT_EQ(layer->list("config.json").code(), ENOTDIR);
  EXPECT_EQ(layer->open("onnx", O_RDONLY).code(), EISDIR);
}

TEST_F(HubLayerTest, RateLimitedTwiceThenServed) {
  auto layer = Started(Options("hfvfs-test/tiny-model"));
  emu_->Control(
      "POST", "/_emulator/faults",
      R"({"path_glob":"*/resolve/*/config.json","kind":"ratelimit","ratelimit_t":1,"times":2})");
  auto t0 = std::chrono::steady_clock::now();
  std::string got = ReadFile(*layer, "config.json");
  auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(got, ReadAll(FilesDir("model/hfvfs-test/tiny-model") / "config.json"));
  EXPECT_GE(waited, milliseconds(1900));  // t=1 honoured twice
  EXPECT_GE(layer->http().counters().retries.load(), 2);
}

TEST_F(HubLayerTest, CutShortBodiesGiveTheRightBytes) {
  auto layer = Started(Options("hfvfs-test/tiny-model"));
  std::string want = ReadAll(FilesDir("model/hfvfs-test/tiny-model") / "onnx" / "model.onnx");
  emu_->Control(
      "POST", "/_emulator/faults",
      R"([{"path_glob":"/lfs/*","kind":"truncate","after_bytes":1000,"times":2,"port":"cdn"},
                    {"path_glob":"/lfs/*","kind":"drop","after_bytes":30000,"times":1,"port":"cdn"}])");
  EXPECT_EQ(ReadFile(*layer, "onnx/model.onnx", 8192), want);
  EXPECT_GE(layer->hub_counters().resumed.load() + layer->http().counters().resumed.load(), 1);
}

TEST_F(HubLayerTest, FiveServerErrorsAreEioAndOtherFilesStillServe) {
  auto layer = Started(Options("hfvfs-test/tiny-model"));
  emu_->Control(
      "POST", "/_emulator/faults",
      R"({"path_glob":"*/resolve/*/config.json","kind":"status","status":500,"times":5})");
  auto f = layer->open("config.json", O_RDONLY);
  ASSERT_TRUE(f);
  std::vector<std::byte> buf(64);
  auto t0 = std::chrono::steady_clock::now();
  auto n = (*f)->read(0, buf);
  ASSERT_FALSE(n);
  EXPECT_EQ(n.code(), EIO);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
  EXPECT_EQ(ReadFile(*layer, "tokenizer.json"),
            ReadAll(FilesDir("model/hfvfs-test/tiny-model") / "tokenizer.json"));
}

TEST_F(HubLayerTest, RefusedSignedUrlIsResolvedAgain) {
  auto layer = Started(Options("hfvfs-test/tiny-model"));
  std::string want = ReadAll(FilesDir("model/hfvfs-test/tiny-model") / "model.safetensors");
  auto f = layer->open("model.safetensors", O_RDONLY);
  ASSERT_TRUE(f);
  std::vector<std::byte> buf(8);
  ASSERT_TRUE((*f)->read(0, buf));
  // The CDN now refuses the cached URL once, as it does for an expired signature.
  emu_->Control("POST", "/_emulator/faults",
                R"({"path_glob":"/lfs/*","kind":"status","status":403,"times":1,"port":"cdn"})");
  auto n = (*f)->read(100, buf);
  ASSERT_TRUE(n) << n.error().message();
  EXPECT_EQ(AsString(std::span(buf).first(*n)), want.substr(100, 8));
  EXPECT_EQ(layer->hub_counters().url_refreshes.load(), 1);
  EXPECT_EQ(layer->hub_counters().resolves.load(), 2);
}

TEST_F(HubLayerTest, ExpiringSignedUrlsAreNotUsedPastTheirTime) {
  emu_->Control("POST", "/_emulator/config", R"({"cdn_ttl": 2})");
  auto layer = Started(Options("hfvfs-test/tiny-model"));
  std::string want = ReadAll(FilesDir("model/hfvfs-test/tiny-model") / "model.safetensors");
  auto f = layer->open("model.safetensors", O_RDONLY);
  std::vector<std::byte> buf(16);
  ASSERT_TRUE((*f)->read(0, buf));
  std::this_thread::sleep_for(milliseconds(2600));
  auto n = (*f)->read(200, buf);
  ASSERT_TRUE(n) << n.error().message();
  EXPECT_EQ(AsString(std::span(buf).first(*n)), want.substr(200, 16));
  EXPECT_EQ(layer->hub_counters().resolves.load(), 2);  // re-resolved, not refused by the CDN
  EXPECT_EQ(layer->hub_counters().url_refreshes.load(), 0);
}

TEST_F(HubLayerTest, ChangesFollowTheBranchHead) {
  const json& repo = Repo("model/hfvfs-test/tiny-model");
  auto layer = Started(Options("hfvfs-test/tiny-model"));
  auto none = layer->changes();
  ASSERT_TRUE(none) << none.error().message();
  EXPECT_FALSE(none->rescan);
  std::string v1 = repo["commits"]["v1"].get<std::string>();
  emu_->Control("POST", "/_emulator/refs",
                R"({"repo":"hfvfs-test/tiny-model","repo_type":"model","branch":"main","sha":")" +
                    v1 + R"("})");
  EXPECT_TRUE(layer->stat("config.json"));  // the view is still the start commit
  auto moved = layer->changes();
  ASSERT_TRUE(moved) << moved.error().message();
  EXPECT_TRUE(moved->rescan);
  EXPECT_EQ(moved->token, v1);
  EXPECT_EQ(layer->commit(), v1);
  EXPECT_EQ(layer->stat("empty.txt").code(), ENOENT);  // v1 has no empty.txt
  int files = 0;
  ExpectSameTree(*layer, FilesDir("model/hfvfs-test/tiny-model", "v1"), "", true, &files);
}

TEST_F(HubLayerTest, CountersAreReported) {
  auto layer = Started(Options("hfvfs-test/tiny-model"));
  ReadFile(*layer, "config.json");
  std::vector<std::pair<std::string, int64_t>> c;
  layer->counters(c);
  std::map<std::string, int64_t> m(c.begin(), c.end());
  EXPECT_GE(m["requests"], 3);
  EXPECT_EQ(m["retries"], 0);
  EXPECT_GT(m["bytes_fetched"], 0);
  EXPECT_EQ(m["tree_pages"], 1);
}

}  // namespace
}  // namespace hfvfs::hub
