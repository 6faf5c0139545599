#include "xml.h"

#include <gtest/gtest.h>

namespace hfvfs::s3 {
namespace {

TEST(Xml, ListBucketResult) {
  const char* doc =
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
      "<Name>b</Name><Prefix>d/</Prefix><KeyCount>2</KeyCount><IsTruncated>true</IsTruncated>"
      "<NextContinuationToken>tok&amp;1</NextContinuationToken>"
      "<Contents><Key>d/a &amp; b&#x2B;&#252;.txt</Key><Size>12</Size>"
      "<ETag>&quot;abc-2&quot;</ETag><LastModified>2026-11-30T23:00:00.000Z</LastModified>"
      "</Contents><!-- a comment -->"
      "<CommonPrefixes><Prefix>d/sub/</Prefix></CommonPrefixes><Empty/></ListBucketResult>";
  Result<XmlNode> root = ParseXml(doc);
  ASSERT_TRUE(root.ok()) << root.error().message();
  EXPECT_EQ(root->name, "ListBucketResult");
  EXPECT_EQ(root->child_text("IsTruncated"), "true");
  EXPECT_EQ(root->child_text("NextContinuationToken"), "tok&1");
  auto contents = root->children_named("Contents");
  ASSERT_EQ(contents.size(), 1u);
  EXPECT_EQ(contents[0]->child_text("Key"), "d/a & b+\xC3\xBC.txt");
  EXPECT_EQ(contents[0]->child_text("ETag"), "\"abc-2\"");
  EXPECT_EQ(root->child("CommonPrefixes")->child_text("Prefix"), "d/sub/");
  ASSERT_NE(root->child("Empty"), nullptr);
  EXPECT_EQ(root->child("Missing"), nullptr);
  EXPECT_EQ(root->child_text("Missing"), "");
}

TEST(Xml, NamespacePrefixesAndCdata) {
  Result<XmlNode> root = ParseXml(
      "<s3:Error a='x>y'><s3:Code><![CDATA[No<Such>Key]]></s3:Code>"
      "</s3:Error>");
  ASSERT_TRUE(root.ok()) << root.error().message();
  EXPECT_EQ(root->name, "Error");
  EXPECT_EQ(root->child_text("Code"), "No<Such>Key");
}

TEST(Xml, MalformedIsEio) {
  for (const char* bad : {"", "text", "<a>", "<a></b>", "<a>&bogus;</a>", "<a>&#xZZ;</a>",
                          "<a><b></a>", "<!-- x", "<a>&#1114112;</a>"}) {
    Result<XmlNode> r = ParseXml(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_EQ(r.error().code(), EIO) << bad;
    }
  }
}

TEST(Xml, DeepNestingIsRefused) {
  std::string doc;
  for (int i = 0; i < 100; ++i) doc += "<a>";
  for (int i = 0; i < 100; ++i) doc += "</a>";
  EXPECT_FALSE(ParseXml(doc).ok());
}

TEST(Xml, EscapeRoundTrips) {
  std::string text = "a&b<c>\"d'e ü";
  Result<XmlNode> r = ParseXml("<k>" + XmlEscape(text) + "</k>");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->text, text);
}

}  // namespace
}  // namespace hfvfs::s3
