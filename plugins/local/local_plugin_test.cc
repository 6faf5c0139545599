// The built libhfvfs-local.so, loaded the way the kernel loads it: descriptor checks, options
// (required `path`, `~` expansion, `read_only`), and errors that name the spec's key.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "hfvfs/config.h"
#include "hfvfs/plugin.h"
#include "plugin_loader.h"

namespace {

namespace fs = std::filesystem;

class NullHost final : public hfvfs::Host {
 public:
  void invalidate(std::string_view, hfvfs::Invalidation) override {}
  std::string_view mount_id() const override { return "test"; }
  bool shutting_down() const override { return false; }
};

class LocalPluginTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto descriptor = loader_.Load("local");
    ASSERT_TRUE(descriptor.ok()) << descriptor.error().message();
    descriptor_ = *descriptor;
    std::string tmpl = (fs::temp_directory_path() / "hfvfs-localplugin-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    home_ = tmpl;
    fs::create_directories(home_ + "/data");
    std::ofstream(home_ + "/data/a.txt") << "alpha";
    old_home_ = getenv("HOME") ? getenv("HOME") : "";
    setenv("HOME", home_.c_str(), 1);
  }
  void TearDown() override {
    setenv("HOME", old_home_.c_str(), 1);
    std::error_code ec;
    fs::remove_all(home_, ec);
  }

  hfvfs::Result<std::unique_ptr<hfvfs::Layer>> Create(const std::string& toml,
                                                      std::unique_ptr<hfvfs::ConfigView>& view) {
    auto parsed = hfvfs::ConfigView::FromToml(toml, home_ + "/spec.toml");
    EXPECT_TRUE(parsed.ok()) << parsed.error().message();
    if (!parsed) return parsed.error();
    view = std::move(*parsed);
    view->set_label("layer 1 (local)");
    hfvfs::LayerArgs args{*view, nullptr, host_, 0, ""};
    return descriptor_->create(args);
  }

  hfvfs::kernel::PluginLoader loader_{{HFVFS_BUILD_PLUGIN_DIR}, false};
  const hfvfs::PluginDescriptor* descriptor_ = nullptr;
  NullHost host_;
  std::string home_;
  std::string old_home_;
};

TEST_F(LocalPluginTest, DescriptorDeclaresASourceWithItsOptions) {
  EXPECT_STREQ(descriptor_->name, "local");
  EXPECT_EQ(descriptor_->kind, hfvfs::LayerKind::kSource);
  ASSERT_EQ(descriptor_->option_count, 2u);
  EXPECT_STREQ(descriptor_->options[0].key, "path");
  EXPECT_STREQ(descriptor_->options[1].key, "read_only");
  EXPECT_STREQ(descriptor_->options[1].fallback, "false");
}

TEST_F(LocalPluginTest, TildeIsExpandedAndTheFolderServed) {
  std::unique_ptr<hfvfs::ConfigView> view;
  auto layer = Create("path = \"~/data\"\n", view);
  ASSERT_TRUE(layer.ok()) << layer.error().message();
  EXPECT_TRUE(view->check_unused().ok());
  EXPECT_TRUE((*layer)->capabilities().random_write);
  auto attr = (*layer)->stat("a.txt");
  ASSERT_TRUE(attr.ok()) << attr.error().message();
  EXPECT_EQ(attr->size, 5u);
}

TEST_F(LocalPluginTest, ReadOnlyOptionRefusesWrites) {
  std::unique_ptr<hfvfs::ConfigView> view;
  auto layer = Create("path = \"~/data\"\nread_only = true\n", view);
  ASSERT_TRUE(layer.ok()) << layer.error().message();
  EXPECT_TRUE(view->check_unused().ok());
  EXPECT_FALSE((*layer)->capabilities().writable);
  EXPECT_EQ((*layer)->create("b.txt", 0644, O_WRONLY).code(), EROFS);
}

TEST_F(LocalPluginTest, MissingPathIsAnErrorNamingTheKey) {
  std::unique_ptr<hfvfs::ConfigView> view;
  auto layer = Create("read_only = true\n", view);
  ASSERT_FALSE(layer.ok());
  EXPECT_EQ(layer.code(), EINVAL);
  EXPECT_NE(layer.error().message().find("path"), std::string::npos) << layer.error().message();
}

TEST_F(LocalPluginTest, MissingFolderNamesTheSpecLineAndFolder) {
  std::unique_ptr<hfvfs::ConfigView> view;
  auto layer = Create("\npath = \"~/nope\"\n", view);
  ASSERT_FALSE(layer.ok());
  EXPECT_EQ(layer.code(), ENOENT);
  const std::string& message = layer.error().message();
  EXPECT_NE(message.find("spec.toml:2"), std::string::npos) << message;
  EXPECT_NE(message.find(home_ + "/nope"), std::string::npos) << message;
}

TEST_F(LocalPluginTest, WrongTypeIsAnError) {
  std::unique_ptr<hfvfs::ConfigView> view;
  auto layer = Create("path = \"~/data\"\nread_only = \"yes\"\n", view);
  ASSERT_FALSE(layer.ok());
  EXPECT_NE(layer.error().message().find("read_only"), std::string::npos);
}

TEST_F(LocalPluginTest, UnknownKeyIsReported) {
  std::unique_ptr<hfvfs::ConfigView> view;
  auto layer = Create("path = \"~/data\"\nreadonly = true\n", view);
  ASSERT_TRUE(layer.ok());
  hfvfs::Status unused = view->check_unused();
  ASSERT_FALSE(unused.ok());
  EXPECT_NE(unused.error().message().find("readonly"), std::string::npos);
}

}  // namespace
