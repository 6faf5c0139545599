// The conformance suite over `overlay` on `local`: with the seed tree in the lower folder (every
// file remote-only, so writes go through copy-up and deletes through whiteouts), with the seed's
// files in the upper folder over the bare folder skeleton below, and as the kernel builds the
// stack (both plugins loaded from the build's plugin folder).
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "conformance.h"
#include "local_layer.h"
#include "overlay_layer.h"

namespace hfvfs::conformance {
namespace {

namespace fs = std::filesystem;

// Folders with lower content answer EXDEV to a rename (mv copies them instead); that is every
// folder of the seed tree in each stack here.
const std::set<Feature> kOverlayCannot = {Feature::kRenameDirs};

Result<std::string> ReadFileAt(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return Err(ENOENT, "no such file: " + p.string());
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The overlay's store as a user sees it unmounted: the upper folder wins, a whiteout hides the
// lower entry. Changes made straight in the store go to the upper folder (they show at once).
Backing OverlayBacking(const std::string& lower, const std::string& upper) {
  Backing b;
  b.read = [lower, upper](std::string_view path) -> Result<std::string> {
    fs::path rel(path);
    std::error_code ec;
    if (fs::exists(fs::symlink_status(fs::path(upper) / rel, ec))) return ReadFileAt(upper / rel);
    fs::path whiteout = fs::path(upper) / rel.parent_path() /
                        (std::string(overlay::kWhiteoutPrefix) + rel.filename().string());
    if (fs::exists(whiteout, ec)) return Err(ENOENT, "whited out: " + std::string(path));
    return ReadFileAt(fs::path(lower) / rel);
  };
  b.write = [upper](std::string_view path, std::string_view content) -> Status {
    fs::path p = fs::path(upper) / fs::path(path);
    std::error_code ec;
    fs::create_directories(p.parent_path(), ec);
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
    if (!out) return Err(EIO, "cannot write " + p.string());
    return Ok();
  };
  return b;
}

struct Dirs {
  TempDir lower;
  TempDir upper;
};

enum class Seed { kInLower, kInUpper };

StackConfig OverlayStack(std::string name, Seed where) {
  StackConfig config;
  config.name = std::move(name);
  config.cannot = kOverlayCannot;
  config.make = [where](const SeedTree& seed) -> Result<StackUnderTest> {
    auto dirs = std::make_shared<Dirs>();
    if (where == Seed::kInLower) {
      HFVFS_RETURN_IF_ERROR(seed.WriteToDir(dirs->lower.path()));
    } else {
      // Files and links in the upper folder; the folders exist in both layers (merged).
      HFVFS_RETURN_IF_ERROR(seed.WriteToDir(dirs->upper.path()));
      for (const SeedEntry& e : seed.entries())
        if (e.type == FileType::kDirectory)
          fs::create_directories(fs::path(dirs->lower.path()) / e.path);
    }
    HFVFS_ASSIGN_OR_RETURN(auto local, local::LocalLayer::Open(dirs->lower.path(), {}));
    HFVFS_ASSIGN_OR_RETURN(auto overlay,
                           overlay::OverlayLayer::Open(std::shared_ptr<Layer>(std::move(local)),
                                                       dirs->upper.path(), {}));
    StackUnderTest stack;
    stack.top = std::shared_ptr<Layer>(std::move(overlay));
    stack.backing = OverlayBacking(dirs->lower.path(), dirs->upper.path());
    stack.keep_alive = dirs;
    HFVFS_RETURN_IF_ERROR(stack.top->start());
    return stack;
  };
  return config;
}

StackConfig OverlayPluginStack() {
  StackConfig config;
  config.name = "OverlayPluginOverLocalPlugin";
  config.cannot = kOverlayCannot;
  config.make = [](const SeedTree& seed) -> Result<StackUnderTest> {
    auto dirs = std::make_shared<Dirs>();
    HFVFS_RETURN_IF_ERROR(seed.WriteToDir(dirs->lower.path()));
    const std::string plugins = HFVFS_BUILD_PLUGIN_DIR;
    HFVFS_ASSIGN_OR_RETURN(auto local,
                           LoadPluginLayer(plugins + "/libhfvfs-local.so",
                                           "path = \"" + dirs->lower.path() + "\"\n", nullptr));
    StackUnderTest stack;
    HFVFS_ASSIGN_OR_RETURN(
        stack.top, LoadPluginLayer(plugins + "/libhfvfs-overlay.so",
                                   "upper = \"" + dirs->upper.path() + "\"\ncopy_up = true\n",
                                   std::move(local)));
    stack.backing = OverlayBacking(dirs->lower.path(), dirs->upper.path());
    stack.keep_alive = dirs;
    HFVFS_RETURN_IF_ERROR(stack.top->start());
    return stack;
  };
  return config;
}

std::vector<StackConfig> OverlayStacks() {
  return {OverlayStack("OverlaySeedInLower", Seed::kInLower),
          OverlayStack("OverlaySeedInUpper", Seed::kInUpper), OverlayPluginStack()};
}

INSTANTIATE_TEST_SUITE_P(Overlay, LayerConformance, ::testing::ValuesIn(OverlayStacks()),
                         ConformanceName);

}  // namespace
}  // namespace hfvfs::conformance
