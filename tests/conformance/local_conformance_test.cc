// The conformance suite over the `local` layer: read-write (both ways of resolving paths) and
// read-only. Every other stack's instantiation follows this pattern (see conformance.h).
#include <memory>

#include "conformance.h"
#include "local_layer.h"

namespace hfvfs::conformance {
namespace {

StackConfig LocalStack(std::string name, local::LocalOptions options, std::set<Feature> cannot) {
  StackConfig config;
  config.name = std::move(name);
  config.cannot = std::move(cannot);
  config.make = [options](const SeedTree& seed) -> Result<StackUnderTest> {
    auto dir = std::make_shared<TempDir>();
    HFVFS_RETURN_IF_ERROR(seed.WriteToDir(dir->path()));
    HFVFS_ASSIGN_OR_RETURN(auto layer, local::LocalLayer::Open(dir->path(), options));
    StackUnderTest stack;
    stack.top = std::shared_ptr<Layer>(std::move(layer));
    stack.backing = DirBacking(dir->path());
    stack.keep_alive = dir;
    HFVFS_RETURN_IF_ERROR(stack.top->start());
    return stack;
  };
  return config;
}

// The same folder source, but as the kernel gets it: libhfvfs-local.so loaded from the build's
// plugin folder and created from spec options.
StackConfig LocalPluginStack() {
  StackConfig config;
  config.name = "LocalPlugin";
  config.make = [](const SeedTree& seed) -> Result<StackUnderTest> {
    auto dir = std::make_shared<TempDir>();
    HFVFS_RETURN_IF_ERROR(seed.WriteToDir(dir->path()));
    StackUnderTest stack;
    HFVFS_ASSIGN_OR_RETURN(
        stack.top, LoadPluginLayer(std::string(HFVFS_BUILD_PLUGIN_DIR) + "/libhfvfs-local.so",
                                   "path = \"" + dir->path() + "\"\nread_only = false\n", nullptr));
    stack.backing = DirBacking(dir->path());
    stack.keep_alive = dir;
    HFVFS_RETURN_IF_ERROR(stack.top->start());
    return stack;
  };
  return config;
}

std::vector<StackConfig> LocalStacks() {
  local::LocalOptions walk;
  walk.walk_components = true;
  local::LocalOptions read_only;
  read_only.read_only = true;
  return {
      LocalStack("Local", {}, {}),
      LocalPluginStack(),
      LocalStack("LocalWalkingComponents", walk, {}),
      LocalStack("LocalReadOnly", read_only,
                 {Feature::kWrite, Feature::kRandomWrite, Feature::kRename, Feature::kRenameDirs,
                  Feature::kAtomicRename, Feature::kSymlinks, Feature::kSetMode, Feature::kSetMtime,
                  Feature::kOverwrite}),
  };
}

TEST(LoadPluginLayer, RefusesUnknownKeysAndMissingFiles) {
  TempDir dir;
  const std::string plugin = std::string(HFVFS_BUILD_PLUGIN_DIR) + "/libhfvfs-local.so";
  auto unknown = LoadPluginLayer(plugin, "path = \"" + dir.path() + "\"\nbogus = 1\n", nullptr);
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.code(), EINVAL);
  EXPECT_NE(unknown.error().message().find("bogus"), std::string::npos)
      << unknown.error().message();
  auto missing = LoadPluginLayer(dir.path() + "/libhfvfs-none.so", "", nullptr);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message().find("libhfvfs-none.so"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Local, LayerConformance, ::testing::ValuesIn(LocalStacks()),
                         ConformanceName);

}  // namespace
}  // namespace hfvfs::conformance
