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

std::vector<StackConfig> LocalStacks() {
  local::LocalOptions walk;
  walk.walk_components = true;
  local::LocalOptions read_only;
  read_only.read_only = true;
  return {
      LocalStack("Local", {}, {}),
      LocalStack("LocalWalkingComponents", walk, {}),
      LocalStack("LocalReadOnly", read_only,
                 {Feature::kWrite, Feature::kRandomWrite, Feature::kRename, Feature::kRenameDirs,
                  Feature::kAtomicRename, Feature::kSymlinks, Feature::kSetMode, Feature::kSetMtime,
                  Feature::kOverwrite}),
  };
}

INSTANTIATE_TEST_SUITE_P(Local, LayerConformance, ::testing::ValuesIn(LocalStacks()),
                         ConformanceName);

}  // namespace
}  // namespace hfvfs::conformance
