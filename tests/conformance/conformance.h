// File: conformance.h
//
// The layer conformance suite: one parameterised GoogleTest suite, `LayerConformance`, that any
// stack of layers runs through. It drives the top layer through the contract of layer.h (read,
// list, stat errors, create, write, truncate, flush, mkdir/rmdir, remove, rename, symlinks,
// setattr, statfs, versions, capability claims, concurrency) and checks every answer.
//
// A stack joins the suite with a factory and an explicit list of what it cannot do:
//
//   #include "conformance.h"
//   using namespace hfvfs::conformance;  // INSTANTIATE_TEST_SUITE_P needs the bare suite name
//
//   StackConfig CacheOverLocal() {
//     StackConfig config;
//     config.name = "CacheOverLocal";
//     config.cannot = {};  // everything local can do, cache can do
//     config.make = [](const SeedTree& seed) -> hfvfs::Result<StackUnderTest> {
//       auto dir = std::make_shared<TempDir>();                     // removed at the end
//       HFVFS_RETURN_IF_ERROR(seed.WriteToDir(dir->path()));        // the tree, in the backing
//       HFVFS_ASSIGN_OR_RETURN(auto local, hfvfs::local::LocalLayer::Open(dir->path(), {}));
//       StackUnderTest stack;
//       stack.top = MakeMyCache(std::shared_ptr<hfvfs::Layer>(std::move(local)), ...);
//       stack.backing = DirBacking(dir->path());                     // optional, see below
//       stack.keep_alive = dir;
//       HFVFS_RETURN_IF_ERROR(stack.top->start());
//       return stack;
//     };
//     return config;
//   }
//   INSTANTIATE_TEST_SUITE_P(Cache, LayerConformance, ::testing::Values(CacheOverLocal()),
//                            ConformanceName);
//
// and links the `hfvfs_conformance` object library (hfvfs_add_test(... LIBS hfvfs_conformance
// hfvfs_local_layer ...)).
//
// The factory runs once per test, so tests never see each other's files. It returns the stack
// started (Layer::start() called, as the kernel does) with the seed tree (SeedTree below) in
// place: written straight into the backing store (SeedTree::WriteToDir for a folder) or
// through the stack itself (SeedTree::WriteThrough, which needs a writable stack). A read-only
// stack must seed its backing store. The suite calls shutdown() on the top layer at the end.
//
// The `cannot` list is checked, not trusted: for every Feature that mirrors a capability, the
// top layer's claim must match the list (a wrapper claiming more than it can deliver fails),
// and a feature that is listed must be refused with EROFS, EOPNOTSUPP (or, for directory
// renames, EXDEV) rather than half done. Listed features are tested for that refusal; the
// others for working. So no test is skipped: each one asserts either the behaviour or the
// refusal.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <ostream>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "hfvfs/layer.h"
#include "hfvfs/result.h"

namespace hfvfs::conformance {

// What a stack may declare it cannot do. The first group mirrors Capabilities fields: the
// suite checks that the top layer claims exactly the features not listed.
enum class Feature {
  kWrite,         // Capabilities::writable: create, sequential write of new files, mkdir,
                  // remove, rmdir. Without it the stack is read-only.
  kRandomWrite,   // Capabilities::random_write: write at any offset of an existing file,
                  // truncate (File::truncate and setattr size), append
  kRename,        // Capabilities::rename: rename of files
  kRenameDirs,    // Capabilities::rename_dirs
  kAtomicRename,  // Capabilities::atomic_rename (claimed or not; not observable here)
  kSymlinks,      // Capabilities::symlinks: symlink and readlink
  kSetMode,       // Capabilities::set_mode: chmod persists
  kSetMtime,      // Capabilities::set_mtime: utimens persists
  // Not capabilities: behaviours a stack may lack.
  kOverwrite,          // open(O_TRUNC) of an existing file and rewrite it from the start
  kStatfs,             // statfs reports real totals (total_blocks > 0)
  kReadAfterRemove,    // an open File keeps reading the old content after remove()
  kSeeBackingChanges,  // a change made straight in the backing store shows at once in stat,
                       // list and reads (a stack with polling or a TTL lists it)
  kEmptyFiles,         // a zero-byte file can exist (some stores drop empty objects)
};

const char* FeatureName(Feature feature);

// One entry of the seed tree.
struct SeedEntry {
  std::string path;  // layer path
  FileType type = FileType::kFile;
  std::string content;  // file bytes, or the symlink target
};

// The tree every stack starts from. Files have deterministic content (the big one is 3 MiB
// plus an odd tail, with bytes that depend on their offset so misplaced reads show); names
// include spaces and non-ASCII letters; `many/` holds `many_files` files for listings that
// paginate. The symlink `link-to-hello` is present only if the stack can do symlinks, and the
// empty file only if it can hold empty files.
class SeedTree {
 public:
  // `cannot` is the stack's list (it decides the symlink and the empty file); `many_files` is
  // raised by stacks whose listings paginate (S3 pages at 1000 keys).
  explicit SeedTree(const std::set<Feature>& cannot, size_t many_files = 40);

