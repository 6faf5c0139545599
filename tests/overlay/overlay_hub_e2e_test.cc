// The overlay over a remote read-only source through a real mount: `hub -> cache -> overlay`
// against the Hub emulator (the design's compile-cache stack, with the Hub standing in for the
// bucket). Remote files read through, change through copy-up, and disappear through whiteouts
// that survive a remount; the Hub is never asked to write (it cannot be).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "support/hub_emulator_process.h"
#include "support/mount_fixture.h"

namespace hfvfs::testing {
namespace {

namespace fs = std::filesystem;

std::string Slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

class OverlayHubE2eTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    fixtures_ = new std::string(HubEmulatorProcess::DefaultFixtures());
    emu_ = new HubEmulatorProcess();
    ASSERT_TRUE(emu_->Start(*fixtures_)) << emu_->error();
    auto manifest = nlohmann::json::parse(Slurp(*fixtures_ + "/manifest.json"));
    files_ = new fs::path(
        manifest["repos"]["model/hfvfs-test/tiny-model"]["files_dir"]["main"].get<std::string>());
  }
  static void TearDownTestSuite() {
    delete emu_;
    emu_ = nullptr;
    delete fixtures_;
    delete files_;
  }
  void SetUp() override {
    ASSERT_NE(emu_, nullptr);
    std::string tmpl = (fs::temp_directory_path() / "hfvfs-overlay-hub-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string Spec() const {
    return "[[layer]]\ntype = \"hub\"\nrepo = \"hfvfs-test/tiny-model\"\nendpoint = \"" +
           emu_->endpoint() + "\"\n\n[[layer]]\ntype = \"cache\"\ndir = \"" + dir_ +
           "/cache\"\n\n[[layer]]\ntype = \"overlay\"\nupper = \"" + dir_ + "/upper\"\n";
  }
  static MountFixtureOptions Env() {
    MountFixtureOptions o;
    o.env["HF_TOKEN"] = "";
    return o;
  }

  static std::string* fixtures_;
  static HubEmulatorProcess* emu_;
  static fs::path* files_;
  std::string dir_;
};

std::string* OverlayHubE2eTest::fixtures_ = nullptr;
HubEmulatorProcess* OverlayHubE2eTest::emu_ = nullptr;
fs::path* OverlayHubE2eTest::files_ = nullptr;

TEST_F(OverlayHubE2eTest, RemoteFilesReadChangeAndDisappearLocally) {
  const std::string config = Slurp(*files_ / "config.json");
  ASSERT_FALSE(config.empty());
  {
    MountFixture m(Spec(), Env());
    ASSERT_TRUE(m.ok()) << m.error();
    EXPECT_EQ(Slurp(m.path("config.json")), config);
    EXPECT_EQ(RunProcess({"cmp", m.path("onnx/model.onnx"), (*files_ / "onnx/model.onnx").string()})
                  .status,
              0);
    // Change a remote file: copied up through the cache, then appended to.
    {
      std::ofstream append(m.path("config.json"), std::ios::app);
      append << "\n";
    }
    EXPECT_EQ(Slurp(m.path("config.json")), config + "\n");
    // New files and folders are local; remote ones can be deleted.
    ASSERT_EQ(mkdir(m.path("compiled").c_str(), 0755), 0) << strerror(errno);
    std::ofstream(m.path("compiled/kernel.bin")) << "artifact";
    ASSERT_EQ(unlink(m.path("onnx/model.onnx").c_str()), 0) << strerror(errno);
    struct stat st;
    EXPECT_EQ(stat(m.path("onnx/model.onnx").c_str(), &st), -1);
    EXPECT_EQ(m.Stop(), 0) << m.log();
  }
  EXPECT_EQ(Slurp(dir_ + "/upper/config.json"), config + "\n");
  EXPECT_EQ(Slurp(dir_ + "/upper/compiled/kernel.bin"), "artifact");
  EXPECT_TRUE(fs::exists(dir_ + "/upper/onnx/.wh.model.onnx"));
  EXPECT_EQ(Slurp(*files_ / "config.json"), config) << "the Hub's files changed";

  MountFixture again(Spec(), Env());
  ASSERT_TRUE(again.ok()) << again.error();
  EXPECT_EQ(Slurp(again.path("config.json")), config + "\n");
  EXPECT_EQ(Slurp(again.path("compiled/kernel.bin")), "artifact");
  struct stat st;
  EXPECT_EQ(stat(again.path("onnx/model.onnx").c_str(), &st), -1);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_EQ(again.Stop(), 0) << again.log();
}

}  // namespace
}  // namespace hfvfs::testing
