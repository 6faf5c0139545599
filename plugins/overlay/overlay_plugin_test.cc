// The built libhfvfs-overlay.so, loaded the way the kernel loads it: the default upper layer
// (the mountpoint's own folder, opened before mounting), `upper`, `copy_up`, and a spec being
// checked (no mountpoint) leaving no trace.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "hfvfs/config.h"
#include "hfvfs/plugin.h"
#include "mem_layer.h"
#include "plugin_loader.h"

namespace {

namespace fs = std::filesystem;

class NullHost final : public hfvfs::Host {
 public:
  void invalidate(std::string_view, hfvfs::Invalidation) override {}
  std::string_view mount_id() const override { return "test"; }
  bool shutting_down() const override { return false; }
};

class OverlayPluginTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto descriptor = loader_.Load("overlay");
    ASSERT_TRUE(descriptor.ok()) << descriptor.error().message();
    descriptor_ = *descriptor;
    std::string tmpl = (fs::temp_directory_path() / "hfvfs-overlayplugin-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    lower_ = std::make_shared<hfvfs::overlay::MemLayer>();
    lower_->AddFile("remote.txt", "from the bucket");
    lower_->AddFile("both.txt", "lower");
  }
  void TearDown() override {
    EXPECT_EQ(lower_->writes(), 0);
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  hfvfs::Result<std::unique_ptr<hfvfs::Layer>> Create(const std::string& toml,
                                                      const std::string& mountpoint) {
    std::ofstream(dir_ + "/spec.toml") << toml;
    auto parsed = hfvfs::ConfigView::FromFile(dir_ + "/spec.toml");
    EXPECT_TRUE(parsed.ok()) << parsed.error().message();
    if (!parsed) return parsed.error();
    view_ = std::move(*parsed);
    view_->set_label("layer 2 (overlay)");
    hfvfs::LayerArgs args{*view_, lower_, host_, 1, mountpoint};
    auto layer = descriptor_->create(args);
    if (layer) {
      EXPECT_TRUE(view_->check_unused().ok());
    }
    return layer;
  }

  hfvfs::kernel::PluginLoader loader_{{HFVFS_BUILD_PLUGIN_DIR}, false};
  const hfvfs::PluginDescriptor* descriptor_ = nullptr;
  NullHost host_;
  std::string dir_;
  std::shared_ptr<hfvfs::overlay::MemLayer> lower_;
  std::unique_ptr<hfvfs::ConfigView> view_;
};

TEST_F(OverlayPluginTest, DescriptorIsAWrapperWithItsOptions) {
  EXPECT_EQ(descriptor_->kind, hfvfs::LayerKind::kWrapper);
  EXPECT_STREQ(descriptor_->name, "overlay");
  ASSERT_EQ(descriptor_->option_count, 3u);
  EXPECT_STREQ(descriptor_->options[0].key, "upper");
  EXPECT_STREQ(descriptor_->options[1].key, "copy_up");
  EXPECT_STREQ(descriptor_->options[2].key, "on_touch");
}

TEST_F(OverlayPluginTest, DefaultUpperIsTheMountpointsOwnFolder) {
  std::string mnt = dir_ + "/mnt";
  fs::create_directories(mnt);
  std::ofstream(mnt + "/both.txt") << "already here";
  std::ofstream(mnt + "/kept.txt") << "kept";
  auto layer = Create("", mnt);
  ASSERT_TRUE(layer.ok()) << layer.error().message();
  ASSERT_TRUE((*layer)->start().ok());
  auto kept = (*layer)->stat("kept.txt");
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(kept->size, 4u);
  EXPECT_EQ((*layer)->stat("both.txt")->size, 12u) << "the file in the mountpoint must win";
  EXPECT_EQ((*layer)->stat("remote.txt")->size, 15u);
  auto f = (*layer)->create("new.txt", 0644, O_WRONLY | O_CREAT);
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->close().ok());
  EXPECT_TRUE(fs::exists(mnt + "/new.txt"));
}

TEST_F(OverlayPluginTest, ExplicitUpperIsCreatedAndStrictModeRefuses) {
  auto layer = Create("upper = \"state/upper\"\ncopy_up = false\n", dir_ + "/mnt");
  ASSERT_TRUE(layer.ok()) << layer.error().message();
  EXPECT_TRUE(fs::is_directory(dir_ + "/state/upper")) << "relative to the spec's folder";
  ASSERT_TRUE((*layer)->start().ok());
  EXPECT_EQ((*layer)->open("remote.txt", O_RDWR).code(), EPERM);
  EXPECT_EQ((*layer)->remove("remote.txt").code(), EPERM);
}

TEST_F(OverlayPluginTest, OnTouchIgnoreLeavesLowerFilesBelow) {
  auto layer = Create("upper = \"up\"\non_touch = \"ignore\"\ncopy_up = false\n", dir_);
  ASSERT_TRUE(layer.ok()) << layer.error().message();
  ASSERT_TRUE((*layer)->start().ok());
  hfvfs::SetAttr touch{.set_mtime = true, .mtime_ns = 1'700'000'000'000'000'000};
  EXPECT_TRUE((*layer)->setattr("remote.txt", touch).ok());
  EXPECT_FALSE(fs::exists(dir_ + "/up/remote.txt"));
  EXPECT_EQ((*layer)->setattr("remote.txt", {.set_mode = true, .mode = 0600}).code(), EPERM);
}

TEST_F(OverlayPluginTest, CheckingASpecLeavesNoTrace) {
  auto with_upper = Create("upper = \"state/upper\"\n", "");
  ASSERT_TRUE(with_upper.ok()) << with_upper.error().message();
  EXPECT_FALSE(fs::exists(dir_ + "/state"));
  auto without = Create("", "");
  ASSERT_TRUE(without.ok()) << without.error().message();
  EXPECT_EQ((*without)->start().code(), EINVAL);
}

TEST_F(OverlayPluginTest, BadValuesNameTheKey) {
  auto bad = Create("copy_up = \"yes\"\n", dir_);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message().find("copy_up"), std::string::npos) << bad.error().message();
  auto touch = Create("on_touch = \"skip\"\n", dir_);
  ASSERT_FALSE(touch.ok());
  EXPECT_NE(touch.error().message().find("on_touch"), std::string::npos);
  auto empty = Create("upper = \"\"\n", dir_);
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.error().message().find("upper"), std::string::npos);
}

}  // namespace
