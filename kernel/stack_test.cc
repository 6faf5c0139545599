#include "stack.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>

#include "inspect_commands.h"
#include "plugin_loader.h"
#include "test_util.h"

namespace hfvfs::kernel {
namespace {

using testing::Contains;
using testing::TempDir;

class TestHost final : public Host {
 public:
  void invalidate(std::string_view, Invalidation) override {}
  std::string_view mount_id() const override { return "test"; }
  bool shutting_down() const override { return false; }
};

class StackTest : public ::testing::Test {
 protected:
  // A spec whose plugin_path is the test plugins' folder, with `layers` appended.
  std::string SpecFile(const std::string& layers) {
    std::string mnt = dir_.Mkdir("mnt");
    return dir_.Write("spec.toml", "mountpoint = \"" + mnt + "\"\nplugin_path = \"" +
                                       std::string(HFVFS_TEST_PLUGIN_DIR) + "\"\n" + layers);
  }
  Result<Stack> Build(const std::string& layers) {
    Result<MountSpec> spec = LoadSpec(SpecFile(layers), std::nullopt);
    EXPECT_TRUE(spec.ok()) << spec.error().message();
    if (!spec) return spec.error();
    spec_ = std::move(*spec);
    return BuildStack(spec_, host_);
  }
  std::string Fails(const std::string& layers) {
    Result<Stack> stack = Build(layers);
    EXPECT_FALSE(stack.ok());
    return stack.ok() ? "" : stack.error().message();
  }
  std::string File() const { return dir_.path() + "/spec.toml"; }

