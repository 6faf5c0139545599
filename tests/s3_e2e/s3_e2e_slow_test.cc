// The s3 source through FUSE at sizes that take a while (label `slow`): a 1 GiB file written
// and read back with equal checksums (and boto3 agreeing, with a multipart "-N" ETag), and
// 10,000 objects put by boto3 listed completely through the mount.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "support/mount_fixture.h"
#include "support/s3_test_server.h"

namespace hfvfs::testing {
namespace {

ProcessResult Sh(const std::string& script) {
  return RunProcess({"bash", "-c", "set -euo pipefail; " + script}, {}, std::chrono::minutes(15));
}

class S3SlowMountTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server().ok()) << server().error;
    bucket_ = S3TestServer::UniqueBucket(
        "slow-" +
        std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()).substr(0, 30));
    std::string r = server().Boto3("create-bucket " + bucket_);
    ASSERT_EQ(r.find("ERROR"), std::string::npos) << r;
  }
  const S3TestServer& server() const { return S3TestServer::Get(); }
  MountFixture Mount() const {
    MountFixtureOptions o;
    o.env["AWS_ACCESS_KEY_ID"] = server().access_key;
    o.env["AWS_SECRET_ACCESS_KEY"] = server().secret_key;
    return MountFixture("[[layer]]\ntype = \"s3\"\nendpoint = \"" + server().endpoint +
                            "\"\nbucket = \"" + bucket_ + "\"\nregion = \"" + server().region +
                            "\"\n",
                        o);
  }
  std::string bucket_;
};

TEST_F(S3SlowMountTest, OneGibFileRoundTrip) {
  MountFixture mount = Mount();
  ASSERT_TRUE(mount.ok()) << mount.error();
  // The same pseudo-random GiB on both sides, without keeping a local copy.
  std::string gen =
      "(openssl enc -aes-128-ctr -pass pass:hfvfs -nosalt -pbkdf2 "
      "</dev/zero 2>/dev/null || true) | head -c 1073741824";
  ProcessResult want = Sh(gen + " | md5sum | cut -c1-32");
  ASSERT_EQ(want.status, 0) << want.output;
  ProcessResult put =
      Sh(gen + " | dd of='" + mount.path("gib.bin") + "' bs=1M iflag=fullblock status=none");
  ASSERT_EQ(put.status, 0) << put.output << mount.log();
  struct stat st;
  ASSERT_EQ(stat(mount.path("gib.bin").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 1073741824);
  ProcessResult got =
      Sh("dd if='" + mount.path("gib.bin") + "' bs=1M status=none | md5sum | cut -c1-32");
  EXPECT_EQ(got.output, want.output);
  std::string b = server().Boto3("get " + bucket_ + " gib.bin");
  EXPECT_NE(b.find(want.output.substr(0, 32)), std::string::npos) << b;
  EXPECT_NE(b.find("-128\\\""), std::string::npos) << "8 MiB parts: 128 of them: " << b;
  EXPECT_EQ(mount.Stop(), 0) << mount.log();
}

TEST_F(S3SlowMountTest, TenThousandObjectsListedCompletely) {
  std::string r = server().Boto3("put-many " + bucket_ + " many/f 10000");
  ASSERT_EQ(r.find("ERROR"), std::string::npos) << r;
  MountFixture mount = Mount();
  ASSERT_TRUE(mount.ok()) << mount.error();
  ProcessResult ls = Sh("ls '" + mount.path("many") + "' | wc -l");
  EXPECT_EQ(ls.output, "10000\n") << ls.output;
  ProcessResult find = Sh("find '" + mount.path("many") + "' -type f -size +8c -size -13c | wc -l");
  EXPECT_EQ(find.output, "10000\n") << "every object holds 'object N\\n' (9 to 12 bytes)";
  EXPECT_EQ(Sh("cat '" + mount.path("many/f09999") + "'").output, "object 9999\n");
  EXPECT_EQ(mount.Stop(), 0) << mount.log();
}

}  // namespace
}  // namespace hfvfs::testing
