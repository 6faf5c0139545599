// The conformance suite through the kernel: a `local` stack mounted with the built `hfvfs`
// (a real FUSE mount, as a child process), and the suite driving that mountpoint through a
// LocalLayer opened on it. Every layer call becomes syscalls on the mount, so this checks the
// kernel's FUSE adapter, inode table, caches and handles against the same contract the
// layers meet.
#include <memory>

#include "conformance.h"
#include "local_layer.h"
#include "support/mount_fixture.h"

namespace hfvfs::conformance {
namespace {

// The folder under the mount and the mount itself; the mount goes first (members are
// destroyed in reverse order).
struct MountedFolder {
  TempDir data;
  std::unique_ptr<hfvfs::testing::MountFixture> mount;
};

StackConfig MountedLocal(std::string name, std::string options, std::set<Feature> cannot) {
  StackConfig config;
  config.name = std::move(name);
  config.cannot = std::move(cannot);
  config.make = [options](const SeedTree& seed) -> Result<StackUnderTest> {
    auto state = std::make_shared<MountedFolder>();
    HFVFS_RETURN_IF_ERROR(seed.WriteToDir(state->data.path()));
    state->mount = std::make_unique<hfvfs::testing::MountFixture>(
        options + "\n[[layer]]\ntype = \"local\"\npath = \"" + state->data.path() + "\"\n");
    if (!state->mount->ok()) return Err(EIO, "mount failed: " + state->mount->error());
    if (!hfvfs::testing::IsMounted(state->mount->mountpoint())) {
      return Err(EIO, state->mount->mountpoint() + " is not a mount point");
    }
    HFVFS_ASSIGN_OR_RETURN(auto layer, local::LocalLayer::Open(state->mount->mountpoint(), {}));
    StackUnderTest stack;
    stack.top = std::shared_ptr<Layer>(std::move(layer));
    stack.backing = DirBacking(state->data.path());
    stack.keep_alive = state;
    HFVFS_RETURN_IF_ERROR(stack.top->start());
    return stack;
  };
  return config;
}

std::vector<StackConfig> MountedStacks() {
  return {
      // What a user gets: attributes and listings cached for 10 s, so changes made behind the
      // mount's back are not seen at once.
      MountedLocal("MountedLocalDefaults", "", {Feature::kSeeBackingChanges}),
      // With the caches off, they are.
      MountedLocal("MountedLocalNoCache", "[options]\nattr_ttl = \"0s\"\nnegative_ttl = \"0s\"\n",
                   {}),
  };
}

INSTANTIATE_TEST_SUITE_P(Kernel, LayerConformance, ::testing::ValuesIn(MountedStacks()),
                         ConformanceName);

}  // namespace
}  // namespace hfvfs::conformance
