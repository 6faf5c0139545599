// The uppercase plugin under test, as built (libhfvfs-uppercase.so loaded like the kernel
// loads it): the layer conformance suite over local -> uppercase, and what the plugin itself
// promises.
#include <fcntl.h>

#include <fstream>
#include <string>

#include "conformance.h"
#include "local_layer.h"

namespace {

using hfvfs::conformance::Feature;
// INSTANTIATE_TEST_SUITE_P pastes the suite's name into identifiers: it must be unqualified.
using hfvfs::conformance::LayerConformance;

// local (a temporary folder holding `seed`) -> uppercase (options `toml`).
hfvfs::Result<hfvfs::conformance::StackUnderTest> MakeStack(
    const hfvfs::conformance::SeedTree& seed, const std::string& toml) {
  auto dir = std::make_shared<hfvfs::conformance::TempDir>();
  HFVFS_RETURN_IF_ERROR(seed.WriteToDir(dir->path()));
  HFVFS_ASSIGN_OR_RETURN(auto local, hfvfs::local::LocalLayer::Open(dir->path(), {}));
  hfvfs::conformance::StackUnderTest stack;
  HFVFS_ASSIGN_OR_RETURN(
      stack.top, hfvfs::conformance::LoadPluginLayer(UPPERCASE_PLUGIN, toml, std::move(local)));
  stack.backing = hfvfs::conformance::DirBacking(dir->path());
  stack.keep_alive = dir;
  HFVFS_RETURN_IF_ERROR(stack.top->start());
  return stack;
}

hfvfs::conformance::StackConfig UppercaseOverLocal() {
  hfvfs::conformance::StackConfig config;
  config.name = "UppercaseOverLocal";
  // A read-only wrapper: every write feature is declared missing, and the suite checks that
  // each one is refused. Seeded names do not end in ".up", so their bytes pass unchanged.
  config.cannot = {Feature::kWrite,      Feature::kRandomWrite,  Feature::kRename,
                   Feature::kRenameDirs, Feature::kAtomicRename, Feature::kSymlinks,
                   Feature::kSetMode,    Feature::kSetMtime,     Feature::kOverwrite};
  config.make = [](const hfvfs::conformance::SeedTree& seed) {
    return MakeStack(seed, "only_suffix = \".up\"\n");
  };
  return config;
}

INSTANTIATE_TEST_SUITE_P(Uppercase, LayerConformance, ::testing::Values(UppercaseOverLocal()),
                         hfvfs::conformance::ConformanceName);

TEST(Uppercase, ShowsMatchingFilesUpperCasedWithTheirOwnVersion) {
  hfvfs::conformance::SeedTree seed({Feature::kSymlinks});
  auto stack = MakeStack(seed, "only_suffix = \".up\"\n");
  ASSERT_TRUE(stack.ok()) << stack.error().message();
  ASSERT_TRUE(stack->backing.write("shout.up", "Hello, World 42\n").ok());
  auto file = stack->top->open("shout.up", O_RDONLY);
  ASSERT_TRUE(file.ok()) << file.error().message();
  std::string buf(64, '\0');
  auto n = (*file)->read(0, std::as_writable_bytes(std::span(buf)));
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(buf.substr(0, *n), "HELLO, WORLD 42\n");
  ASSERT_TRUE((*file)->close().ok());
  // Its bytes differ from the folder's, so its version does too; other files keep theirs.
  auto upper = stack->top->stat("shout.up");
  auto plain = stack->top->stat("hello.txt");
  ASSERT_TRUE(upper.ok() && plain.ok());
  EXPECT_EQ(upper->version.rfind("upper:", 0), 0u) << upper->version;
  EXPECT_EQ(plain->version.rfind("upper:", 0), std::string::npos);
}

TEST(Uppercase, RefusesWritesTheFolderCouldDo) {
  hfvfs::conformance::SeedTree seed({Feature::kSymlinks});
  auto stack = MakeStack(seed, "");
  ASSERT_TRUE(stack.ok()) << stack.error().message();
  EXPECT_FALSE(stack->top->capabilities().writable);
  EXPECT_EQ(stack->top->open("hello.txt", O_WRONLY).code(), EROFS);
  EXPECT_EQ(stack->top->remove("hello.txt").code(), EROFS);
  EXPECT_TRUE(stack->top->stat("hello.txt").ok());
}

TEST(Uppercase, UnknownOptionsAreRefused) {
  auto dir = std::make_shared<hfvfs::conformance::TempDir>();
  auto local = hfvfs::local::LocalLayer::Open(dir->path(), {});
  ASSERT_TRUE(local.ok());
  auto layer = hfvfs::conformance::LoadPluginLayer(UPPERCASE_PLUGIN, "only_sufix = \".up\"\n",
                                                   std::move(*local));
  ASSERT_FALSE(layer.ok());
  EXPECT_NE(layer.error().message().find("only_sufix"), std::string::npos);
}

}  // namespace
