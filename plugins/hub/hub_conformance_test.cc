// The conformance suite (read-only subset) over the `hub` source: the seed tree becomes a commit
// of a repo served by the Hub emulator, and every test gets a fresh HubLayer on it.
#include <filesystem>
#include <fstream>
#include <memory>

#include "conformance.h"
#include "hub_emulator_process.h"
#include "hub_layer.h"

namespace hfvfs::conformance {
namespace {

constexpr const char* kSha = "c0ffee0000000000000000000000000000000001";

// One emulator per test binary, serving the seed tree as hfvfs-test/conformance@main. The seed
// is the same for every test (it depends on the `cannot` list only), and the stack is
// read-only, so tests cannot see each other's changes.
struct SeededHub {
  std::unique_ptr<TempDir> root;
  hfvfs::testing::HubEmulatorProcess emulator;
  std::string error;

  explicit SeededHub(const SeedTree& seed) : root(std::make_unique<TempDir>()) {
    namespace fs = std::filesystem;
    fs::path repo = fs::path(root->path()) / "repos/models/hfvfs-test/conformance";
    fs::path files = repo / "commits" / kSha / "files";
    fs::create_directories(files);
    std::ofstream(fs::path(root->path()) / "tokens.json") << "{}";
    std::ofstream(repo / "repo.json") << "{\"_id\": \"65f0c0ffee0000000000c001\"}";
    std::ofstream(repo / "refs.json") << "{\"branches\": {\"main\": \"" << kSha << "\"}}";
    std::ofstream(repo / "commits" / kSha / "commit.json")
        << "{\"date\": \"2024-05-01T00:00:00.000Z\", \"parents\": [], \"title\": \"seed\"}";
    if (Status s = seed.WriteToDir(files.string()); !s) {
      error = s.error().message();
      return;
    }
    if (!emulator.Start(root->path())) error = emulator.error();
  }
};

StackConfig HubStack() {
  StackConfig config;
  config.name = "Hub";
  config.cannot = {Feature::kWrite,      Feature::kRandomWrite,     Feature::kRename,
                   Feature::kRenameDirs, Feature::kAtomicRename,    Feature::kSymlinks,
                   Feature::kSetMode,    Feature::kSetMtime,        Feature::kOverwrite,
                   Feature::kStatfs,     Feature::kReadAfterRemove, Feature::kSeeBackingChanges};
  config.make = [](const SeedTree& seed) -> Result<StackUnderTest> {
    static std::shared_ptr<SeededHub> hub = std::make_shared<SeededHub>(seed);
    if (!hub->error.empty()) return Err(EIO, "hub conformance setup: " + hub->error);
    hub::HubOptions options;
    options.repo = "hfvfs-test/conformance";
    options.endpoint = hub->emulator.endpoint();
    options.token = "";
    StackUnderTest stack;
    stack.top = std::make_shared<hub::HubLayer>(options);
    stack.keep_alive = hub;
    HFVFS_RETURN_IF_ERROR(stack.top->start());
    return stack;
  };
  return config;
}

INSTANTIATE_TEST_SUITE_P(Hub, LayerConformance, ::testing::Values(HubStack()), ConformanceName);

}  // namespace
}  // namespace hfvfs::conformance
