// The s3 layer against a real S3 implementation (OpenStack Swift + s3api on 127.0.0.1, see
// tests/support/swift_s3.py), cross-checked with boto3 (tests/support/s3_boto3.py): what the
// layer writes boto3 reads back byte for byte (and multipart ETags have the "-N" form), and what
// boto3 puts the layer lists and reads.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sodium.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <random>
#include <set>
#include <thread>

#include "s3_client.h"
#include "s3_layer.h"
#include "s3_test_server.h"

namespace hfvfs::s3 {
namespace {

using hfvfs::testing::S3TestServer;

std::string Md5Hex(std::string_view data) {
  // libsodium has no MD5; a tiny one is not worth writing: ask Python, the same tool that
  // checks everything else here.
  char path[] = "/tmp/hfvfs-md5-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return "";
  (void)!::write(fd, data.data(), data.size());
  ::close(fd);
  std::string cmd = std::string(
                        "/usr/bin/python3 -c \"import hashlib,sys;print(hashlib.md5("
                        "open(sys.argv[1],'rb').read()).hexdigest())\" ") +
                    path;
  FILE* p = popen(cmd.c_str(), "r");
  char buf[64] = {0};
  size_t n = fread(buf, 1, sizeof buf - 1, p);
  pclose(p);
  unlink(path);
  std::string out(buf, n);
  while (!out.empty() && (out.back() == '\n')) out.pop_back();
  return out;
}

std::string RandomBytes(size_t n, uint32_t seed) {
  std::string s(n, '\0');
  std::mt19937 rng(seed);
  for (size_t i = 0; i < n; i += 4) {
    uint32_t v = rng();
    std::memcpy(s.data() + i, &v, std::min<size_t>(4, n - i));
  }
  return s;
}

std::span<const std::byte> Bytes(std::string_view s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

// A JSON string field of boto3's answer.
std::string JsonField(const std::string& json, const std::string& key) {
  std::string needle = "\"" + key + "\": ";
  size_t at = json.find(needle);
  if (at == std::string::npos) return "";
  at += needle.size();
  if (json[at] == '"') {
    std::string out;
    for (size_t i = at + 1; i < json.size() && json[i] != '"'; ++i) {
      if (json[i] == '\\' && i + 1 < json.size()) ++i;
      out.push_back(json[i]);
    }
    return out;
  }
  return json.substr(at, json.find_first_of(",}", at) - at);
}

class S3LayerTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server().ok()) << server().error; }

  virtual const S3TestServer& server() const { return S3TestServer::Get(); }

  static std::string ShellQuote(const std::string& s) {
    std::string out = "'";
    for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return out + "'";
  }

  std::shared_ptr<S3Client> MakeClient(const std::string& bucket, bool virtual_host = false,
                                       std::string secret = "") {
    S3Location loc;
    EXPECT_TRUE(ParseEndpoint(server().endpoint, loc).ok());
    loc.bucket = bucket;
    loc.region = server().region;
    HttpClientOptions curl;
    if (virtual_host) {
      loc.virtual_host = true;
      loc.host = server().storage_domain;
      curl.resolve = {bucket + "." + loc.host + ":" + std::to_string(server().port) + ":127.0.0.1"};
    }
    Credentials creds{server().access_key, secret.empty() ? server().secret_key : secret, "",
                      "test"};
    RetryOptions retry;
    retry.max_retries = 2;
    retry.base_delay = std::chrono::milliseconds(50);
    return std::make_shared<S3Client>(loc, creds, std::make_shared<SdkTransport>(curl), retry);
  }

  // A fresh bucket of this test's own and a layer over it.
  std::shared_ptr<S3Layer> MakeLayer(S3LayerOptions options = {}, bool virtual_host = false) {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    bucket_ = S3TestServer::UniqueBucket(std::string(info->name()).substr(0, 40));
    auto client = MakeClient(bucket_, virtual_host);
    Status created = client->create_bucket();
    EXPECT_TRUE(created.ok()) << created.error().message();
    auto layer = std::make_shared<S3Layer>(client, options);
    Status started = layer->start();
    EXPECT_TRUE(started.ok()) << started.error().message();
    return layer;
  }

  std::string Boto3(const std::string& args) { return server().Boto3(args); }

