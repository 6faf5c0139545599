#include "hfvfs/config.h"

#include <gtest/gtest.h>

namespace hfvfs {
namespace {

std::unique_ptr<ConfigView> Layer1(const char* text) {
  auto root = ConfigView::FromToml(text, "spec.toml");
  EXPECT_TRUE(root.ok()) << (root ? "" : root.error().message());
  auto layers = (*root)->tables("layer");
  EXPECT_TRUE(layers.ok());
  return std::move((*layers)[0]);
}

TEST(ConfigView, TypedGettersWithDefaults) {
  auto v = Layer1(R"(
[[layer]]
type = "cache"
max_size = "10GiB"
ttl = "500ms"
fetches = 8
on = true
dir = "~/c"
)");
  setenv("HOME", "/home/u", 1);
  EXPECT_EQ(*v->require_string("type"), "cache");
  EXPECT_EQ(*v->get_size("max_size", 0), 10ull << 30);
  EXPECT_EQ(*v->get_duration("ttl", {}), std::chrono::milliseconds(500));
  EXPECT_EQ(*v->get_int("fetches", 1), 8);
  EXPECT_TRUE(*v->get_bool("on", false));
  EXPECT_EQ(*v->get_path("dir", ""), "/home/u/c");
  EXPECT_EQ(*v->get_size("absent", 42), 42u);
  EXPECT_TRUE(v->check_unused().ok());
}

TEST(ConfigView, ErrorsNameFileLineAndKey) {
  auto v = Layer1("[[layer]]\ntype = \"cache\"\nmax_size = \"ten\"\n");
  v->set_label("layer 1 (cache)");
  auto r = v->get_size("max_size", 0);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.code(), EINVAL);
  EXPECT_NE(r.error().message().find("spec.toml:3: layer 1 (cache): key 'max_size'"),
            std::string::npos)
      << r.error().message();
}

TEST(ConfigView, WrongTypeIsAnError) {
  auto v = Layer1("[[layer]]\nfetches = \"many\"\n");
  auto r = v->get_int("fetches", 1);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("expected an integer"), std::string::npos);
}

TEST(ConfigView, UnknownKeysAreReportedWithLines) {
  auto v = Layer1("[[layer]]\ntype = \"cache\"\nmax_sise = \"1GiB\"\n");
  (void)v->require_string("type");
  Status s = v->check_unused();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message().find("spec.toml:3"), std::string::npos);
  EXPECT_NE(s.error().message().find("max_sise"), std::string::npos);
}

TEST(ConfigView, PathListTakesOnePathOrAnArray) {
  setenv("HOME", "/home/u", 1);
  auto root =
      ConfigView::FromToml("one = \"~/a\"\nmany = [\"/b\", \"~/c\"]\nbad = [1]\n", "spec.toml");
  ASSERT_TRUE(root.ok());
  EXPECT_EQ(*(*root)->get_path_list("one"), std::vector<std::string>{"/home/u/a"});
  EXPECT_EQ(*(*root)->get_path_list("many"), (std::vector<std::string>{"/b", "/home/u/c"}));
  EXPECT_TRUE((*root)->get_path_list("absent")->empty());
  auto bad = (*root)->get_path_list("bad");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message().find("spec.toml:3: key 'bad'"), std::string::npos)
      << bad.error().message();
}

TEST(ConfigView, EnumListsChoices) {
  auto v = Layer1("[[layer]]\nmode = \"blocks\"\n");
  auto r = v->get_enum("mode", "chunk", {"chunk", "file"});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("\"chunk\", \"file\""), std::string::npos);
}

TEST(ConfigView, SyntaxErrorHasPosition) {
  auto root = ConfigView::FromToml("a = \n", "bad.toml");
  ASSERT_FALSE(root.ok());
  EXPECT_NE(root.error().message().find("bad.toml:1"), std::string::npos) << root.error().message();
}

TEST(ConfigView, MissingRequiredKey) {
  auto v = Layer1("[[layer]]\ntype = \"hub\"\n");
  auto r = v->require_string("repo");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("missing key 'repo'"), std::string::npos);
}

}  // namespace
}  // namespace hfvfs
