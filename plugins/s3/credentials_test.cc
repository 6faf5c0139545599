#include "credentials.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>

namespace hfvfs::s3 {
namespace {

class CredentialsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("hfvfs-cred-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir_ / ".aws");
    env_["HOME"] = dir_.string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  GetEnv Env() {
    return [this](std::string_view n) -> std::optional<std::string> {
      auto it = env_.find(std::string(n));
      if (it == env_.end()) return std::nullopt;
      return it->second;
    };
  }
  void WriteFile(const std::string& rel, const std::string& text) {
    std::ofstream(dir_ / rel) << text;
  }

  std::filesystem::path dir_;
  std::map<std::string, std::string> env_;
};

TEST_F(CredentialsTest, B2BeforeAws) {
  env_["B2_APPLICATION_KEY_ID"] = "b2id";
  env_["B2_APPLICATION_KEY"] = "b2secret";
  env_["AWS_ACCESS_KEY_ID"] = "awsid";
  env_["AWS_SECRET_ACCESS_KEY"] = "awssecret";
  Result<Credentials> c = ResolveCredentials({}, Env());
  ASSERT_TRUE(c.ok()) << c.error().message();
  EXPECT_EQ(c->access_key, "b2id");
  EXPECT_EQ(c->secret_key, "b2secret");
  EXPECT_EQ(c->source, "environment (B2_APPLICATION_KEY_ID)");
}

TEST_F(CredentialsTest, HalfAPairIsSkipped) {
  env_["B2_APPLICATION_KEY_ID"] = "b2id";  // no B2_APPLICATION_KEY
  env_["AWS_ACCESS_KEY_ID"] = "awsid";
  env_["AWS_SECRET_ACCESS_KEY"] = "awssecret";
  env_["AWS_SESSION_TOKEN"] = "tok";
  Result<Credentials> c = ResolveCredentials({}, Env());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->access_key, "awsid");
  EXPECT_EQ(c->session_token, "tok");
}

TEST_F(CredentialsTest, DefaultFileAndAwsProfile) {
  WriteFile(".aws/credentials",
            "[default]\naws_access_key_id = d\naws_secret_access_key = ds\n"
            "# comment\n[profile team]\naws_access_key_id=t\naws_secret_access_key=ts\n");
  Result<Credentials> c = ResolveCredentials({}, Env());
  ASSERT_TRUE(c.ok()) << c.error().message();
  EXPECT_EQ(c->access_key, "d");
  env_["AWS_PROFILE"] = "team";
  c = ResolveCredentials({}, Env());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->access_key, "t");
  EXPECT_EQ(c->secret_key, "ts");
  EXPECT_NE(c->source.find("[profile team]"), std::string::npos);
}

TEST_F(CredentialsTest, SpecFileWinsOverEnvironment) {
  env_["AWS_ACCESS_KEY_ID"] = "awsid";
  env_["AWS_SECRET_ACCESS_KEY"] = "awssecret";
  WriteFile("keys.ini", "[ci]\naws_access_key_id = f\naws_secret_access_key = fs\n");
  Result<Credentials> c = ResolveCredentials({(dir_ / "keys.ini").string(), "ci"}, Env());
  ASSERT_TRUE(c.ok()) << c.error().message();
  EXPECT_EQ(c->access_key, "f");
}

TEST_F(CredentialsTest, ErrorsNameTheFileNeverTheSecret) {
  WriteFile("half.ini", "[default]\naws_secret_access_key = very-secret-value\n");
  Result<Credentials> c = ResolveCredentials({(dir_ / "half.ini").string(), ""}, Env());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), EACCES);
  EXPECT_NE(c.error().message().find("half.ini"), std::string::npos);
  EXPECT_EQ(c.error().message().find("very-secret-value"), std::string::npos);

  c = ResolveCredentials({(dir_ / "keys.ini").string(), "nope"}, Env());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), EACCES);
}

TEST_F(CredentialsTest, NothingFoundSaysWhatToSet) {
  env_["AWS_SECRET_ACCESS_KEY"] = "lonely-secret";
  Result<Credentials> c = ResolveCredentials({}, Env());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), EACCES);
  EXPECT_NE(c.error().message().find("AWS_ACCESS_KEY_ID"), std::string::npos);
  EXPECT_NE(c.error().message().find("only one is set"), std::string::npos);
  EXPECT_EQ(c.error().message().find("lonely-secret"), std::string::npos);
}

}  // namespace
}  // namespace hfvfs::s3