  // Writes a whole file, making its folders first (as mkdir -p would).
  static Status WriteFile(Layer& layer, const std::string& path, std::string_view data,
                          size_t chunk = 1 << 20) {
    for (size_t slash = path.find('/'); slash != std::string::npos;
         slash = path.find('/', slash + 1)) {
      Status made = layer.mkdir(path.substr(0, slash), 0755);
      if (!made && made.code() != EEXIST) return made;
    }
    HFVFS_ASSIGN_OR_RETURN(auto file, layer.create(path, 0644, O_WRONLY | O_CREAT | O_TRUNC));
    for (size_t off = 0; off < data.size(); off += chunk) {
      auto n = file->write(off, Bytes(data.substr(off, chunk)));
      if (!n) return n.error();
    }
    HFVFS_RETURN_IF_ERROR(file->flush());
    return file->close();
  }

  static Result<std::string> ReadFile(Layer& layer, const std::string& path,
                                      size_t chunk = 128 << 10) {
    HFVFS_ASSIGN_OR_RETURN(auto file, layer.open(path, O_RDONLY));
    std::string out;
    std::vector<std::byte> buf(chunk);
    for (;;) {
      HFVFS_ASSIGN_OR_RETURN(size_t n, file->read(out.size(), buf));
      if (n == 0) break;
      out.append(reinterpret_cast<const char*>(buf.data()), n);
    }
    HFVFS_RETURN_IF_ERROR(file->close());
    return out;
  }

  std::string bucket_;
};

TEST_F(S3LayerTest, SmallFileWrittenIsReadByBoto3) {
  auto layer = MakeLayer();
  std::string data = "hello from hfvfs\n";
  ASSERT_TRUE(WriteFile(*layer, "hello.txt", data).ok());
  std::string got = Boto3("get " + bucket_ + " hello.txt");
  EXPECT_EQ(JsonField(got, "size"), std::to_string(data.size())) << got;
  EXPECT_EQ(JsonField(got, "md5"), Md5Hex(data)) << got;
  Result<Attr> a = layer->stat("hello.txt");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->size, data.size());
  EXPECT_EQ(a->version, JsonField(got, "etag"));
  EXPECT_EQ(a->version, "\"" + Md5Hex(data) + "\"");
}

TEST_F(S3LayerTest, MultipartUploadHasDashNEtagAndRightBytes) {
  S3LayerOptions options;
  options.part_size = 5 << 20;
  options.upload_concurrency = 2;
  auto layer = MakeLayer(options);
  std::string data = RandomBytes((12 << 20) + 12345, 7);
  ASSERT_TRUE(WriteFile(*layer, "big/blob.bin", data, 1 << 20).ok());
  std::string got = Boto3("get " + bucket_ + " big/blob.bin");
  EXPECT_EQ(JsonField(got, "size"), std::to_string(data.size())) << got;
  EXPECT_EQ(JsonField(got, "md5"), Md5Hex(data));
  std::string etag = JsonField(got, "etag");
  ASSERT_GE(etag.size(), 3u);
  EXPECT_EQ(etag.substr(etag.size() - 3), "-3\"") << etag;
  // And back through the layer, with a mix of chunk sizes.
  Result<std::string> back = ReadFile(*layer, "big/blob.bin", 1 << 20);
  ASSERT_TRUE(back.ok()) << back.error().message();
  EXPECT_TRUE(*back == data);
  EXPECT_EQ(Boto3("uploads " + bucket_), "{\"uploads\": []}\n");
}

TEST_F(S3LayerTest, ObjectsPutByBoto3AreListedAndRead) {
  auto layer = MakeLayer();
  std::string data = RandomBytes(300000, 3);
  char path[] = "/tmp/hfvfs-s3-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
  ::close(fd);
  for (std::string key : {"dir/a b+c ü.bin", "dir/sub/deep.bin", "top.bin"}) {
    std::string r = Boto3("put " + bucket_ + " " + ShellQuote(key) + " " + path);
    ASSERT_EQ(r.find("ERROR"), std::string::npos) << r;
  }
  unlink(path);
  auto root = layer->list("");
  ASSERT_TRUE(root.ok()) << root.error().message();
  std::map<std::string, Attr> names;
  for (auto& e : *root) names[e.name] = e.attr;
  ASSERT_EQ(names.size(), 2u);
  EXPECT_TRUE(names["dir"].is_dir());
  EXPECT_EQ(names["top.bin"].size, data.size());
  auto dir = layer->list("dir");
  ASSERT_TRUE(dir.ok());
  ASSERT_EQ(dir->size(), 2u);
  for (auto& e : *dir) {
    if (e.name == "sub") {
      EXPECT_TRUE(e.attr.is_dir());
    } else {
      EXPECT_EQ(e.name, "a b+c \xC3\xBC.bin");
      EXPECT_EQ(e.attr.size, data.size());
      EXPECT_EQ(e.attr.version, "\"" + Md5Hex(data) + "\"");
      EXPECT_GT(e.attr.mtime_ns, 0);
    }
  }
  Result<std::string> back = ReadFile(*layer, "dir/a b+c \xC3\xBC.bin", 4096);
  ASSERT_TRUE(back.ok()) << back.error().message();
  EXPECT_TRUE(*back == data);
  EXPECT_TRUE(layer->stat("dir/sub").value().is_dir());
  EXPECT_EQ(layer->stat("dir/nope").code(), ENOENT);
  EXPECT_EQ(layer->list("top.bin").code(), ENOTDIR);
  EXPECT_EQ(layer->list("nothing").code(), ENOENT);
}

