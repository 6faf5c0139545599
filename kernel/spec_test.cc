#include <gtest/gtest.h>

#include <filesystem>

#include "stack.h"
#include "test_util.h"

namespace hfvfs::kernel {
namespace {

using testing::Contains;
using testing::TempDir;

class SpecTest : public ::testing::Test {
 protected:
  // Writes spec.toml into the temp folder; "@MNT@" becomes an empty mountpoint folder.
  std::string Spec(std::string text) {
    std::string mnt = dir_.Mkdir("mnt");
    for (size_t at; (at = text.find("@MNT@")) != std::string::npos;) text.replace(at, 5, mnt);
    return dir_.Write("spec.toml", text);
  }
  // Loads a spec that must fail and returns its message.
  std::string Fails(const std::string& text, std::optional<std::string> mnt = std::nullopt) {
    Result<MountSpec> spec = LoadSpec(Spec(text), mnt);
    EXPECT_FALSE(spec.ok());
    return spec.ok() ? "" : spec.error().message();
  }
  std::string File() const { return dir_.path() + "/spec.toml"; }

  TempDir dir_;
};

TEST_F(SpecTest, ReadsRootKeysOptionsAndLayers) {
  Result<MountSpec> spec = LoadSpec(Spec(R"(mountpoint = "@MNT@"
plugin_path = ["plugins", "/opt/hfvfs"]

[options]
allow_other = true
uid = 1000
gid = 1001
allow_non_empty = true
attr_ttl = "2s"
negative_ttl = "250ms"
max_inodes = 5000
stop_timeout = "1m"
read_only = true
read_ahead = "16MiB"
max_threads = 6
allow_plaintext_above_crypt = true

[[layer]]
type = "local"
path = "/data"

[[layer]]
type = "cache"
)"),
                                    std::nullopt);
  ASSERT_TRUE(spec.ok()) << spec.error().message();
  EXPECT_EQ(spec->path, File());
  EXPECT_EQ(spec->mountpoint, dir_.path() + "/mnt");
  EXPECT_EQ(spec->mountpoint_origin, File() + ":1: key 'mountpoint'");
  EXPECT_EQ(spec->plugin_path, (std::vector<std::string>{dir_.path() + "/plugins", "/opt/hfvfs"}));
  const MountOptions& o = spec->options;
  EXPECT_TRUE(o.allow_other);
  EXPECT_EQ(o.uid, 1000u);
  EXPECT_EQ(o.gid, 1001u);
  EXPECT_TRUE(o.allow_non_empty);
  EXPECT_EQ(o.attr_ttl, std::chrono::seconds(2));
  EXPECT_EQ(o.negative_ttl, std::chrono::milliseconds(250));
  EXPECT_EQ(o.max_inodes, 5000u);
  EXPECT_EQ(o.stop_timeout, std::chrono::minutes(1));
  EXPECT_TRUE(o.read_only);
  EXPECT_EQ(o.read_ahead, 16u << 20);
  EXPECT_EQ(o.max_threads, 6u);
  EXPECT_TRUE(o.allow_plaintext_above_crypt);
  ASSERT_EQ(spec->layers.size(), 2u);
  EXPECT_EQ(spec->layers[0].type, "local");
  EXPECT_EQ(spec->layers[0].index, 0);
  EXPECT_EQ(spec->layers[1].type, "cache");
  EXPECT_EQ(spec->layers[1].index, 1);
  EXPECT_TRUE(Contains(spec->layers[1].config->where(), "layer 2 (cache)"));
  EXPECT_TRUE(spec->warnings.empty());
}

TEST_F(SpecTest, ReadAheadDefaultsTo16MiBWithACacheLayerUnlessTheSpecSetsIt) {
  const std::string layers =
      "[[layer]]\ntype = \"local\"\npath = \"/data\"\n[[layer]]\ntype = \"cache\"\n";
  Result<MountSpec> unset = LoadSpec(Spec("mountpoint = \"@MNT@\"\n" + layers), std::nullopt);
  ASSERT_TRUE(unset.ok()) << unset.error().message();
  EXPECT_EQ(unset->options.read_ahead, 16u << 20);
  Result<MountSpec> set = LoadSpec(
      Spec("mountpoint = \"@MNT@\"\n[options]\nread_ahead = \"4MiB\"\n" + layers), std::nullopt);
  ASSERT_TRUE(set.ok()) << set.error().message();
  EXPECT_EQ(set->options.read_ahead, 4u << 20);
}

TEST_F(SpecTest, DefaultsWhenOptionsAreAbsent) {
  Result<MountSpec> spec =
      LoadSpec(Spec("mountpoint = \"@MNT@\"\n[[layer]]\ntype = \"local\"\n"), std::nullopt);
  ASSERT_TRUE(spec.ok()) << spec.error().message();
  EXPECT_FALSE(spec->options.allow_other);
  EXPECT_FALSE(spec->options.uid.has_value());
  EXPECT_EQ(spec->options.attr_ttl, std::chrono::seconds(10));
  EXPECT_EQ(spec->options.stop_timeout, std::chrono::seconds(45));
  EXPECT_EQ(spec->options.read_ahead, 4u << 20);
  EXPECT_EQ(spec->options.max_threads, kDefaultMaxThreads);
  EXPECT_TRUE(spec->plugin_path.empty());
}

TEST_F(SpecTest, PluginPathMayBeOneString) {
  setenv("HOME", "/home/tester", 1);
  Result<MountSpec> spec =
      LoadSpec(Spec("mountpoint = \"@MNT@\"\nplugin_path = \"~/p\"\n[[layer]]\ntype = \"local\"\n"),
               std::nullopt);
  ASSERT_TRUE(spec.ok()) << spec.error().message();
  ASSERT_EQ(spec->plugin_path.size(), 1u);
  EXPECT_EQ(spec->plugin_path[0], "/home/tester/p");
}

TEST_F(SpecTest, CommandLineMountpointWins) {
  Result<MountSpec> spec = LoadSpec(
      Spec("mountpoint = \"/elsewhere\"\n[[layer]]\ntype = \"local\"\n"), dir_.path() + "/other/");
  ASSERT_TRUE(spec.ok()) << spec.error().message();
  EXPECT_EQ(spec->mountpoint, dir_.path() + "/other");
  EXPECT_EQ(spec->mountpoint_origin, "--mountpoint");
}

TEST_F(SpecTest, NoMountpointIsAnError) {
  std::string msg = Fails("[[layer]]\ntype = \"local\"\n");
  EXPECT_TRUE(Contains(msg, File() + ": no mountpoint"));
  EXPECT_TRUE(Contains(msg, "--mountpoint DIR"));
  // ... unless given on the command line.
  EXPECT_TRUE(LoadSpec(File(), dir_.path()).ok());
}

TEST_F(SpecTest, NoLayersIsAnError) {
  std::string msg = Fails("mountpoint = \"@MNT@\"\n");
  EXPECT_TRUE(Contains(msg, File() + ": no [[layer]] tables"));
  EXPECT_TRUE(Contains(msg, "type = \"local\""));
}

TEST_F(SpecTest, LayerAsPlainTableIsAnError) {
  std::string msg = Fails("mountpoint = \"@MNT@\"\n[layer]\ntype = \"local\"\n");
  EXPECT_TRUE(Contains(msg, File() + ":2: key 'layer': expected [[layer]] tables"));
}

TEST_F(SpecTest, UnknownRootKeyNamesFileAndLine) {
  std::string msg =
      Fails("mountpoint = \"@MNT@\"\nmountpiont = \"/x\"\n[[layer]]\ntype = \"local\"\n");
  EXPECT_TRUE(Contains(msg, File() + ":2: key 'mountpiont': unknown key"));
  EXPECT_TRUE(Contains(msg, "mountpoint, plugin_path, options"));
}

TEST_F(SpecTest, UnknownOptionNamesFileAndLine) {
  std::string msg = Fails(
      "mountpoint = \"@MNT@\"\n[options]\nattr_ttl = \"1s\"\nallow_others = true\n"
      "[[layer]]\ntype = \"local\"\n");
  EXPECT_TRUE(Contains(msg, File() + ":4: options: key 'allow_others': unknown option"));
  EXPECT_TRUE(Contains(msg, "allow_other, uid"));
}

TEST_F(SpecTest, WrongTypeNamesFileLineAndExpectation) {
  std::string msg = Fails(
      "mountpoint = \"@MNT@\"\n[options]\nallow_other = \"yes\"\n[[layer]]\ntype = \"local\"\n");
  EXPECT_TRUE(Contains(msg, File() + ":3: options: key 'allow_other': expected true or false"));
  msg = Fails("mountpoint = 5\n[[layer]]\ntype = \"local\"\n");
  EXPECT_TRUE(Contains(msg, File() + ":1: key 'mountpoint': expected a path"));
  msg = Fails("mountpoint = \"@MNT@\"\n[[layer]]\ntype = 3\n");
  EXPECT_TRUE(Contains(msg, File() + ":3: layer 1: key 'type': expected a string"));
  msg = Fails("mountpoint = \"@MNT@\"\nplugin_path = [1]\n[[layer]]\ntype = \"local\"\n");
  EXPECT_TRUE(Contains(msg, File() + ":2: key 'plugin_path'"));
}

TEST_F(SpecTest, BadDurationNamesFileAndLine) {
  std::string msg = Fails(
      "mountpoint = \"@MNT@\"\n[options]\nattr_ttl = \"10 parsecs\"\n[[layer]]\ntype = "
      "\"local\"\n");
  EXPECT_TRUE(Contains(msg, File() + ":3: options: key 'attr_ttl'"));
  msg = Fails(
      "mountpoint = \"@MNT@\"\n[options]\nstop_timeout = \"0\"\n[[layer]]\ntype = \"local\"\n");
  EXPECT_TRUE(
      Contains(msg, File() + ":3: options: key 'stop_timeout': expected a duration above 0"));
}

TEST_F(SpecTest, BadIdsAndCountsAreErrors) {
  std::string msg = Fails(
      "mountpoint = \"@MNT@\"\n[options]\nuid = -1\nmax_inodes = -5\nread_ahead = \"1GiB\"\n"
      "max_threads = 0\n[[layer]]\ntype = \"local\"\n");
  EXPECT_TRUE(Contains(msg, File() + ":3: options: key 'uid': expected a numeric id"));
  EXPECT_TRUE(Contains(msg, File() + ":4: options: key 'max_inodes'"));
  EXPECT_TRUE(Contains(msg, File() + ":5: options: key 'read_ahead': expected a size from 4KiB"));
  EXPECT_TRUE(Contains(
      msg, File() + ":6: options: key 'max_threads': expected a thread count from 1 to 256"));
}

TEST_F(SpecTest, LayerWithoutOrWithBadType) {
  std::string msg = Fails("mountpoint = \"@MNT@\"\n[[layer]]\npath = \"/x\"\n");
  EXPECT_TRUE(Contains(msg, "missing key 'type'"));
  EXPECT_TRUE(Contains(msg, File() + ":2"));
  msg = Fails("mountpoint = \"@MNT@\"\n[[layer]]\ntype = \"Local Dir\"\n");
  EXPECT_TRUE(Contains(msg, File() + ":3: layer 1: key 'type': 'Local Dir' is not a layer type"));
}

TEST_F(SpecTest, EveryErrorIsReportedAtOnce) {
  std::string msg = Fails("colour = \"red\"\n[options]\nuid = \"me\"\n");
  EXPECT_TRUE(Contains(msg, "no mountpoint"));
  EXPECT_TRUE(Contains(msg, "key 'colour'"));
  EXPECT_TRUE(Contains(msg, "key 'uid'"));
  EXPECT_TRUE(Contains(msg, "no [[layer]] tables"));
}

TEST_F(SpecTest, SyntaxErrorAndMissingFile) {
  std::string msg = Fails("mountpoint = \n");
  EXPECT_TRUE(Contains(msg, File() + ":1:"));
  Result<MountSpec> missing = LoadSpec(dir_.path() + "/nope.toml", std::nullopt);
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(Contains(missing.error().message(), dir_.path() + "/nope.toml"));
}

TEST_F(SpecTest, FolderInsteadOfSpec) {
  Result<MountSpec> spec = LoadSpec(dir_.path(), std::nullopt);
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.code(), EISDIR);
  EXPECT_TRUE(Contains(spec.error().message(), dir_.path() + " is a folder"));
}

TEST_F(SpecTest, WarnsAboutPlaintextAboveCrypt) {
  const char* stack = R"(
[[layer]]
type = "hub"
[[layer]]
type = "crypt"
[[layer]]
type = "cache"
[[layer]]
type = "sync"
)";
  Result<MountSpec> spec = LoadSpec(Spec(std::string("mountpoint = \"@MNT@\"\n") + stack), {});
  ASSERT_TRUE(spec.ok()) << spec.error().message();
  ASSERT_EQ(spec->warnings.size(), 2u);
  EXPECT_TRUE(Contains(spec->warnings[0], File() + ":7: layer 3 (cache) sits above layer 2"));
  EXPECT_TRUE(Contains(spec->warnings[0], "allow_plaintext_above_crypt"));
  EXPECT_TRUE(Contains(spec->warnings[1], "layer 4 (sync)"));

