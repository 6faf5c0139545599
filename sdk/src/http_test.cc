// Tests of the SDK HTTP client: pure helpers, then exchanges against the Hub emulator
// (tests/support/hub_emulator.py) with its fault injection.
#include "hfvfs/http.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "hub_emulator_process.h"

namespace hfvfs {
namespace {

using std::chrono::milliseconds;

TEST(HttpHelpers, RetryDelayHonoursRateLimitRetryAfterAndCaps) {
  RetryPolicy p;
  p.base_delay = milliseconds(100);
  p.max_delay = milliseconds(5000);
  HttpHeaders none;
  EXPECT_EQ(RetryDelay(none, 1, p), milliseconds(100));
  EXPECT_EQ(RetryDelay(none, 3, p), milliseconds(400));
  EXPECT_EQ(RetryDelay(none, 30, p), milliseconds(5000));
  HttpHeaders rl;
  rl.add("RateLimit", "\"api\";r=0;t=2");
  EXPECT_EQ(RetryDelay(rl, 1, p), milliseconds(2000));
  HttpHeaders rl_big;
  rl_big.add("ratelimit", "\"hub_api\";r=0;t=45");
  EXPECT_EQ(RetryDelay(rl_big, 1, p), milliseconds(5000));
  HttpHeaders ra;
  ra.add("Retry-After", "3");
  EXPECT_EQ(RetryDelay(ra, 1, p), milliseconds(3000));
}

TEST(HttpHelpers, ErrnoMapping) {
  EXPECT_EQ(ErrnoForStatus(404), ENOENT);
  EXPECT_EQ(ErrnoForStatus(401), EACCES);
  EXPECT_EQ(ErrnoForStatus(403), EACCES);
  EXPECT_EQ(ErrnoForStatus(500), EIO);
  EXPECT_EQ(ErrnoForStatus(507), ENOSPC);
  HttpHeaders h;
  h.add("X-Error-Code", "EntryNotFound");
  Error e = StatusError(404, h, "", "GET x");
  EXPECT_EQ(e.code(), ENOENT);
  EXPECT_NE(e.message().find("EntryNotFound"), std::string::npos);
}

TEST(HttpHelpers, UrlHelpers) {
  EXPECT_EQ(RedactUrl("https://u:p@cdn.example/lfs/x?Signature=abc&Expires=1"),
            "https://cdn.example/lfs/x");
  EXPECT_EQ(UrlOrigin("HTTP://Host.Example:8080/a/b?c"), "http://host.example:8080");
  EXPECT_EQ(PercentEncode("refs/pr/1"), "refs%2Fpr%2F1");
  EXPECT_EQ(PercentEncode("dir with space/a+b=c%.txt", "/"), "dir%20with%20space/a%2Bb%3Dc%25.txt");
  EXPECT_EQ(PercentEncode("with space #1.txt", "/"), "with%20space%20%231.txt");
  auto abs = ResolveUrl("http://h:1/a/b?x=1", "http://cdn:2/lfs/z?s=1");
  ASSERT_TRUE(abs);
  EXPECT_EQ(*abs, "http://cdn:2/lfs/z?s=1");
  auto rel = ResolveUrl("http://h:1/a/b", "/c/d");
  ASSERT_TRUE(rel);
  EXPECT_EQ(*rel, "http://h:1/c/d");
  HttpHeaders link;
  link.add("Link", "<http://h/api/x?cursor=abc&limit=2>; rel=\"next\"");
  EXPECT_EQ(LinkNext(link), "http://h/api/x?cursor=abc&limit=2");
  HttpHeaders two;
  two.add("Link", "<http://h/p>; rel=\"prev\", <http://h/n>; rel=\"next\"");
  EXPECT_EQ(LinkNext(two), "http://h/n");
  EXPECT_EQ(LinkNext(HttpHeaders{}), "");
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

class HttpEmulatorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    fixtures_ = new std::string(testing::HubEmulatorProcess::DefaultFixtures());
    emu_ = new testing::HubEmulatorProcess();
    ASSERT_TRUE(emu_->Start(*fixtures_)) << emu_->error();
  }
  static void TearDownTestSuite() {
    delete emu_;
    emu_ = nullptr;
    delete fixtures_;
  }
  void SetUp() override {
    ASSERT_NE(emu_, nullptr);
    emu_->Reset();
  }

