// The hub plugin as the kernel sees it: libhfvfs-hub.so loaded by the kernel's PluginLoader,
// the example specs built into stacks (every key accepted), and a stack started against the
// Hub emulator.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "hub_emulator_process.h"
#include "plugin_loader.h"
#include "stack.h"

namespace hfvfs::kernel {
namespace {

class NullHost final : public Host {
 public:
  void invalidate(std::string_view, Invalidation) override {}
  std::string_view mount_id() const override { return "hub-plugin-test"; }
  bool shutting_down() const override { return false; }
};

std::string ReadText(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Writes `text` as a spec in a fresh folder (with an empty mnt/) and returns its path.
std::string WriteSpec(const std::string& text) {
  std::string dir =
      std::filesystem::temp_directory_path() /
      ("hfvfs-hub-plugin-" + std::to_string(getpid()) + "-" + std::to_string(std::rand()));
  std::filesystem::create_directories(dir + "/mnt");
  std::string spec = std::regex_replace(text, std::regex("mountpoint = \"[^\"]*\""),
                                        "mountpoint = \"" + dir + "/mnt\"");
  std::ofstream(dir + "/spec.toml") << "plugin_path = \"" << HFVFS_BUILD_PLUGIN_DIR << "\"\n"
                                    << spec;
  return dir + "/spec.toml";
}

TEST(HubPluginTest, DescriptorLoadsAndListsItsOptions) {
  PluginLoader loader({HFVFS_BUILD_PLUGIN_DIR}, false);
  auto d = loader.Load("hub");
  ASSERT_TRUE(d) << d.error().message();
  EXPECT_STREQ((*d)->name, "hub");
  EXPECT_EQ((*d)->kind, LayerKind::kSource);
  std::vector<std::string> keys;
  for (uint32_t i = 0; i < (*d)->option_count; ++i) keys.push_back((*d)->options[i].key);
  for (const char* k : {"repo", "revision", "subfolder", "endpoint", "token_file"}) {
    EXPECT_NE(std::find(keys.begin(), keys.end(), k), keys.end()) << k;
  }
}

TEST(HubPluginTest, ExampleSpecsBuild) {
  NullHost host;
  for (const char* name : {"hub.toml", "hub-emulator.toml"}) {
    SCOPED_TRACE(name);
    std::string spec_path =
        WriteSpec(ReadText(std::string(HFVFS_SOURCE_DIR) + "/examples/" + name));
    auto spec = LoadSpec(spec_path, std::nullopt);
    ASSERT_TRUE(spec) << spec.error().message();
    auto stack = BuildStack(*spec, host);
    ASSERT_TRUE(stack) << stack.error().message();
    EXPECT_EQ(stack->layers.front()->type(), "hub");
    std::filesystem::remove_all(std::filesystem::path(spec_path).parent_path());
  }
}

TEST(HubPluginTest, BadKeysAreReportedWithTheirLine) {
  NullHost host;
  std::string spec_path = WriteSpec(
      "mountpoint = \"x\"\n[[layer]]\ntype = \"hub\"\nrepo = \"a/b\"\nrevison = \"main\"\n");
  auto spec = LoadSpec(spec_path, std::nullopt);
  ASSERT_TRUE(spec) << spec.error().message();
  auto stack = BuildStack(*spec, host);
  ASSERT_FALSE(stack);
  EXPECT_NE(stack.error().message().find("revison"), std::string::npos) << stack.error().message();
  std::filesystem::remove_all(std::filesystem::path(spec_path).parent_path());
}

TEST(HubPluginTest, StackStartsAgainstTheEmulator) {
  hfvfs::testing::HubEmulatorProcess emu;
  ASSERT_TRUE(emu.Start(hfvfs::testing::HubEmulatorProcess::DefaultFixtures())) << emu.error();
  NullHost host;
  std::string spec_path = WriteSpec(
      "mountpoint = \"x\"\n[[layer]]\ntype = \"hub\"\nrepo = \"hfvfs-test/tiny-model\"\n"
      "revision = \"refs/pr/1\"\nendpoint = \"" +
      emu.endpoint() + "\"\n");
  auto spec = LoadSpec(spec_path, std::nullopt);
  ASSERT_TRUE(spec) << spec.error().message();
  auto stack = BuildStack(*spec, host);
  ASSERT_TRUE(stack) << stack.error().message();
  ASSERT_TRUE(stack->top().start());
  EXPECT_TRUE(stack->top().stat("pr-extra.txt"));
  std::vector<std::pair<std::string, int64_t>> counters;
  stack->top().counters(counters);
  EXPECT_FALSE(counters.empty());
  std::filesystem::remove_all(std::filesystem::path(spec_path).parent_path());
}

}  // namespace
}  // namespace hfvfs::kernel