TEST_F(S3LayerTest, ListingFollowsContinuationTokens) {
  S3LayerOptions options;
  options.list_page_size = 7;
  auto layer = MakeLayer(options);
  std::string r = Boto3("put-many " + bucket_ + " flat/f 40");
  ASSERT_EQ(r.find("ERROR"), std::string::npos) << r;
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(WriteFile(*layer, "flat/d" + std::to_string(i) + "/x", "x").ok());
  }
  auto list = layer->list("flat");
  ASSERT_TRUE(list.ok()) << list.error().message();
  std::set<std::string> names;
  int dirs = 0;
  for (auto& e : *list) {
    names.insert(e.name);
    dirs += e.attr.is_dir();
  }
  EXPECT_EQ(list->size(), 45u);
  EXPECT_EQ(names.size(), 45u);
  EXPECT_EQ(dirs, 5);
  EXPECT_TRUE(names.count("f00039"));
}

TEST_F(S3LayerTest, RangedReadsAtAnyOffset) {
  auto layer = MakeLayer();
  std::string data = RandomBytes(3 << 20, 11);
  ASSERT_TRUE(WriteFile(*layer, "r.bin", data).ok());
  auto file = layer->open("r.bin", O_RDONLY);
  ASSERT_TRUE(file.ok());
  std::mt19937 rng(5);
  for (int i = 0; i < 40; ++i) {
    uint64_t off = rng() % (data.size() + 100);
    size_t len = 1 + rng() % 300000;
    std::vector<std::byte> buf(len);
    auto n = (*file)->read(off, buf);
    ASSERT_TRUE(n.ok()) << n.error().message();
    size_t want = off >= data.size() ? 0 : std::min<size_t>(len, data.size() - off);
    ASSERT_EQ(*n, want) << "offset " << off;
    EXPECT_EQ(std::memcmp(buf.data(), data.data() + std::min<size_t>(off, data.size()), want), 0);
  }
  EXPECT_TRUE((*file)->close().ok());
}

TEST_F(S3LayerTest, ReplacedObjectIsStaleNotMixed) {
  auto layer = MakeLayer();
  const std::string v1 = RandomBytes(16 << 20, 1);
  ASSERT_TRUE(WriteFile(*layer, "v.bin", v1, 8 << 20).ok());
  auto file = layer->open("v.bin", O_RDONLY);
  ASSERT_TRUE(file.ok());
  std::vector<std::byte> buf(4096);
  ASSERT_TRUE((*file)->read(0, buf).ok());  // a sequential start: a stream of version 1
  ASSERT_TRUE(WriteFile(*layer, "v.bin", RandomBytes(16 << 20, 2), 8 << 20).ok());
  // The open stream may go on with version 1's bytes (never version 2's)...
  auto next = (*file)->read(4096, buf);
  if (next.ok()) {
    ASSERT_EQ(*next, buf.size());
    EXPECT_EQ(std::memcmp(buf.data(), v1.data() + 4096, buf.size()), 0);
  } else {
    EXPECT_EQ(next.code(), ESTALE);
  }
  // ...and a read that needs a request of its own is ESTALE.
  auto n = (*file)->read(12 << 20, buf);
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.code(), ESTALE);
}

// Reads a whole file in 1 MiB blocks, four at a time in the order 1 0 3 2 (the kernel's
// read-ahead has several reads of one handle in flight, answered in any order).
std::string ReadLikeTheKernel(File& file, size_t size) {
  std::string got(size, '\0');
  const size_t block = 1 << 20, blocks = (size + block - 1) / block;
  for (size_t group = 0; group < blocks; group += 4) {
    for (size_t k : {1, 0, 3, 2}) {
      size_t b = group + k;
      if (b >= blocks) continue;
      size_t off = b * block, len = std::min(block, size - off);
      auto n = file.read(off, std::as_writable_bytes(std::span<char>(got.data() + off, len)));
      if (!n.ok() || *n != len) {
        ADD_FAILURE() << "block " << b << ": " << (n.ok() ? "short" : n.error().message());
        return {};
      }
    }
  }
  return got;
}

