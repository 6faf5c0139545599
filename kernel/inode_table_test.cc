#include "inode_table.h"

#include <gtest/gtest.h>

namespace hfvfs::kernel {
namespace {

TEST(InodeTableTest, RootIsOneAndHasTheEmptyPath) {
  InodeTable table;
  EXPECT_EQ(table.PathOf(kRootInode), "");
  ASSERT_TRUE(table.Find(""));
  EXPECT_EQ(table.Find("")->ino, kRootInode);
  table.Forget(kRootInode, 100);  // never forgotten
  EXPECT_EQ(table.PathOf(kRootInode), "");
}

TEST(InodeTableTest, LookupGivesOneInodePerPath) {
  InodeTable table;
  InodeRef a = table.Lookup("a");
  InodeRef b = table.Lookup("dir/b");
  EXPECT_NE(a.ino, b.ino);
  EXPECT_NE(a.ino, kRootInode);
  EXPECT_EQ(table.Lookup("a").ino, a.ino);
  EXPECT_EQ(table.PathOf(b.ino), "dir/b");
  EXPECT_FALSE(table.Find("c"));
}

TEST(InodeTableTest, ForgottenEntriesKeepTheirNumberUntilEvicted) {
  InodeTable table(/*soft_limit=*/2);
  InodeRef a = table.Lookup("a");
  table.Lookup("a");
  table.Forget(a.ino, 1);
  EXPECT_EQ(table.stats().forgotten, 0u) << "one reference is left";
  table.Forget(a.ino, 1);
  EXPECT_EQ(table.stats().forgotten, 1u);
  EXPECT_EQ(table.Lookup("a").ino, a.ino) << "a forgotten path keeps its inode";
  table.Forget(a.ino, 1);

  // Two more forgotten entries: "a" is the least recently used and goes.
  table.Assign("b");
  table.Assign("c");
  InodeTable::Stats s = table.stats();
  EXPECT_EQ(s.forgotten, 2u);
  EXPECT_EQ(s.evicted, 1u);
  EXPECT_FALSE(table.Find("a"));
  EXPECT_FALSE(table.Contains(a.ino));
}

TEST(InodeTableTest, ReusedNumbersGetANewGeneration) {
  InodeTable table(/*soft_limit=*/1);
  InodeRef a = table.Lookup("a");
  table.Forget(a.ino, 1);
  table.Assign("b");  // evicts "a"
  InodeRef c = table.Lookup("c");
  EXPECT_EQ(c.ino, a.ino) << "the freed number is reused";
  EXPECT_GT(c.generation, a.generation);
}

TEST(InodeTableTest, EntriesInUseAreNeverEvicted) {
  InodeTable table(/*soft_limit=*/1);
  InodeRef held = table.Lookup("held");
  for (int i = 0; i < 10; ++i) table.Assign("f" + std::to_string(i));
  EXPECT_EQ(table.PathOf(held.ino), "held");
  EXPECT_EQ(table.stats().forgotten, 1u);
  EXPECT_EQ(table.stats().evicted, 9u);
}

TEST(InodeTableTest, DetachedInodeLivesUntilForgotten) {
  InodeTable table;
  InodeRef a = table.Lookup("a");
  table.Detach("a");
  EXPECT_FALSE(table.Find("a"));
  EXPECT_EQ(table.PathOf(a.ino), std::nullopt);
  EXPECT_TRUE(table.Contains(a.ino));
  EXPECT_EQ(table.stats().orphans, 1u);
  InodeRef again = table.Lookup("a");
  EXPECT_NE(again.ino, a.ino) << "a new file at the same path is a new inode";
  table.Forget(a.ino, 1);
  EXPECT_FALSE(table.Contains(a.ino));
  EXPECT_EQ(table.stats().orphans, 0u);
}

TEST(InodeTableTest, RenameMovesAFolderWithItsContent) {
  InodeTable table;
  InodeRef dir = table.Lookup("d");
  InodeRef child = table.Lookup("d/x/y");
  InodeRef sibling = table.Lookup("dd");  // shares a prefix, not a parent
  table.Rename("d", "e/f");
  EXPECT_EQ(table.PathOf(dir.ino), "e/f");
  EXPECT_EQ(table.PathOf(child.ino), "e/f/x/y");
  EXPECT_EQ(table.PathOf(sibling.ino), "dd");
  EXPECT_FALSE(table.Find("d/x/y"));
  EXPECT_EQ(table.Find("e/f/x/y")->ino, child.ino);
}

TEST(InodeTableTest, RenameOverAnExistingFileDetachesIt) {
  InodeTable table;
  InodeRef from = table.Lookup("from");
  InodeRef to = table.Lookup("to");
  table.Rename("from", "to");
  EXPECT_EQ(table.Find("to")->ino, from.ino);
  EXPECT_FALSE(table.Find("from"));
  EXPECT_EQ(table.PathOf(to.ino), std::nullopt) << "the replaced file is an orphan";
  EXPECT_TRUE(table.Contains(to.ino));
  table.Forget(to.ino, 1);
  EXPECT_FALSE(table.Contains(to.ino));
}

TEST(InodeTableTest, ForgetOfUnknownInodeIsHarmless) {
  InodeTable table;
  table.Forget(12345, 1);
  EXPECT_EQ(table.stats().inodes, 1u);
}

}  // namespace
}  // namespace hfvfs::kernel