  spec = LoadSpec(Spec(std::string("mountpoint = \"@MNT@\"\n[options]\n"
                                   "allow_plaintext_above_crypt = true\n") +
                       stack),
                  {});
  ASSERT_TRUE(spec.ok()) << spec.error().message();
  EXPECT_TRUE(spec->warnings.empty());
}

TEST_F(SpecTest, NoWarningForCacheBelowCrypt) {
  Result<MountSpec> spec = LoadSpec(
      Spec("mountpoint = \"@MNT@\"\n[[layer]]\ntype = \"hub\"\n[[layer]]\ntype = \"cache\"\n"
           "[[layer]]\ntype = \"crypt\"\n"),
      {});
  ASSERT_TRUE(spec.ok()) << spec.error().message();
  EXPECT_TRUE(spec->warnings.empty());
}

class MountpointTest : public ::testing::Test {
 protected:
  MountSpec Spec(const std::string& mountpoint) {
    MountSpec spec;
    spec.path = dir_.path() + "/spec.toml";
    spec.mountpoint = mountpoint;
    spec.mountpoint_origin = "spec.toml:1: key 'mountpoint'";
    return spec;
  }
  TempDir dir_;
};

TEST_F(MountpointTest, EmptyFolderIsFine) {
  Status s = CheckMountpoint(Spec(dir_.Mkdir("mnt")));
  EXPECT_TRUE(s.ok()) << s.error().message();
}