// The kernel's read-ahead asks for 1 MiB blocks a few at a time, in any order: with
// read_streams = 1, one streaming GET serves them all, every byte is fetched once and lands
// where it belongs.
TEST_F(S3LayerTest, SequentialReaderIsOneStreamEvenOutOfOrder) {
  S3LayerOptions options;
  options.read_streams = 1;
  auto layer = MakeLayer(options);
  const std::string data = RandomBytes((20 << 20) + 777, 21);
  ASSERT_TRUE(WriteFile(*layer, "seq.bin", data, 8 << 20).ok());
  auto file = layer->open("seq.bin", O_RDONLY);
  ASSERT_TRUE(file.ok());
  const S3Counters& c = layer->client().counters();
  const int64_t requests = c.requests, bytes = c.bytes_received;
  EXPECT_TRUE(ReadLikeTheKernel(**file, data.size()) == data);
  EXPECT_EQ(c.requests - requests, 1);
  EXPECT_EQ(c.bytes_received - bytes, static_cast<int64_t>(data.size()));
  EXPECT_TRUE((*file)->close().ok());
}

// With read_streams > 1 (the default), the same reads are served by ranged GETs of one segment
// each, several in flight: every byte is still fetched once, one request per segment.
TEST_F(S3LayerTest, SequentialReaderFetchesSegmentsInParallelEvenOutOfOrder) {
  S3LayerOptions options;
  options.read_streams = 3;
  options.stream_segment = 3 << 20;  // not a multiple of the 1 MiB reads' alignment below
  auto layer = MakeLayer(options);
  const std::string data = RandomBytes((20 << 20) + 777, 23);
  ASSERT_TRUE(WriteFile(*layer, "par.bin", data, 8 << 20).ok());
  auto file = layer->open("par.bin", O_RDONLY);
  ASSERT_TRUE(file.ok());
  const S3Counters& c = layer->client().counters();
  const int64_t requests = c.requests, bytes = c.bytes_received, segments = c.segments;
  EXPECT_TRUE(ReadLikeTheKernel(**file, data.size()) == data);
  const int64_t count = (data.size() + (3 << 20) - 1) / (3 << 20);
  EXPECT_EQ(c.segments - segments, count);
  EXPECT_EQ(c.requests - requests, count);
  EXPECT_EQ(c.bytes_received - bytes, static_cast<int64_t>(data.size()));
  EXPECT_TRUE((*file)->close().ok());
}

// A sequential reader of an object replaced under it gets ESTALE from the segments fetched
// after the replacement, and never a byte of the new version.
TEST_F(S3LayerTest, ReplacedObjectUnderASegmentedReaderIsStaleNotMixed) {
  S3LayerOptions options;
  options.read_streams = 2;
  options.stream_segment = 1 << 20;
  auto layer = MakeLayer(options);
  const std::string v1 = RandomBytes(12 << 20, 3), v2 = RandomBytes(12 << 20, 4);
  ASSERT_TRUE(WriteFile(*layer, "rv.bin", v1, 8 << 20).ok());
  auto file = layer->open("rv.bin", O_RDONLY);
  ASSERT_TRUE(file.ok());
  std::vector<std::byte> buf(256 << 10);
  ASSERT_TRUE((*file)->read(0, buf).ok());
  ASSERT_TRUE(WriteFile(*layer, "rv.bin", v2, 8 << 20).ok());
  bool stale = false;
  for (uint64_t off = buf.size(); off < v1.size(); off += buf.size()) {
    auto n = (*file)->read(off, buf);
    if (!n.ok()) {
      EXPECT_EQ(n.code(), ESTALE) << n.error().message();
      stale = true;
      break;
    }
    ASSERT_EQ(*n, buf.size());
    ASSERT_EQ(std::memcmp(buf.data(), v1.data() + off, buf.size()), 0) << "offset " << off;
  }
  EXPECT_TRUE(stale);  // 12 segments: the ones after the first two were asked for version 1
  EXPECT_TRUE((*file)->close().ok());
}

