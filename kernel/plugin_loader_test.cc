#include "plugin_loader.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <sstream>

#include "inspect_commands.h"
#include "test_util.h"

namespace hfvfs::kernel {
namespace {

using testing::Contains;
using testing::TempDir;

const std::string kDir = HFVFS_TEST_PLUGIN_DIR;

std::string FileFor(const std::string& type) { return kDir + "/libhfvfs-" + type + ".so"; }

// Loads a test plugin that must be refused; returns the message after checking it names the
// file.
std::string Refusal(const std::string& type) {
  PluginLoader loader({kDir}, false);
  Result<const PluginDescriptor*> d = loader.LoadFile(FileFor(type));
  EXPECT_FALSE(d.ok()) << type;
  if (d.ok()) return "";
  EXPECT_EQ(d.code(), EINVAL);
  EXPECT_TRUE(Contains(d.error().message(), "plugin " + FileFor(type) + " refused: "));
  // Loading by type gives the same refusal.
  Result<const PluginDescriptor*> by_type = loader.Load(type);
  EXPECT_FALSE(by_type.ok());
  if (!by_type.ok()) {
    EXPECT_EQ(by_type.error().message(), d.error().message());
  }
  return d.error().message();
}

TEST(PluginLoader, LoadsAGoodPlugin) {
  PluginLoader loader({kDir}, false);
  Result<const PluginDescriptor*> d = loader.Load("memsrc");
  ASSERT_TRUE(d.ok()) << d.error().message();
  EXPECT_STREQ((*d)->name, "memsrc");
  EXPECT_STREQ((*d)->plugin_version, "0.0.1");
  EXPECT_EQ((*d)->kind, LayerKind::kSource);
  EXPECT_EQ((*d)->option_count, 5u);
  EXPECT_STREQ((*d)->build_tag, HFVFS_BUILD_TAG);
  EXPECT_EQ(loader.FileOf(*d), FileFor("memsrc"));
  // Loaded once: the same descriptor again, by type or by file.
  EXPECT_EQ(*loader.Load("memsrc"), *d);
  EXPECT_EQ(*loader.LoadFile(FileFor("memsrc")), *d);
}

TEST(PluginLoader, LibraryOutlivesTheLoader) {
  const PluginDescriptor* d = nullptr;
  {
    PluginLoader loader({kDir}, false);
    d = *loader.Load("upper");
  }
  // Still mapped (RTLD_NODELETE): the descriptor's strings are readable.
  EXPECT_STREQ(d->name, "upper");
  EXPECT_STREQ(d->summary, "a forwarding wrapper (tests)");
}

TEST(PluginLoader, RefusesAnotherAbiMajor) {
  std::string msg = Refusal("badmajor");
  const std::string major = std::to_string(kAbiMajor), minor = std::to_string(kAbiMinor);
  EXPECT_TRUE(Contains(msg, "built for plugin ABI " + std::to_string(kAbiMajor + 1) + "." + minor))
      << msg;
  EXPECT_TRUE(Contains(msg, "speaks ABI " + major + "." + minor)) << msg;
}

TEST(PluginLoader, RefusesANewerAbiMinor) {
  std::string msg = Refusal("newminor");
  const std::string major = std::to_string(kAbiMajor);
  EXPECT_TRUE(Contains(msg, "needs plugin ABI " + major + "." + std::to_string(kAbiMinor + 1) +
                                ", newer than this hfvfs's " + major + "." +
                                std::to_string(kAbiMinor)))
      << msg;
}

TEST(PluginLoader, RefusesATooSmallDescriptor) {
  std::string msg = Refusal("smallstruct");
  EXPECT_TRUE(Contains(msg, "its descriptor is 16 bytes, smaller than"));
}

TEST(PluginLoader, RefusesAnotherBuildTagShowingBoth) {
  std::string msg = Refusal("badtag");
  EXPECT_TRUE(Contains(msg, "built as 'othercc-99/libstdc++-cxx11abi1/sdk-0.0.0'"));
  EXPECT_TRUE(Contains(msg, std::string("this hfvfs is '") + HFVFS_BUILD_TAG + "'"));
}

TEST(PluginLoader, RefusesALibraryWithoutTheSymbol) {
  std::string msg = Refusal("nosymbol");
  EXPECT_TRUE(Contains(msg, "not an hfvfs plugin (no 'hfvfs_plugin' symbol"));
}

TEST(PluginLoader, RefusesANameThatDiffersFromTheFile) {
  std::string msg = Refusal("misnamed");
  EXPECT_TRUE(Contains(msg, "names the type 'other' but the file is named for 'misnamed'"));
}

TEST(PluginLoader, RefusesAFileThatIsNotALibrary) {
  std::string msg = Refusal("notelf");
  EXPECT_TRUE(Contains(msg, "not a shared library (no ELF header)"));
}

TEST(PluginLoader, ReportsTheDlopenErrorOfABrokenLibrary) {
  // An ELF header followed by garbage: dlopen's own reason must reach the message.
  TempDir dir;
  std::string file = dir.Write("libhfvfs-broken.so", std::string("\x7f"
                                                                 "ELF",
                                                                 4) +
                                                         "garbage");
  PluginLoader loader({dir.path()}, false);
  Result<const PluginDescriptor*> d = loader.Load("broken");
  ASSERT_FALSE(d.ok());
  EXPECT_TRUE(Contains(d.error().message(), "plugin " + file + " refused: cannot load it: "));
  EXPECT_TRUE(Contains(d.error().message(), file + ":"));  // dlerror names the file too
}

TEST(PluginLoader, UnknownTypeListsTheFoldersSearched) {
  TempDir other;
  PluginLoader loader({other.path(), kDir}, false);
  Result<const PluginDescriptor*> d = loader.Load("nosuch");
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.code(), ENOENT);
  EXPECT_TRUE(Contains(d.error().message(), "unknown layer type 'nosuch'"));
  EXPECT_TRUE(Contains(d.error().message(), other.path() + ", " + kDir));
  EXPECT_TRUE(Contains(d.error().message(), "HFVFS_PLUGIN_PATH"));
  Result<const PluginDescriptor*> bad = loader.Load("../etc");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.code(), EINVAL);
}

