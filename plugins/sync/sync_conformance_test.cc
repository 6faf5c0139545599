// The conformance suite over `local` + `sync`: a staging folder per test, polling off (the
// suite has no kernel), no stat cache so changes made in the backing folder show at once.
#include <memory>

#include "conformance.h"
#include "fake_lower.h"
#include "local_layer.h"
#include "sync_layer.h"

namespace hfvfs::conformance {
namespace {

using namespace std::chrono_literals;

struct SyncKeepAlive {
  std::shared_ptr<TempDir> backing;
  std::shared_ptr<TempDir> staging;
  std::shared_ptr<sync::testing::FakeHost> host;
};

StackConfig SyncOverLocal(std::string name, std::chrono::milliseconds debounce) {
  StackConfig config;
  config.name = std::move(name);
  // Renames are relabels here plus removal below: never one atomic step.
  config.cannot = {Feature::kAtomicRename};
  config.make = [debounce](const SeedTree& seed) -> Result<StackUnderTest> {
    auto keep = std::make_shared<SyncKeepAlive>();
    keep->backing = std::make_shared<TempDir>();
    keep->staging = std::make_shared<TempDir>();
    keep->host = std::make_shared<sync::testing::FakeHost>();
    HFVFS_RETURN_IF_ERROR(seed.WriteToDir(keep->backing->path()));
    HFVFS_ASSIGN_OR_RETURN(auto local, local::LocalLayer::Open(keep->backing->path(), {}));
    sync::SyncOptions options;
    options.staging_dir = keep->staging->path();
    options.poll_interval = 0ms;
    options.metadata_ttl = 0ms;
    options.flush_debounce = debounce;
    options.flush_max_window = debounce * 10;
    StackUnderTest stack;
    stack.top = std::make_shared<sync::SyncLayer>(std::shared_ptr<Layer>(std::move(local)),
                                                  *keep->host, options);
    stack.backing = DirBacking(keep->backing->path());
    stack.keep_alive = keep;
    HFVFS_RETURN_IF_ERROR(stack.top->start());
    return stack;
  };
  return config;
}

// Over an in-memory store that, like S3, takes only whole files written sequentially and
// cannot rename: sync supplies random writes and file renames.
StackConfig SyncOverSequentialStore() {
  StackConfig config;
  config.name = "SyncOverSequentialStore";
  config.cannot = {Feature::kAtomicRename,   Feature::kRenameDirs, Feature::kSymlinks,
                   Feature::kSetMode,        Feature::kSetMtime,   Feature::kStatfs,
                   Feature::kReadAfterRemove};
  config.make = [](const SeedTree& seed) -> Result<StackUnderTest> {
    auto keep = std::make_shared<SyncKeepAlive>();
    keep->staging = std::make_shared<TempDir>();
    keep->host = std::make_shared<sync::testing::FakeHost>();
    auto store = std::make_shared<sync::testing::MemLower>();
    sync::SyncOptions options;
    options.staging_dir = keep->staging->path();
    options.poll_interval = 0ms;
    options.metadata_ttl = 0ms;
    options.flush_debounce = 1ms;
    options.flush_max_window = 10ms;
    StackUnderTest stack;
    stack.top = std::make_shared<sync::SyncLayer>(store, *keep->host, options);
    stack.backing.read = [store](std::string_view path) -> Result<std::string> {
      if (!store->Has(std::string(path))) return Err(ENOENT, "no " + std::string(path));
      return store->Data(std::string(path));
    };
    stack.keep_alive = keep;
    HFVFS_RETURN_IF_ERROR(stack.top->start());
    HFVFS_RETURN_IF_ERROR(seed.WriteThrough(*stack.top));
    return stack;
  };
  return config;
}

INSTANTIATE_TEST_SUITE_P(Sync, LayerConformance,
                         ::testing::Values(SyncOverLocal("SyncOverLocal", 2s),
                                           SyncOverLocal("SyncOverLocalEagerFlush", 1ms),
                                           SyncOverSequentialStore()),
                         ConformanceName);

}  // namespace
}  // namespace hfvfs::conformance