// Reads a fixed stride apart (the cache's read-ahead lanes) and random reads are ranged GETs of
// exactly their bytes: nothing is read ahead that nobody asked for.
TEST_F(S3LayerTest, StridedAndRandomReadsFetchOnlyTheirBytes) {
  auto layer = MakeLayer();
  const std::string data = RandomBytes(40 << 20, 22);
  ASSERT_TRUE(WriteFile(*layer, "stride.bin", data, 8 << 20).ok());
  const S3Counters& c = layer->client().counters();
  {
    auto lane = layer->open("stride.bin", O_RDONLY);  // segments 1, 5, 9: 4 MiB, 16 MiB apart
    ASSERT_TRUE(lane.ok());
    const int64_t bytes = c.bytes_received;
    std::vector<std::byte> buf(4 << 20);
    for (uint64_t off : {4ull << 20, 20ull << 20, 36ull << 20}) {
      auto n = (*lane)->read(off, buf);
      ASSERT_TRUE(n.ok()) << n.error().message();
      ASSERT_EQ(*n, buf.size());
      EXPECT_EQ(std::memcmp(buf.data(), data.data() + off, buf.size()), 0);
    }
    EXPECT_EQ(c.bytes_received - bytes, 3 * (4 << 20));
  }
  auto file = layer->open("stride.bin", O_RDONLY);
  ASSERT_TRUE(file.ok());
  const int64_t bytes = c.bytes_received;
  int64_t asked = 0;
  std::vector<std::byte> buf(4096);
  for (uint64_t i = 1; i <= 50; ++i) {
    uint64_t off = (i * 7919 * 1024 + 37) % (data.size() - buf.size());  // jumps of ~7.7 MiB
    auto n = (*file)->read(off, buf);
    ASSERT_TRUE(n.ok()) << n.error().message();
    ASSERT_EQ(*n, buf.size());
    EXPECT_EQ(std::memcmp(buf.data(), data.data() + off, buf.size()), 0);
    asked += static_cast<int64_t>(buf.size());
  }
  EXPECT_EQ(c.bytes_received - bytes, asked);
}

// The lookup the kernel makes before each create costs no request in a folder the layer just
// made or listed; a name another client adds shows up once the listing is a second old.
TEST_F(S3LayerTest, LookupsOfNewNamesInAFreshFolderCostNoRequest) {
  auto layer = MakeLayer();
  ASSERT_TRUE(layer->mkdir("new", 0755).ok());
  const S3Counters& c = layer->client().counters();
  const int64_t before = c.requests;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 20; ++i) {
    std::string path = "new/f" + std::to_string(i);
    EXPECT_EQ(layer->stat(path).code(), ENOENT);
    auto file = layer->create(path, 0644, O_WRONLY | O_CREAT | O_EXCL);
    ASSERT_TRUE(file.ok()) << file.error().message();
    ASSERT_TRUE((*file)->write(0, Bytes("x")).ok());
    ASSERT_TRUE((*file)->close().ok());
  }
  // One PUT per file; the folder's listing is only taken again once it is a second old (on a
  // loaded machine the loop may take several).
  const int64_t seconds =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - t0)
          .count();
  EXPECT_GE(c.requests - before, 20);
  EXPECT_LE(c.requests - before, 20 + seconds + 1);
  EXPECT_EQ(layer->stat("new/f3").value().size, 1u);  // a name it knows: asked for
  ASSERT_TRUE(layer->remove("new/f3").ok());
  EXPECT_EQ(layer->stat("new/f3").code(), ENOENT);
  // Another client's new object: invisible for at most a second, then found.
  char path[] = "/tmp/hfvfs-s3-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, "boto", 4), 4);
  ::close(fd);
  std::string r = Boto3("put " + bucket_ + " new/other " + path);
  unlink(path);
  ASSERT_EQ(r.find("ERROR"), std::string::npos) << r;
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  Result<Attr> other = layer->stat("new/other");
  ASSERT_TRUE(other.ok()) << other.error().message();
  EXPECT_EQ(other->size, 4u);
  // A renamed folder's listings are forgotten, and its new name is found.
  ASSERT_TRUE(layer->rename("new", "renamed", false).ok());
  EXPECT_EQ(layer->stat("new/f1").code(), ENOENT);
  EXPECT_EQ(layer->stat("renamed/f1").value().size, 1u);
  EXPECT_EQ(layer->stat("renamed/other").value().size, 4u);
}