  TempDir dir_;
  TestHost host_;
  MountSpec spec_;
};

TEST_F(StackTest, BuildsSourceAndWrapperBottomToTop) {
  Result<Stack> stack = Build(
      "[[layer]]\ntype = \"memsrc\"\ntext = \"abc\"\nlimit = \"1KiB\"\n"
      "[[layer]]\ntype = \"upper\"\nsuffix = \"x\"\n");
  ASSERT_TRUE(stack.ok()) << stack.error().message();
  ASSERT_EQ(stack->layers.size(), 2u);
  EXPECT_EQ(stack->layers[0]->type(), "memsrc");
  EXPECT_EQ(stack->top().type(), "upper");
  EXPECT_STREQ(stack->plugins[1]->name, "upper");
  EXPECT_EQ(stack->plugin_files[0], std::string(HFVFS_TEST_PLUGIN_DIR) + "/libhfvfs-memsrc.so");
  // The wrapper forwards to the source, which got its option.
  Result<Attr> attr = stack->top().stat("hello.txt");
  ASSERT_TRUE(attr.ok()) << attr.error().message();
  EXPECT_EQ(attr->size, 3u);
}

TEST_F(StackTest, UnknownKeyInALayerNamesFileAndLine) {
  std::string msg = Fails("[[layer]]\ntype = \"memsrc\"\ntext = \"abc\"\ncolour = \"blue\"\n");
  EXPECT_TRUE(Contains(msg, File() + ":6: layer 1 (memsrc): key 'colour': unknown key"));
}

TEST_F(StackTest, UnknownKeyInAWrapper) {
  std::string msg = Fails("[[layer]]\ntype = \"memsrc\"\n[[layer]]\ntype = \"upper\"\nsufix = 1\n");
  EXPECT_TRUE(Contains(msg, File() + ":7: layer 2 (upper): key 'sufix': unknown key"));
}

TEST_F(StackTest, BadSizeAndWrongTypeInALayer) {
  std::string msg = Fails("[[layer]]\ntype = \"memsrc\"\nlimit = \"lots\"\n");
  EXPECT_TRUE(Contains(msg, File() + ":5: layer 1 (memsrc): key 'limit'"));
  msg = Fails("[[layer]]\ntype = \"memsrc\"\ntext = 5\n");
  EXPECT_TRUE(Contains(msg, File() + ":5: layer 1 (memsrc): key 'text': expected a string"));
}

TEST_F(StackTest, CreateFailureNamesTheLayer) {
  std::string msg = Fails("[[layer]]\ntype = \"memsrc\"\nfail = true\n");
  EXPECT_TRUE(Contains(msg, File() + ":3: layer 1 (memsrc): memsrc: asked to fail"));
}

TEST_F(StackTest, WrapperAtTheBottomIsAnError) {
  std::string msg = Fails("[[layer]]\ntype = \"upper\"\n");
  EXPECT_TRUE(Contains(msg, File() + ":4: layer 1 (upper): key 'type'"));
  EXPECT_TRUE(Contains(msg, "the first [[layer]] must be a source"));
}

TEST_F(StackTest, SourceAboveAnotherLayerIsAnError) {
  std::string msg = Fails("[[layer]]\ntype = \"memsrc\"\n[[layer]]\ntype = \"memsrc\"\n");
  EXPECT_TRUE(Contains(msg, File() + ":6: layer 2 (memsrc): key 'type'"));
  EXPECT_TRUE(Contains(msg, "is a source and cannot sit above another layer"));
}

TEST_F(StackTest, UnknownLayerType) {
  std::string msg = Fails("[[layer]]\ntype = \"nosuch\"\n");
  EXPECT_TRUE(Contains(msg, File() + ":4: layer 1 (nosuch): key 'type': unknown layer type"));
  EXPECT_TRUE(Contains(msg, HFVFS_TEST_PLUGIN_DIR));
}

TEST_F(StackTest, RefusedPluginNamesSpecLineAndPluginFile) {
  std::string msg = Fails("[[layer]]\ntype = \"badmajor\"\n");
  EXPECT_TRUE(Contains(msg, File() + ":4: layer 1 (badmajor): key 'type': plugin " +
                                std::string(HFVFS_TEST_PLUGIN_DIR) +
                                "/libhfvfs-badmajor.so refused"));
}

TEST_F(StackTest, CheckPrintsOkAndTheStack) {
  std::string spec = SpecFile("[[layer]]\ntype = \"memsrc\"\n[[layer]]\ntype = \"upper\"\n");
  std::ostringstream out, err;
  EXPECT_EQ(RunCheck(spec, std::nullopt, true, out, err), 0) << err.str();
  EXPECT_TRUE(Contains(out.str(), "spec OK: memsrc -> upper (bottom to top)"));
  EXPECT_TRUE(Contains(out.str(), "layer 2: upper 0.0.1 (wrapper) from "));
  EXPECT_EQ(err.str(), "");
}

TEST_F(StackTest, CheckNeverStartsALayer) {
  std::string marker = dir_.path() + "/started";
  std::string layers = "[[layer]]\ntype = \"memsrc\"\nstart_marker = \"" + marker + "\"\n";
  std::ostringstream out, err;
  EXPECT_EQ(RunCheck(SpecFile(layers), std::nullopt, false, out, err), 0) << err.str();
  EXPECT_FALSE(std::filesystem::exists(marker));
  // The marker works: starting the stack built from the same spec creates it.
  Result<Stack> stack = Build(layers);
  ASSERT_TRUE(stack.ok()) << stack.error().message();
  ASSERT_TRUE(stack->top().start().ok());
  EXPECT_TRUE(std::filesystem::exists(marker));
}

TEST_F(StackTest, CheckReportsEveryErrorWithFileAndLine) {
  std::string spec = SpecFile("[[layer]]\ntype = \"memsrc\"\ncolour = 1\n");
  dir_.Write("mnt/stray", "x");
  std::ostringstream out, err;
  EXPECT_EQ(RunCheck(spec, std::nullopt, false, out, err), 1);
  EXPECT_EQ(out.str(), "");
  EXPECT_TRUE(Contains(err.str(), "error: " + File() + ":1: key 'mountpoint': mountpoint "));
  EXPECT_TRUE(Contains(err.str(), "is not empty"));
  EXPECT_TRUE(Contains(err.str(), "error: " + File() + ":5: layer 1 (memsrc): key 'colour'"));
  EXPECT_TRUE(Contains(err.str(), "2 errors; nothing was mounted"));
}

TEST_F(StackTest, CheckStopsAtASpecErrorAndShowsWarnings) {
  std::ostringstream out, err;
  std::string spec = dir_.Write("bad.toml", "[[layer]]\ntype = \"memsrc\"\n");
  EXPECT_EQ(RunCheck(spec, std::nullopt, false, out, err), 1);
  EXPECT_TRUE(Contains(err.str(), "error: " + spec + ": no mountpoint"));
  // --mountpoint fills the gap.
  std::ostringstream out2, err2;
  EXPECT_EQ(
      RunCheck(SpecFile("[[layer]]\ntype = \"memsrc\"\n"), dir_.Mkdir("m2"), false, out2, err2), 0)
      << err2.str();
}

}  // namespace
}  // namespace hfvfs::kernel