  static std::string Url(const std::string& path) { return emu_->endpoint() + path; }
  static std::string FixtureFile(const std::string& rel) {
    // main of tiny-model; the commit sha comes from the refs file.
    std::string refs = ReadFile(*fixtures_ + "/repos/models/hfvfs-test/tiny-model/refs.json");
    size_t p = refs.find("\"main\"");
    size_t q = refs.find('"', refs.find(':', p) + 1);
    std::string sha = refs.substr(q + 1, 40);
    return ReadFile(*fixtures_ + "/repos/models/hfvfs-test/tiny-model/commits/" + sha + "/files/" +
                    rel);
  }
  static HttpClientOptions FastRetries() {
    HttpClientOptions o;
    o.retry.base_delay = milliseconds(20);
    o.retry.max_delay = milliseconds(3000);
    return o;
  }

  static inline testing::HubEmulatorProcess* emu_ = nullptr;
  static inline std::string* fixtures_ = nullptr;
};

TEST_F(HttpEmulatorTest, GetCollectsBodyAndHeaders) {
  HttpClient http(FastRetries());
  auto r = http.send({.url = Url("/hfvfs-test/tiny-model/resolve/main/config.json")});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, FixtureFile("config.json"));
  EXPECT_TRUE(r->headers.get("etag").has_value());
  EXPECT_TRUE(r->headers.get("X-Repo-Commit").has_value());
  EXPECT_EQ(r->attempts, 1);
}

TEST_F(HttpEmulatorTest, RedirectsAreReturnedNotFollowed) {
  HttpClient http(FastRetries());
  auto r = http.send(
      {.method = "HEAD", .url = Url("/hfvfs-test/tiny-model/resolve/main/model.safetensors")});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->status, 302);
  auto loc = r->headers.get("Location");
  ASSERT_TRUE(loc.has_value());
  EXPECT_NE(loc->find(":" + std::to_string(emu_->cdn_port()) + "/"), std::string::npos);
  ASSERT_TRUE(r->headers.get("X-Linked-Size").has_value());
  EXPECT_EQ(std::stoull(std::string(*r->headers.get("X-Linked-Size"))),
            FixtureFile("model.safetensors").size());
}

TEST_F(HttpEmulatorTest, ReadRangeAtOddOffsetsAndEof) {
  HttpClient http(FastRetries());
  std::string want = FixtureFile("tokenizer.json");
  HttpRequest req{.url = Url("/hfvfs-test/tiny-model/resolve/main/tokenizer.json")};
  for (uint64_t off : {0ul, 1ul, 13ul, 200ul}) {
    std::vector<std::byte> buf(37);
    auto n = http.read_range(req, off, buf);
    ASSERT_TRUE(n) << n.error().message();
    ASSERT_EQ(*n, 37u);
    EXPECT_EQ(std::string(reinterpret_cast<char*>(buf.data()), *n), want.substr(off, 37));
  }
  std::vector<std::byte> tail(100);
  auto n = http.read_range(req, want.size() - 10, tail);
  ASSERT_TRUE(n) << n.error().message();
  EXPECT_EQ(*n, 10u);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(tail.data()), 10), want.substr(want.size() - 10));
  auto past = http.read_range(req, want.size() + 5, tail);
  ASSERT_TRUE(past) << past.error().message();
  EXPECT_EQ(*past, 0u);
}

TEST_F(HttpEmulatorTest, StreamDeliversBodyInSmallPieces) {
  HttpClient http(FastRetries());
  auto s = http.open({.url = Url("/hfvfs-test/tiny-model/resolve/main/tokenizer.json")});
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_EQ((*s)->status(), 200);
  std::string got;
  std::vector<std::byte> piece(7);
  for (;;) {
    auto n = (*s)->read(piece);
    ASSERT_TRUE(n) << n.error().message();
    if (*n == 0) break;
    got.append(reinterpret_cast<char*>(piece.data()), *n);
  }
  EXPECT_EQ(got, FixtureFile("tokenizer.json"));
  EXPECT_EQ((*s)->received(), got.size());
}