// The kernel opens a file right after its lookup: the open takes the lookup's HEAD instead of
// sending its own. The layer's own writes drop it first; another client's change in between is
// ESTALE at the first read (If-Match), never bytes of two versions.
TEST_F(S3LayerTest, AnOpenRightAfterALookupSendsNoHead) {
  auto layer = MakeLayer();
  ASSERT_TRUE(WriteFile(*layer, "w.bin", "version one").ok());
  const S3Counters& c = layer->client().counters();
  int64_t before = c.requests;
  ASSERT_EQ(layer->stat("w.bin").value().size, 11u);
  EXPECT_EQ(c.requests - before, 1);  // the HEAD
  auto file = layer->open("w.bin", O_RDONLY);
  ASSERT_TRUE(file.ok()) << file.error().message();
  EXPECT_EQ(c.requests - before, 1);
  EXPECT_EQ(c.opens_without_head, 1);
  std::vector<std::byte> buf(64);
  ASSERT_EQ((*file)->read(0, buf).value(), 11u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(buf.data()), 11), "version one");
  ASSERT_TRUE((*file)->close().ok());

  // Written through the layer after the lookup: the open sees the new object.
  ASSERT_TRUE(layer->stat("w.bin").ok());
  ASSERT_TRUE(WriteFile(*layer, "w.bin", "version two!").ok());
  EXPECT_EQ(ReadFile(*layer, "w.bin").value(), "version two!");
  // Renamed onto after the lookup: the same.
  ASSERT_TRUE(WriteFile(*layer, "src.bin", "renamed in").ok());
  ASSERT_TRUE(layer->stat("w.bin").ok());
  ASSERT_TRUE(layer->rename("src.bin", "w.bin", false).ok());
  EXPECT_EQ(ReadFile(*layer, "w.bin").value(), "renamed in");

  // Replaced by another client between the lookup and the open: stale, not mixed.
  ASSERT_TRUE(layer->stat("w.bin").ok());
  auto other = MakeClient(bucket_);
  ASSERT_TRUE(other->put("w.bin", Bytes("another client's")).ok());
  auto stale = layer->open("w.bin", O_RDONLY);
  ASSERT_TRUE(stale.ok());
  auto n = (*stale)->read(0, buf);
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.code(), ESTALE);
  ASSERT_TRUE((*stale)->close().ok());
  // A second later the lookup's HEAD no longer serves opens.
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  EXPECT_EQ(ReadFile(*layer, "w.bin").value(), "another client's");
}

TEST_F(S3LayerTest, DirectoriesMarkersAndRmdir) {
  auto layer = MakeLayer();
  ASSERT_TRUE(layer->mkdir("empty", 0755).ok());
  EXPECT_EQ(JsonField(Boto3("head " + bucket_ + " empty/"), "size"), "0");
  EXPECT_TRUE(layer->stat("empty").value().is_dir());
  EXPECT_TRUE(layer->list("empty").value().empty());
  EXPECT_EQ(layer->mkdir("empty", 0755).code(), EEXIST);
  ASSERT_TRUE(WriteFile(*layer, "empty/f", "1").ok());
  EXPECT_EQ(layer->rmdir("empty").code(), ENOTEMPTY);
  EXPECT_EQ(layer->remove("empty").code(), EISDIR);
  EXPECT_EQ(layer->rmdir("empty/f").code(), ENOTDIR);
  ASSERT_TRUE(layer->remove("empty/f").ok());
  EXPECT_EQ(layer->remove("empty/f").code(), ENOENT);
  ASSERT_TRUE(layer->rmdir("empty").ok());
  EXPECT_EQ(layer->stat("empty").code(), ENOENT);
  EXPECT_EQ(layer->rmdir("empty").code(), ENOENT);
  EXPECT_EQ(Boto3("list " + bucket_ + " ''"), "{\"keys\": []}\n");
}

TEST_F(S3LayerTest, RenameFileAndDirectory) {
  auto layer = MakeLayer();
  ASSERT_TRUE(WriteFile(*layer, "a.txt", "AAA").ok());
  ASSERT_TRUE(WriteFile(*layer, "b.txt", "BBB").ok());
  EXPECT_EQ(layer->rename("a.txt", "b.txt", /*noreplace=*/true).code(), EEXIST);
  ASSERT_TRUE(layer->rename("a.txt", "b.txt", false).ok());
  EXPECT_EQ(layer->stat("a.txt").code(), ENOENT);
  EXPECT_EQ(ReadFile(*layer, "b.txt").value(), "AAA");

  ASSERT_TRUE(layer->mkdir("src", 0755).ok());
  ASSERT_TRUE(WriteFile(*layer, "src/one", "1").ok());
  ASSERT_TRUE(WriteFile(*layer, "src/deep/two", "22").ok());
  EXPECT_EQ(layer->rename("src", "src/deep/x", false).code(), EINVAL);
  ASSERT_TRUE(layer->rename("src", "dst", false).ok());
  EXPECT_EQ(layer->stat("src").code(), ENOENT);
  EXPECT_EQ(ReadFile(*layer, "dst/one").value(), "1");
  EXPECT_EQ(ReadFile(*layer, "dst/deep/two").value(), "22");
  std::string keys = Boto3("list " + bucket_ + " ''");
  EXPECT_EQ(keys,
            "{\"keys\": [\"b.txt\", \"dst/\", \"dst/deep/\", \"dst/deep/two\", "
            "\"dst/one\"]}\n");
  // An implied directory (no marker: put by another client) stays a directory after the move.
  std::string r = Boto3("put " + bucket_ + " implied/two /dev/null");
  ASSERT_EQ(r.find("ERROR"), std::string::npos) << r;
  ASSERT_TRUE(layer->rename("implied", "moved", false).ok());
  EXPECT_TRUE(layer->stat("moved").value().is_dir());
  EXPECT_EQ(ReadFile(*layer, "moved/two").value(), "");
  EXPECT_EQ(layer->stat("implied").code(), ENOENT);
}

