#include "xml.h"

#include <cstdint>

namespace hfvfs::s3 {

const XmlNode* XmlNode::child(std::string_view n) const {
  for (const XmlNode& c : children) {
    if (c.name == n) return &c;
  }
  return nullptr;
}

std::string XmlNode::child_text(std::string_view n) const {
  const XmlNode* c = child(n);
  return c ? c->text : std::string();
}

std::vector<const XmlNode*> XmlNode::children_named(std::string_view n) const {
  std::vector<const XmlNode*> out;
  for (const XmlNode& c : children) {
    if (c.name == n) out.push_back(&c);
  }
  return out;
}

namespace {

void AppendUtf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

class Parser {
 public:
  explicit Parser(std::string_view doc) : doc_(doc) {}

  Result<XmlNode> Document() {
    // Prolog: declaration, comments, doctype, whitespace.
    for (;;) {
      SkipSpace();
      if (Starts("<?")) {
        if (!SkipPast("?>")) return Fail("unterminated processing instruction");
      } else if (Starts("<!--")) {
        if (!SkipPast("-->")) return Fail("unterminated comment");
      } else if (Starts("<!")) {
        if (!SkipPast(">")) return Fail("unterminated declaration");
      } else {
        break;
      }
    }
    if (!Starts("<")) return Fail("no root element");
    XmlNode root;
    HFVFS_RETURN_IF_ERROR(Element(root, 0));
    return root;
  }

 private:
  Status Element(XmlNode& node, int depth) {
    if (depth > 64) return Fail("elements nested too deeply");
    ++pos_;  // '<'
    size_t start = pos_;
    while (pos_ < doc_.size() && !IsSpace(doc_[pos_]) && doc_[pos_] != '>' && doc_[pos_] != '/')
      ++pos_;
    std::string_view qname = doc_.substr(start, pos_ - start);
    if (qname.empty()) return Fail("empty element name");
    size_t colon = qname.find(':');
    node.name = std::string(colon == std::string_view::npos ? qname : qname.substr(colon + 1));
    // Attributes are skipped, respecting quotes.
    char quote = 0;
    while (pos_ < doc_.size()) {
      char c = doc_[pos_];
      if (quote) {
        if (c == quote) quote = 0;
      } else if (c == '"' || c == '\'') {
        quote = c;
      } else if (c == '>' || c == '/') {
        break;
      }
      ++pos_;
    }
    if (Starts("/>")) {
      pos_ += 2;
      return Ok();
    }
    if (!Starts(">")) return Fail("unterminated start tag <" + std::string(qname) + ">");
    ++pos_;
    for (;;) {
      if (pos_ >= doc_.size()) return Fail("missing </" + std::string(qname) + ">");
      if (Starts("</")) {
        pos_ += 2;
        size_t name_start = pos_;
        while (pos_ < doc_.size() && doc_[pos_] != '>') ++pos_;
        std::string_view end = doc_.substr(name_start, pos_ - name_start);
        while (!end.empty() && IsSpace(end.back())) end.remove_suffix(1);
        if (end != qname) {
          return Fail("</" + std::string(end) + "> closes <" + std::string(qname) + ">");
        }
        if (pos_ >= doc_.size()) return Fail("unterminated end tag");
        ++pos_;
        return Ok();
      }
      if (Starts("<!--")) {
        if (!SkipPast("-->")) return Fail("unterminated comment");
      } else if (Starts("<![CDATA[")) {
        pos_ += 9;
        size_t end = doc_.find("]]>", pos_);
        if (end == std::string_view::npos) return Fail("unterminated CDATA");
        node.text.append(doc_.substr(pos_, end - pos_));
        pos_ = end + 3;
      } else if (Starts("<?")) {
        if (!SkipPast("?>")) return Fail("unterminated processing instruction");
      } else if (Starts("<")) {
        node.children.emplace_back();
        HFVFS_RETURN_IF_ERROR(Element(node.children.back(), depth + 1));
      } else {
        HFVFS_RETURN_IF_ERROR(Text(node.text));
      }
    }
  }

  Status Text(std::string& out) {
    while (pos_ < doc_.size() && doc_[pos_] != '<') {
      char c = doc_[pos_];
      if (c != '&') {
        out.push_back(c);
        ++pos_;
        continue;
      }
      size_t semi = doc_.find(';', pos_);
      if (semi == std::string_view::npos || semi - pos_ > 12) return Fail("bad entity");
      std::string_view ent = doc_.substr(pos_ + 1, semi - pos_ - 1);
      if (ent == "amp") {
        out.push_back('&');
      } else if (ent == "lt") {
        out.push_back('<');
      } else if (ent == "gt") {
        out.push_back('>');
      } else if (ent == "quot") {
        out.push_back('"');
      } else if (ent == "apos") {
        out.push_back('\'');
      } else if (ent.size() > 1 && ent[0] == '#') {
        bool hex = ent[1] == 'x' || ent[1] == 'X';
        std::string_view digits = ent.substr(hex ? 2 : 1);
        if (digits.empty()) return Fail("bad character reference");
        uint32_t cp = 0;
        for (char d : digits) {
          int v;
          if (d >= '0' && d <= '9') {
            v = d - '0';
          } else if (hex && d >= 'a' && d <= 'f') {
            v = d - 'a' + 10;
          } else if (hex && d >= 'A' && d <= 'F') {
            v = d - 'A' + 10;
          } else {
            return Fail("bad character reference");
          }
          cp = cp * (hex ? 16 : 10) + static_cast<uint32_t>(v);
          if (cp > 0x10FFFF) return Fail("character reference out of range");
        }
        AppendUtf8(out, cp);
      } else {
        return Fail("unknown entity &" + std::string(ent) + ";");
      }
      pos_ = semi + 1;
    }
    return Ok();
  }

  static bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }
  void SkipSpace() {
    while (pos_ < doc_.size() && IsSpace(doc_[pos_])) ++pos_;
  }
  bool Starts(std::string_view s) const { return doc_.substr(pos_, s.size()) == s; }
  bool SkipPast(std::string_view s) {
    size_t at = doc_.find(s, pos_);
    if (at == std::string_view::npos) return false;
    pos_ = at + s.size();
    return true;
  }
  Error Fail(const std::string& what) const {
    return Err(EIO, "malformed XML at byte " + std::to_string(pos_) + ": " + what);
  }

  std::string_view doc_;
  size_t pos_ = 0;
};

}  // namespace

Result<XmlNode> ParseXml(std::string_view document) { return Parser(document).Document(); }

std::string XmlEscape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

}  // namespace hfvfs::s3