TEST_F(HttpEmulatorTest, RetriesServerErrorsThenSucceeds) {
  emu_->Control(
      "POST", "/_emulator/faults",
      R"({"path_glob":"*/resolve/*/config.json","kind":"status","status":503,"times":2})");
  HttpClient http(FastRetries());
  auto r = http.send({.url = Url("/hfvfs-test/tiny-model/resolve/main/config.json")});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->attempts, 3);
  EXPECT_EQ(http.counters().retries.load(), 2);
  EXPECT_EQ(r->body, FixtureFile("config.json"));
}

TEST_F(HttpEmulatorTest, RateLimitWaitIsHonoured) {
  emu_->Control("POST", "/_emulator/faults",
                R"({"path_glob":"*/config.json","kind":"ratelimit","ratelimit_t":1,"times":1})");
  HttpClient http(FastRetries());
  auto t0 = std::chrono::steady_clock::now();
  auto r = http.send({.url = Url("/hfvfs-test/tiny-model/resolve/main/config.json")});
  auto waited = std::chrono::steady_clock::now() - t0;
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->status, 200);
  EXPECT_GE(waited, milliseconds(950));
  EXPECT_LT(waited, milliseconds(2900));
}

TEST_F(HttpEmulatorTest, ExhaustedRetriesAreEio) {
  emu_->Control("POST", "/_emulator/faults",
                R"({"path_glob":"*/config.json","kind":"status","status":500,"times":5})");
  HttpClient http(FastRetries());
  auto r = http.send({.url = Url("/hfvfs-test/tiny-model/resolve/main/config.json")});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.code(), EIO);
  EXPECT_NE(r.error().message().find("500"), std::string::npos);
  EXPECT_EQ(http.counters().requests.load(), 4);  // 1 + max_retries
}

TEST_F(HttpEmulatorTest, TruncatedAndDroppedBodiesAreResumed) {
  std::string want = FixtureFile("tokenizer.json");
  for (const char* kind : {"truncate", "drop"}) {
    emu_->Reset();
    emu_->Control("POST", "/_emulator/faults",
                  std::string(R"({"path_glob":"*/tokenizer.json","kind":")") + kind +
                      R"(","after_bytes":100,"times":2})");
    HttpClient http(FastRetries());
    std::vector<std::byte> buf(want.size());
    auto n =
        http.read_range({.url = Url("/hfvfs-test/tiny-model/resolve/main/tokenizer.json")}, 0, buf);
    ASSERT_TRUE(n) << kind << ": " << n.error().message();
    ASSERT_EQ(*n, want.size()) << kind;
    EXPECT_EQ(std::string(reinterpret_cast<char*>(buf.data()), *n), want) << kind;
    EXPECT_GE(http.counters().resumed.load(), 1) << kind;
  }
}

TEST_F(HttpEmulatorTest, ErrorsMapToErrno) {
  HttpClient http(FastRetries());
  auto missing = http.send({.url = Url("/hfvfs-test/tiny-model/resolve/main/nope.txt")});
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  Error e = StatusError(*missing, "nope.txt");
  EXPECT_EQ(e.code(), ENOENT);
  EXPECT_NE(e.message().find("EntryNotFound"), std::string::npos);
  auto priv = http.send({.url = Url("/api/models/hfvfs-test/private-model")});
  ASSERT_TRUE(priv);
  EXPECT_EQ(StatusError(*priv, "private").code(), EACCES);
}