TEST_F(S3LayerTest, WritePatternsS3CannotServe) {
  auto layer = MakeLayer();
  ASSERT_TRUE(WriteFile(*layer, "x", "0123456789").ok());
  // An existing object opened for writing without O_TRUNC: reads work, writes do not.
  auto file = layer->open("x", O_RDWR);
  ASSERT_TRUE(file.ok());
  std::vector<std::byte> buf(4);
  EXPECT_EQ((*file)->read(2, buf).value(), 4u);
  EXPECT_EQ((*file)->write(10, Bytes("more")).code(), EOPNOTSUPP);
  EXPECT_EQ((*file)->truncate(5).code(), EOPNOTSUPP);
  EXPECT_TRUE((*file)->close().ok());
  // A new file: only sequential writes.
  auto w = layer->create("y", 0644, O_WRONLY | O_CREAT);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ((*w)->write(0, Bytes("abc")).value(), 3u);
  auto gap = (*w)->write(10, Bytes("z"));
  EXPECT_EQ(gap.code(), EOPNOTSUPP);
  EXPECT_NE(gap.error().message().find("sync"), std::string::npos);
  EXPECT_TRUE((*w)->close().ok());
  EXPECT_EQ(ReadFile(*layer, "y").value(), "abc");
  // Truncation to 0 of an existing object through setattr.
  ASSERT_TRUE(layer->setattr("x", SetAttr{.set_size = true, .size = 0}).ok());
  EXPECT_EQ(layer->stat("x").value().size, 0u);
  EXPECT_EQ(layer->setattr("x", SetAttr{.set_size = true, .size = 3}).code(), EOPNOTSUPP);
  EXPECT_EQ(layer->create("x", 0644, O_WRONLY | O_CREAT | O_EXCL).code(), EEXIST);
}

TEST_F(S3LayerTest, FlushThenMoreWritesLikeShellRedirection) {
  auto layer = MakeLayer();
  auto file = layer->create("echo.txt", 0644, O_WRONLY | O_CREAT | O_TRUNC);
  ASSERT_TRUE(file.ok());
  ASSERT_TRUE((*file)->flush().ok());  // the shell closes a dup before writing
  EXPECT_EQ(layer->stat("echo.txt").value().size, 0u);
  ASSERT_EQ((*file)->write(0, Bytes("line\n")).value(), 5u);
  ASSERT_TRUE((*file)->flush().ok());
  ASSERT_TRUE((*file)->close().ok());
  EXPECT_EQ(ReadFile(*layer, "echo.txt").value(), "line\n");
}

TEST_F(S3LayerTest, NewFileIsVisibleWhileBeingWritten) {
  auto layer = MakeLayer();
  ASSERT_TRUE(layer->mkdir("dir", 0755).ok());
  auto file = layer->create("dir/new.bin", 0644, O_WRONLY | O_CREAT);
  ASSERT_TRUE(file.ok());
  ASSERT_TRUE((*file)->write(0, Bytes("12345")).ok());
  Result<Attr> a = layer->stat("dir/new.bin");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->size, 5u);
  auto list = layer->list("dir");
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].name, "new.bin");
  ASSERT_TRUE((*file)->close().ok());
  EXPECT_EQ(JsonField(Boto3("head " + bucket_ + " dir/new.bin"), "size"), "5");
}

TEST_F(S3LayerTest, ConcurrentWritersOfDifferentFiles) {
  S3LayerOptions options;
  options.part_size = 5 << 20;
  auto layer = MakeLayer(options);
  std::vector<std::thread> threads;
  std::vector<Status> results(8);
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      results[i] =
          WriteFile(*layer, "w/" + std::to_string(i), RandomBytes((6 << 20) + i, i), 256 << 10);
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(results[i].ok()) << results[i].error().message();
    std::string got = Boto3("get " + bucket_ + " w/" + std::to_string(i));
    EXPECT_EQ(JsonField(got, "md5"), Md5Hex(RandomBytes((6 << 20) + i, i))) << i;
  }
}

