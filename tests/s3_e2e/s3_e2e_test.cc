// The s3 source through a real FUSE mount (`hfvfs mount -f`, MountFixture) over the loopback
// Swift + s3api server, driven by ordinary tools (cp, cat, ls, mv, rm, dd, diff) and checked by
// boto3, the independent client.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <sstream>

#include "support/mount_fixture.h"
#include "support/s3_test_server.h"

namespace hfvfs::testing {
namespace {

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

ProcessResult Sh(const std::string& script,
                 std::chrono::seconds timeout = std::chrono::seconds(300)) {
  return RunProcess({"bash", "-c", "set -euo pipefail; " + script}, {}, timeout);
}

std::string Md5Of(const std::string& path) {
  ProcessResult r = Sh("md5sum < '" + path + "' | cut -d' ' -f1");
  return r.status == 0 ? r.output.substr(0, 32) : "ERROR " + r.output;
}

class S3MountTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server().ok()) << server().error;
    static std::atomic<int> counter{0};
    bucket_ = S3TestServer::UniqueBucket(
        "e2e-" +
        std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()).substr(0, 30) +
        std::to_string(counter++));
    std::string r = server().Boto3("create-bucket " + bucket_);
    ASSERT_EQ(r.find("ERROR"), std::string::npos) << r;
  }

  const S3TestServer& server() const { return S3TestServer::Get(); }

  std::string Spec(const std::string& extra = "") const {
    return "[[layer]]\ntype = \"s3\"\nendpoint = \"" + server().endpoint + "\"\nbucket = \"" +
           bucket_ + "\"\nregion = \"" + server().region + "\"\n" + extra;
  }

  MountFixtureOptions Options(const std::string& secret = "") const {
    MountFixtureOptions o;
    o.env["AWS_ACCESS_KEY_ID"] = server().access_key;
    o.env["AWS_SECRET_ACCESS_KEY"] = secret.empty() ? server().secret_key : secret;
    return o;
  }

  std::string Boto3(const std::string& args) const { return server().Boto3(args); }

  std::string bucket_;
};

TEST_F(S3MountTest, CpTreeInAndOutThenDiff) {
  MountFixture mount(Spec("part_size = \"5MiB\"\n"), Options());
  ASSERT_TRUE(mount.ok()) << mount.error();
  std::string src = mount.scratch() + "/src";
  std::string out = mount.scratch() + "/out";
  ProcessResult made = Sh("mkdir -p '" + src + "/a/b/c' '" + src +
                          "/empty dir' && "
                          "echo hello > '" +
                          src +
                          "/hello.txt' && "
                          "printf 'x' > '" +
                          src +
                          "/a/one byte' && "
                          ": > '" +
                          src +
                          "/a/b/zero' && "
                          "head -c 300000 /dev/urandom > '" +
                          src +
                          "/a/b/c/r\xC3\xA9sum\xC3\xA9+1.bin' && "
                          "head -c 12345678 /dev/urandom > '" +
                          src + "/a/big.bin'");
  ASSERT_EQ(made.status, 0) << made.output;
  ProcessResult cp_in = Sh("cp -r '" + src + "' '" + mount.path("tree") + "'");
  ASSERT_EQ(cp_in.status, 0) << cp_in.output << mount.log();
  ProcessResult cp_out = Sh("cp -r '" + mount.path("tree") + "' '" + out + "'");
  ASSERT_EQ(cp_out.status, 0) << cp_out.output;
  ProcessResult diff = Sh("diff -r '" + src + "' '" + out + "'");
  EXPECT_EQ(diff.status, 0) << diff.output;
  // boto3 reads what cp wrote: bytes, and the multipart ETag of the 12 MB file (3 parts).
  std::string big = Boto3("get " + bucket_ + " tree/a/big.bin");
  EXPECT_EQ(JsonField(big, "md5"), Md5Of(src + "/a/big.bin")) << big;
  EXPECT_EQ(JsonField(big, "size"), "12345678");
  std::string etag = JsonField(big, "etag");
  ASSERT_GE(etag.size(), 3u) << big;
  EXPECT_EQ(etag.substr(etag.size() - 3), "-3\"") << etag;
  std::string small = Boto3("get " + bucket_ + " 'tree/a/b/c/r\xC3\xA9sum\xC3\xA9+1.bin'");
  EXPECT_EQ(JsonField(small, "md5"), Md5Of(src + "/a/b/c/r\xC3\xA9sum\xC3\xA9+1.bin")) << small;
  EXPECT_EQ(JsonField(Boto3("head " + bucket_ + " tree/a/b/zero"), "size"), "0");
  EXPECT_EQ(JsonField(Boto3("head " + bucket_ + " 'tree/empty dir/'"), "size"), "0");
  EXPECT_EQ(mount.Stop(), 0) << mount.log();
}