TEST_F(MountpointTest, MissingFolder) {
  std::string mnt = dir_.path() + "/absent";
  Status s = CheckMountpoint(Spec(mnt));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), ENOENT);
  EXPECT_TRUE(Contains(s.error().message(),
                       "spec.toml:1: key 'mountpoint': mountpoint " + mnt + " does not exist"));
  EXPECT_TRUE(Contains(s.error().message(), "mkdir -p " + mnt));
}

TEST_F(MountpointTest, NotAFolder) {
  Status s = CheckMountpoint(Spec(dir_.Write("file", "x")));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), ENOTDIR);
  EXPECT_TRUE(Contains(s.error().message(), "is not a folder"));
}

TEST_F(MountpointTest, NotEmptyUnlessAllowed) {
  std::string mnt = dir_.Mkdir("mnt");
  dir_.Write("mnt/stray", "x");
  MountSpec spec = Spec(mnt);
  Status s = CheckMountpoint(spec);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), ENOTEMPTY);
  EXPECT_TRUE(Contains(s.error().message(), mnt + " is not empty"));
  EXPECT_TRUE(Contains(s.error().message(), "options.allow_non_empty = true"));
  spec.options.allow_non_empty = true;
  EXPECT_TRUE(CheckMountpoint(spec).ok());
}