  const std::vector<SeedEntry>& entries() const { return entries_; }
  // The entry at `path`, or null.
  const SeedEntry* find(std::string_view path) const;
  // The names directly under `dir` ("" = root).
  std::vector<std::string> children(std::string_view dir) const;

  // Creates the tree under the existing folder `dir` (for stacks over a folder: local, and
  // every wrapper over it).
  Status WriteToDir(const std::string& dir) const;
  // Creates the tree through `layer` (create/write/mkdir/symlink), for stacks whose backing
  // store is not a folder. Needs a writable stack.
  Status WriteThrough(Layer& layer) const;

  static constexpr const char* kHello = "hello.txt";
  static constexpr const char* kBig = "big.bin";
  static constexpr const char* kEmpty = "empty.txt";
  static constexpr const char* kDir = "dir";
  static constexpr const char* kNested = "dir/sub/deep.txt";
  static constexpr const char* kEmptyDir = "emptydir";
  static constexpr const char* kLink = "link-to-hello";
  static constexpr const char* kMany = "many";

 private:
  std::vector<SeedEntry> entries_;
};

// The bytes of the big seed file (and of other patterned files): byte i of a file with `seed`.
std::string PatternBytes(size_t size, uint32_t seed);

// Direct access to the store under the stack, bypassing every layer. Both functions are
// optional: with `read` the suite checks that data written through the stack reaches the
// store (after shutdown); with `write` that changes made in the store show through the stack.
// For a stack whose store holds something else than the plain bytes (crypt), leave `read`
// unset.
struct Backing {
  std::function<Result<std::string>(std::string_view path)> read;
  std::function<Status(std::string_view path, std::string_view content)> write;
};

// Backing access to a plain folder.
Backing DirBacking(const std::string& dir);

struct StackUnderTest {
  std::shared_ptr<Layer> top;  // started, seeded
  Backing backing;
  // Whatever must outlive the layers (temp folders, test servers); released after `top`.
  std::shared_ptr<void> keep_alive;
};

struct StackConfig {
  std::string name;  // the test-name suffix: letters, digits and '_'
  std::set<Feature> cannot;
  size_t many_files = 40;
  std::function<Result<StackUnderTest>(const SeedTree& seed)> make;
};

// For INSTANTIATE_TEST_SUITE_P(..., ConformanceName): names each instance by StackConfig::name.
std::string ConformanceName(const ::testing::TestParamInfo<StackConfig>& info);

void PrintTo(const StackConfig& config, std::ostream* os);

// Loads a plugin file (libhfvfs-<type>.so) the way the kernel does and creates its layer over
// `lower` (null for a source) with the options of `options_toml` (the body of its [[layer]]
// table, without `type`). Refuses another ABI major or build tag, and unknown keys, like the
// kernel. The library stays loaded for the life of the process. For testing a plugin as built,
// descriptor and options included, without mounting.
Result<std::shared_ptr<Layer>> LoadPluginLayer(const std::string& plugin_file,
                                               std::string_view options_toml,
                                               std::shared_ptr<Layer> lower);

// A fresh folder under $TMPDIR (or /tmp), removed with its content on destruction. For
// factories (keep it alive through StackUnderTest::keep_alive).
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The fixture of the suite. Tests are defined in conformance.cc; instantiations elsewhere.
class LayerConformance : public ::testing::TestWithParam<StackConfig> {
 protected:
  void SetUp() override;
  void TearDown() override;

  bool can(Feature feature) const { return GetParam().cannot.count(feature) == 0; }
  Layer& top() { return *stack_.top; }
  // Shuts the stack down now (TearDown does it otherwise); returns its status.
  Status ShutdownNow();

  std::unique_ptr<SeedTree> seed_;
  StackUnderTest stack_;
  bool shut_down_ = false;
};

}  // namespace hfvfs::conformance
