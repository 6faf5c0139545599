// File: xml.h
//
// A small XML reader for S3 responses (ListBucketResult, Error, InitiateMultipartUpload...):
// elements, attributes skipped, text with the five named entities and numeric character
// references decoded, comments, processing instructions and CDATA handled. Namespace prefixes
// are dropped from element names. It is not a validating parser; malformed input is EIO, never
// a crash. Documents are bounded by the HTTP layer (64 MiB).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "hfvfs/result.h"

namespace hfvfs::s3 {

struct XmlNode {
  std::string name;  // local name, without a namespace prefix
  std::string text;  // the decoded character data directly inside this element
  std::vector<XmlNode> children;

  // The first child named `name`, or nullptr.
  const XmlNode* child(std::string_view name) const;
  // The text of the first child named `name`, or "" when absent.
  std::string child_text(std::string_view name) const;
  // Every child named `name`, in document order.
  std::vector<const XmlNode*> children_named(std::string_view name) const;
};

// Parses a whole document and returns its root element.
Result<XmlNode> ParseXml(std::string_view document);

// Escapes text for an XML element body ('&', '<', '>', '"', '\'').
std::string XmlEscape(std::string_view text);

}  // namespace hfvfs::s3