TEST(PluginLoader, FirstFolderWinsAndRefusalsAreNotSkipped) {
  TempDir first;
  // A refused plugin named like a good one, earlier in the path: an error, not a fallback.
  std::filesystem::copy_file(FileFor("badtag"), first.path() + "/libhfvfs-memsrc.so");
  PluginLoader loader({first.path(), kDir}, false);
  Result<const PluginDescriptor*> d = loader.Load("memsrc");
  ASSERT_FALSE(d.ok());
  EXPECT_TRUE(Contains(d.error().message(), first.path() + "/libhfvfs-memsrc.so refused"));
}

TEST(PluginLoader, SearchPathOrder) {
  setenv("HFVFS_PLUGIN_PATH", "/env/a::/env/b/", 1);
  PluginLoader loader({"/spec/dir"});
  unsetenv("HFVFS_PLUGIN_PATH");
  const std::vector<std::string>& dirs = loader.search_path();
  ASSERT_GE(dirs.size(), 4u);
  EXPECT_EQ(dirs[0], "/spec/dir");
  EXPECT_EQ(dirs[1], "/env/a");
  EXPECT_EQ(dirs[2], "/env/b");
  // This test runs from the build tree, so the build's plugin folder comes next, and no
  // installed folder is searched.
  EXPECT_EQ(dirs[3], std::filesystem::path(HFVFS_BUILD_PLUGIN_DIR).lexically_normal().string());
  EXPECT_EQ(dirs.size(), 4u);
}

TEST(PluginLoader, TypeOfFile) {
  EXPECT_EQ(PluginTypeOfFile("/x/libhfvfs-local.so"), "local");
  EXPECT_EQ(PluginTypeOfFile("libhfvfs-.so"), "");
  EXPECT_EQ(PluginTypeOfFile("/x/libfoo.so"), "");
  EXPECT_EQ(PluginTypeOfFile("/x/libhfvfs-local.so.1"), "");
  EXPECT_TRUE(IsValidPluginType("s3"));
  EXPECT_FALSE(IsValidPluginType("S3"));
  EXPECT_FALSE(IsValidPluginType("a/b"));
}

TEST(PluginLoader, DiscoverListsLoadedRefusedAndShadowed) {
  TempDir first;
  std::filesystem::copy_file(FileFor("upper"), first.path() + "/libhfvfs-upper.so");
  PluginLoader loader({first.path(), kDir}, false);
  std::vector<FoundPlugin> found = loader.Discover();
  std::map<std::string, std::vector<FoundPlugin>> by_type;
  for (const FoundPlugin& p : found) by_type[p.type].push_back(p);
  for (const char* refused :
       {"badmajor", "newminor", "smallstruct", "badtag", "nosymbol", "misnamed", "notelf"}) {
    ASSERT_EQ(by_type[refused].size(), 1u) << refused;
    EXPECT_EQ(by_type[refused][0].descriptor, nullptr);
    EXPECT_TRUE(Contains(by_type[refused][0].refusal, FileFor(refused)));
  }
  ASSERT_EQ(by_type["memsrc"].size(), 1u);
  EXPECT_NE(by_type["memsrc"][0].descriptor, nullptr);
  ASSERT_EQ(by_type["upper"].size(), 2u);
  EXPECT_EQ(by_type["upper"][0].path, first.path() + "/libhfvfs-upper.so");
  EXPECT_EQ(by_type["upper"][0].shadowed_by, "");
  EXPECT_EQ(by_type["upper"][1].shadowed_by, first.path() + "/libhfvfs-upper.so");
}

TEST(RunPlugins, ListsPluginsOptionsAndRefusals) {
  PluginLoader loader({kDir}, false);
  std::ostringstream out;
  EXPECT_EQ(RunPlugins(loader, out), 1);  // some are refused
  std::string text = out.str();
  EXPECT_TRUE(Contains(text, "memsrc 0.0.1 (source): an in-memory file (tests)"));
  EXPECT_TRUE(Contains(text, "  file: " + FileFor("memsrc")));
  EXPECT_TRUE(Contains(text, "    limit (size, default 1MiB): the longest text accepted"));
  EXPECT_TRUE(Contains(text, "upper 0.0.1 (wrapper)"));
  EXPECT_TRUE(Contains(text, "badtag: REFUSED\n  plugin " + FileFor("badtag") + " refused"));
}

TEST(RunPlugins, NothingFound) {
  TempDir empty;
  PluginLoader loader({empty.path()}, false);
  std::ostringstream out;
  EXPECT_EQ(RunPlugins(loader, out), 1);
  EXPECT_TRUE(Contains(out.str(), "no plugins found"));
}

}  // namespace
}  // namespace hfvfs::kernel