TEST_F(HttpEmulatorTest, PostBodiesFromBufferAndFile) {
  HttpClient http(FastRetries());
  std::string json = R"({"paths":["config.json","onnx"]})";
  HttpRequest req{.method = "POST",
                  .url = Url("/api/models/hfvfs-test/tiny-model/paths-info/main"),
                  .headers = {{"Content-Type", "application/json"}},
                  .body = HttpBody::FromString(json)};
  auto r = http.send(req);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->status, 200);
  EXPECT_NE(r->body.find("\"config.json\""), std::string::npos);
  EXPECT_NE(r->body.find("\"onnx\""), std::string::npos);

  char tmpl[] = "/tmp/hfvfs-http-body-XXXXXX";
  int fd = mkstemp(tmpl);
  ASSERT_GE(fd, 0);
  std::string padded = "xxxx" + json;
  ASSERT_EQ(write(fd, padded.data(), padded.size()), static_cast<ssize_t>(padded.size()));
  req.body = HttpBody::FromFile(fd, 4, json.size());
  auto rf = http.send(req);
  close(fd);
  unlink(tmpl);
  ASSERT_TRUE(rf) << rf.error().message();
  EXPECT_EQ(rf->body, r->body);
  EXPECT_GE(http.counters().bytes_sent.load(), static_cast<int64_t>(2 * json.size()));
}

TEST_F(HttpEmulatorTest, SendIntoCallerBuffer) {
  HttpClient http(FastRetries());
  std::string want = FixtureFile("config.json");
  std::vector<std::byte> buf(4096);
  auto r = http.send_into({.url = Url("/hfvfs-test/tiny-model/resolve/main/config.json")}, buf);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->body_size, want.size());
  EXPECT_EQ(std::string(reinterpret_cast<char*>(buf.data()), r->body_size), want);
  std::vector<std::byte> small(10);
  auto too_big =
      http.send_into({.url = Url("/hfvfs-test/tiny-model/resolve/main/config.json")}, small);
  EXPECT_FALSE(too_big);
}

TEST_F(HttpEmulatorTest, ResolveOptionMapsHostNames) {
  HttpClientOptions o = FastRetries();
  o.resolve = {"hub.localhost:" + std::to_string(emu_->port()) + ":127.0.0.1"};
  HttpClient http(o);
  auto r = http.send({.url = "http://hub.localhost:" + std::to_string(emu_->port()) +
                             "/hfvfs-test/tiny-model/resolve/main/config.json"});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->status, 200);
}

TEST_F(HttpEmulatorTest, ConcurrentRequestsFromManyThreads) {
  HttpClient http(FastRetries());
  std::string config = FixtureFile("config.json");
  std::string tokenizer = FixtureFile("tokenizer.json");
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) {
        auto r = http.send({.url = Url("/hfvfs-test/tiny-model/resolve/main/config.json")});
        if (!r || r->body != config) ++wrong;
        std::vector<std::byte> buf(50);
        uint64_t off = (t * 31 + i * 7) % (tokenizer.size() - 50);
        auto n = http.read_range({.url = Url("/hfvfs-test/tiny-model/resolve/main/tokenizer.json")},
                                 off, buf);
        if (!n || *n != 50 ||
            std::string(reinterpret_cast<char*>(buf.data()), 50) != tokenizer.substr(off, 50)) {
          ++wrong;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(http.counters().requests.load(), 8 * 20 * 2);
  EXPECT_LE(http.counters().connects.load(), 8 * 2);  // pooled, not one per request
}

TEST_F(HttpEmulatorTest, ConnectionsAreReusedAcrossRequests) {
  HttpClient http(FastRetries());
  for (int i = 0; i < 5; ++i) {
    auto r = http.send({.url = Url("/hfvfs-test/tiny-model/resolve/main/config.json")});
    ASSERT_TRUE(r) << r.error().message();
  }
  std::vector<std::byte> buf(10);
  for (int i = 0; i < 5; ++i) {
    auto n = http.read_range({.url = Url("/hfvfs-test/tiny-model/resolve/main/tokenizer.json")},
                             i * 10, buf);
    ASSERT_TRUE(n) << n.error().message();
  }
  EXPECT_EQ(http.counters().requests.load(), 10);
  EXPECT_EQ(http.counters().connects.load(), 1);
}

}  // namespace
}  // namespace hfvfs