TEST_F(S3LayerTest, PrefixMountsOneFolder) {
  auto layer = MakeLayer();
  ASSERT_TRUE(WriteFile(*layer, "runs/1/out.txt", "one").ok());
  ASSERT_TRUE(WriteFile(*layer, "other.txt", "no").ok());
  S3LayerOptions options;
  options.prefix = "runs/";
  S3Layer sub(MakeClient(bucket_), options);
  ASSERT_TRUE(sub.start().ok());
  auto list = sub.list("");
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].name, "1");
  EXPECT_EQ(ReadFile(sub, "1/out.txt").value(), "one");
  ASSERT_TRUE(WriteFile(sub, "2.txt", "two").ok());
  EXPECT_EQ(JsonField(Boto3("head " + bucket_ + " runs/2.txt"), "size"), "3");
}

TEST_F(S3LayerTest, VirtualHostAddressing) {
  auto layer = MakeLayer({}, /*virtual_host=*/true);
  std::string data = "virtual " + RandomBytes(1000, 9);
  ASSERT_TRUE(WriteFile(*layer, "v h+ü/file", data).ok());
  EXPECT_EQ(JsonField(Boto3("get " + bucket_ + " 'v h+ü/file'"), "md5"), Md5Hex(data));
  EXPECT_EQ(ReadFile(*layer, "v h+ü/file").value(), data);
  EXPECT_EQ(layer->list("v h+ü").value().size(), 1u);
}

TEST_F(S3LayerTest, BadKeysOrMissingBucketRefuseToStart) {
  auto layer = MakeLayer();  // creates bucket_
  S3Layer wrong_secret(MakeClient(bucket_, false, "not-the-secret"), {});
  Status s = wrong_secret.start();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), EACCES);
  EXPECT_EQ(s.error().message().find("not-the-secret"), std::string::npos);
  EXPECT_NE(s.error().message().find("credentials"), std::string::npos);
  S3Layer no_bucket(MakeClient(bucket_ + "-missing"), {});
  s = no_bucket.start();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), ENOENT);
  EXPECT_NE(s.error().message().find("does not exist"), std::string::npos);
}

// Fault injection stops the server's proxy: these tests use a server of their own.
class S3FaultTest : public hfvfs::testing::OnPrivateS3Server<S3LayerTest> {};

TEST_F(S3FaultTest, ServerStoppedDuringUploadGivesEioAndNoObject) {
  S3LayerOptions options;
  options.part_size = 5 << 20;
  auto layer = MakeLayer(options);
  auto file = layer->create("half.bin", 0644, O_WRONLY | O_CREAT);
  ASSERT_TRUE(file.ok());
  std::string data = RandomBytes(11 << 20, 4);
  ASSERT_TRUE((*file)->write(0, Bytes(std::string_view(data).substr(0, 6 << 20))).ok());
  ASSERT_TRUE(server().StopProxy());
  auto more = (*file)->write(6 << 20, Bytes(std::string_view(data).substr(6 << 20)));
  Status flushed = more.ok() ? (*file)->flush() : Status(more.error());
  ASSERT_FALSE(flushed.ok());
  EXPECT_EQ(flushed.code(), EIO);
  (void)(*file)->close();
  ASSERT_TRUE(server().StartProxy());
  // The mount serves again without anything being rebuilt; nothing partial is visible and
  // no multipart upload is left behind.
  EXPECT_EQ(layer->stat("half.bin").code(), ENOENT);
  ASSERT_TRUE(WriteFile(*layer, "after.txt", "back").ok());
  EXPECT_EQ(ReadFile(*layer, "after.txt").value(), "back");
  // The abort that failed while the server was away ran again with the next write.
  EXPECT_EQ(Boto3("uploads " + bucket_), "{\"uploads\": []}\n");
}

TEST_F(S3FaultTest, ReadsRetryAcrossARestart) {
  auto layer = MakeLayer();
  ASSERT_TRUE(WriteFile(*layer, "r.txt", "still here").ok());
  ASSERT_TRUE(server().StopProxy());
  std::thread restart([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_TRUE(server().StartProxy());
  });
  // Retries (2, from 50 ms) outlast a quick restart... or report EIO, never wrong bytes.
  Result<std::string> r = ReadFile(*layer, "r.txt");
  restart.join();
  if (r.ok()) {
    EXPECT_EQ(*r, "still here");
  } else {
    EXPECT_EQ(r.code(), EIO);
  }
  EXPECT_EQ(ReadFile(*layer, "r.txt").value(), "still here");
}

}  // namespace
}  // namespace hfvfs::s3