// The overlay's default upper layer is the mountpoint's own folder: its files are served, so a
// non-empty folder is expected there; an overlay with its own `upper` changes nothing.
TEST_F(MountpointTest, NotEmptyIsFineUnderAnOverlayWithoutUpper) {
  std::string mnt = dir_.Mkdir("mnt");
  dir_.Write("mnt/kept", "x");
  MountSpec spec = Spec(mnt);
  auto source = ConfigView::FromToml("path = \"/srv\"\n");
  auto overlay = ConfigView::FromToml("copy_up = false\n");
  ASSERT_TRUE(source.ok() && overlay.ok());
  spec.layers.push_back(LayerSpec{"local", 0, std::move(*source)});
  spec.layers.push_back(LayerSpec{"overlay", 1, std::move(*overlay)});
  Status s = CheckMountpoint(spec);
  EXPECT_TRUE(s.ok()) << s.error().message();

  auto with_upper = ConfigView::FromToml("upper = \"/var/tmp/upper\"\n");
  ASSERT_TRUE(with_upper.ok());
  spec.layers[1].config = std::move(*with_upper);
  EXPECT_EQ(CheckMountpoint(spec).code(), ENOTEMPTY);
}

TEST_F(MountpointTest, AlreadyAMountPoint) {
  for (const char* mounted : {"/proc", "/"}) {
    Status s = CheckMountpoint(Spec(mounted));
    ASSERT_FALSE(s.ok()) << mounted;
    EXPECT_EQ(s.code(), EBUSY) << s.error().message();
    EXPECT_TRUE(Contains(s.error().message(), "is already a mount point"));
    EXPECT_TRUE(Contains(s.error().message(), std::string("fusermount3 -u ") + mounted));
  }
}

TEST_F(MountpointTest, NoMountpointAtAll) {
  Status s = CheckMountpoint(Spec(""));
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(Contains(s.error().message(), "no mountpoint"));
}

}  // namespace
}  // namespace hfvfs::kernel