TEST_F(S3MountTest, DdCatLsMvRm) {
  MountFixture mount(Spec(), Options());
  ASSERT_TRUE(mount.ok()) << mount.error();
  std::string local = mount.scratch() + "/data.bin";
  ASSERT_EQ(Sh("head -c 20000000 /dev/urandom > '" + local + "'").status, 0);
  ProcessResult dd =
      Sh("dd if='" + local + "' of='" + mount.path("dd.bin") + "' bs=1M status=none");
  ASSERT_EQ(dd.status, 0) << dd.output << mount.log();
  EXPECT_EQ(Md5Of(mount.path("dd.bin")), Md5Of(local));
  EXPECT_EQ(JsonField(Boto3("get " + bucket_ + " dd.bin"), "md5"), Md5Of(local));

  ASSERT_EQ(Sh("echo 'first line' > '" + mount.path("note.txt") + "'").status, 0);
  ProcessResult cat = Sh("cat '" + mount.path("note.txt") + "'");
  EXPECT_EQ(cat.output, "first line\n");

  ASSERT_EQ(Sh("mkdir '" + mount.path("d") + "' && cp '" + mount.path("note.txt") + "' '" +
               mount.path("d/copy.txt") + "'")
                .status,
            0);
  ProcessResult ls = Sh("ls -la '" + mount.mountpoint() + "' '" + mount.path("d") + "'");
  EXPECT_EQ(ls.status, 0) << ls.output;
  EXPECT_NE(ls.output.find("dd.bin"), std::string::npos) << ls.output;
  EXPECT_NE(ls.output.find("20000000"), std::string::npos) << ls.output;
  EXPECT_NE(ls.output.find("copy.txt"), std::string::npos) << ls.output;

  // Rename of a file and of a directory.
  ASSERT_EQ(Sh("mv '" + mount.path("note.txt") + "' '" + mount.path("d/moved.txt") + "'").status,
            0);
  ASSERT_EQ(Sh("mv '" + mount.path("d") + "' '" + mount.path("e") + "'").status, 0);
  EXPECT_EQ(Sh("cat '" + mount.path("e/moved.txt") + "'").output, "first line\n");
  struct stat st;
  EXPECT_EQ(stat(mount.path("d").c_str(), &st), -1);
  EXPECT_EQ(Boto3("list " + bucket_ + " e/"),
            "{\"keys\": [\"e/\", \"e/copy.txt\", \"e/moved.txt\"]}\n");

  // rm, rmdir (a non-empty one refused).
  EXPECT_NE(Sh("rmdir '" + mount.path("e") + "' 2>&1").status, 0);
  ASSERT_EQ(Sh("rm '" + mount.path("e/moved.txt") + "' '" + mount.path("e/copy.txt") + "'").status,
            0);
  ASSERT_EQ(Sh("rmdir '" + mount.path("e") + "'").status, 0);
  ASSERT_EQ(Sh("rm '" + mount.path("dd.bin") + "'").status, 0);
  EXPECT_EQ(Boto3("list " + bucket_ + " ''"), "{\"keys\": []}\n");

  // Random writes are refused with a clear error, not silently wrong.
  ASSERT_EQ(Sh("echo abc > '" + mount.path("r.txt") + "'").status, 0);
  int fd = open(mount.path("r.txt").c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(pwrite(fd, "X", 1, 1), -1);
  EXPECT_EQ(errno, EOPNOTSUPP);
  close(fd);
  EXPECT_EQ(mount.Stop(), 0) << mount.log();
}

TEST_F(S3MountTest, ObjectsPutByBoto3AppearWithTheirSizes) {
  std::string file = "/tmp/hfvfs-e2e-" + std::to_string(getpid()) + ".bin";
  ASSERT_EQ(Sh("head -c 777777 /dev/urandom > " + file).status, 0);
  for (const char* key : {"in/x y.bin", "in/sub/z.bin"}) {
    std::string r = Boto3("put " + bucket_ + " '" + key + "' " + file);
    ASSERT_EQ(r.find("ERROR"), std::string::npos) << r;
  }
  MountFixture mount(Spec(), Options());
  ASSERT_TRUE(mount.ok()) << mount.error();
  struct stat st;
  ASSERT_EQ(stat(mount.path("in/x y.bin").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 777777);
  ASSERT_EQ(stat(mount.path("in/sub").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(Md5Of(mount.path("in/sub/z.bin")), Md5Of(file));
  unlink(file.c_str());
  EXPECT_EQ(mount.Stop(), 0) << mount.log();
}

TEST_F(S3MountTest, EightConcurrentWriters) {
  MountFixture mount(Spec("part_size = \"5MiB\"\n"), Options());
  ASSERT_TRUE(mount.ok()) << mount.error();
  std::string local = mount.scratch() + "/w.bin";
  ASSERT_EQ(Sh("head -c 7000000 /dev/urandom > '" + local + "'").status, 0);
  ProcessResult w =
      Sh("pids=; for i in 0 1 2 3 4 5 6 7; do cp '" + local + "' '" + mount.mountpoint() +
         "'/w$i.bin & pids=\"$pids $!\"; done; "
         "for p in $pids; do wait $p; done");
  ASSERT_EQ(w.status, 0) << w.output << mount.log();
  std::string want = Md5Of(local);
  for (int i = 0; i < 8; ++i) {
    std::string key = "w" + std::to_string(i) + ".bin";
    EXPECT_EQ(JsonField(Boto3("get " + bucket_ + " " + key), "md5"), want) << key;
    EXPECT_EQ(Md5Of(mount.path(key)), want) << key;
  }
  EXPECT_EQ(mount.Stop(), 0) << mount.log();
}

TEST_F(S3MountTest, VirtualHostAddressing) {
  std::string host = server().storage_domain;
  std::string port = std::to_string(server().port);
  MountFixture mount("[[layer]]\ntype = \"s3\"\nendpoint = \"http://" + host + ":" + port +
                         "\"\nbucket = \"" + bucket_ + "\"\nregion = \"" + server().region +
                         "\"\naddressing = \"virtual\"\nresolve = \"" + bucket_ + "." + host + ":" +
                         port + ":127.0.0.1\"\n",
                     Options());
  ASSERT_TRUE(mount.ok()) << mount.error();
  ASSERT_EQ(
      Sh("mkdir '" + mount.path("v") + "' && echo vhost > '" + mount.path("v/f") + "'").status, 0);
  EXPECT_EQ(JsonField(Boto3("head " + bucket_ + " v/f"), "size"), "6");
  EXPECT_EQ(Sh("cat '" + mount.path("v/f") + "'").output, "vhost\n");
  EXPECT_EQ(mount.Stop(), 0) << mount.log();
}

TEST_F(S3MountTest, BadKeysOrMissingBucketRefuseToMount) {
  MountFixtureOptions quick = Options("wrong-secret");
  quick.mount_timeout = std::chrono::seconds(15);
  MountFixture bad(Spec(), quick);
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(bad.error().find("credentials"), std::string::npos) << bad.error();
  EXPECT_EQ(bad.error().find("wrong-secret"), std::string::npos) << "a secret in a message";
  EXPECT_FALSE(IsMounted(bad.mountpoint()));

  MountFixture missing("[[layer]]\ntype = \"s3\"\nendpoint = \"" + server().endpoint +
                           "\"\nbucket = \"" + bucket_ + "-nope\"\nregion = \"" + server().region +
                           "\"\n",
                       Options());
  EXPECT_FALSE(missing.ok());
  EXPECT_NE(missing.error().find("does not exist"), std::string::npos) << missing.error();
}

}  // namespace
}  // namespace hfvfs::testing
