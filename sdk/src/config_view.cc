#include "hfvfs/config.h"

#include <toml++/toml.h>
#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "hfvfs/units.h"

namespace hfvfs {
namespace {

// The parsed document stays alive as long as any view of it does.
struct Document {
  toml::table root;
  std::string file;      // as given, for messages
  std::string base_dir;  // folder of the file, for relative paths
};

class TomlView final : public ConfigView {
 public:
  TomlView(std::shared_ptr<Document> doc, const toml::table* table, std::string label)
      : doc_(std::move(doc)), table_(table), label_(std::move(label)) {}

  void set_label(std::string label) override { label_ = std::move(label); }
  const std::string& file() const override { return doc_->file; }

  std::string where() const override {
    if (label_.empty()) return doc_->file;
    return fmt::format("{}:{}: {}", doc_->file, table_->source().begin.line, label_);
  }

  std::string where(std::string_view key) const override {
    const toml::node* node = table_->get(key);
    uint32_t line = node ? node->source().begin.line : table_->source().begin.line;
    return fmt::format("{}:{}: {}key '{}'", doc_->file, line, label_.empty() ? "" : label_ + ": ",
                       key);
  }

  bool has(std::string_view key) const override { return table_->contains(key); }

  Result<std::string> get_string(std::string_view key, std::string fallback) override {
    const toml::node* node = Use(key);
    if (!node) return fallback;
    if (auto v = node->value<std::string>()) return *v;
    return Bad(key, "expected a string", node);
  }

  Result<std::string> require_string(std::string_view key) override {
    if (!has(key)) return Missing(key, "a string");
    return get_string(key, "");
  }

  Result<bool> get_bool(std::string_view key, bool fallback) override {
    const toml::node* node = Use(key);
    if (!node) return fallback;
    if (node->is_boolean()) return *node->value<bool>();
    return Bad(key, "expected true or false", node);
  }

  Result<int64_t> get_int(std::string_view key, int64_t fallback) override {
    const toml::node* node = Use(key);
    if (!node) return fallback;
    if (node->is_integer()) return *node->value<int64_t>();
    return Bad(key, "expected an integer", node);
  }

  Result<uint64_t> get_size(std::string_view key, uint64_t fallback) override {
    const toml::node* node = Use(key);
    if (!node) return fallback;
    if (node->is_integer()) {
      int64_t v = *node->value<int64_t>();
      if (v < 0) return Bad(key, "expected a size, not a negative number", node);
      return static_cast<uint64_t>(v);
    }
    if (node->is_string()) {
      Result<uint64_t> size = ParseSize(*node->value<std::string>());
      if (!size) return Err(EINVAL, where(key) + ": " + size.error().message());
      return size;
    }
    return Bad(key, "expected a size like \"10GiB\"", node);
  }

  Result<std::chrono::milliseconds> get_duration(std::string_view key,
                                                 std::chrono::milliseconds fallback) override {
    const toml::node* node = Use(key);
    if (!node) return fallback;
    if (node->is_integer()) {
      int64_t v = *node->value<int64_t>();
      if (v < 0) return Bad(key, "expected a duration, not a negative number", node);
      return std::chrono::milliseconds(v * 1000);
    }
    if (node->is_string()) {
      auto d = ParseDuration(*node->value<std::string>());
      if (!d) return Err(EINVAL, where(key) + ": " + d.error().message());
      return d;
    }
    return Bad(key, "expected a duration like \"30s\"", node);
  }

  Result<std::string> get_path(std::string_view key, std::string fallback) override {
    const toml::node* node = Use(key);
    if (!node) return fallback.empty() ? fallback : ExpandPath(fallback, doc_->base_dir);
    auto v = node->value<std::string>();
    if (!v) return Bad(key, "expected a path (a string)", node);
    if (v->empty()) return Bad(key, "expected a path, got an empty string", node);
    return ExpandPath(*v, doc_->base_dir);
  }

  Result<std::vector<std::string>> get_path_list(std::string_view key) override {
    std::vector<std::string> out;
    const toml::node* node = Use(key);
    if (!node) return out;
    if (node->is_string()) {
      HFVFS_ASSIGN_OR_RETURN(std::string one, get_path(key, ""));
      out.push_back(std::move(one));
      return out;
    }
    const toml::array* array = node->as_array();
    if (!array) return Bad(key, "expected a path or an array of paths", node);
    for (const toml::node& item : *array) {
      auto v = item.value<std::string>();
      if (!v || v->empty()) return Bad(key, "expected an array of non-empty path strings", node);
      out.push_back(ExpandPath(*v, doc_->base_dir));
    }
    return out;
  }

  Result<std::string> get_enum(std::string_view key, std::string fallback,
                               const std::vector<std::string>& choices) override {
    HFVFS_ASSIGN_OR_RETURN(std::string v, get_string(key, fallback));
    if (std::find(choices.begin(), choices.end(), v) != choices.end()) return v;
    return Err(EINVAL, fmt::format("{}: expected one of \"{}\", got \"{}\"", where(key),
                                   fmt::join(choices, "\", \""), v));
  }

  Result<std::unique_ptr<ConfigView>> table(std::string_view key) override {
    const toml::node* node = Use(key);
    std::string label = label_.empty() ? std::string(key) : label_ + "." + std::string(key);
    if (!node) {
      static const toml::table kEmpty;
      return std::unique_ptr<ConfigView>(std::make_unique<TomlView>(doc_, &kEmpty, label));
    }
    if (!node->is_table()) return Bad(key, "expected a table", node);
    return std::unique_ptr<ConfigView>(std::make_unique<TomlView>(doc_, node->as_table(), label));
  }

  Result<std::vector<std::unique_ptr<ConfigView>>> tables(std::string_view key) override {
    std::vector<std::unique_ptr<ConfigView>> out;
    const toml::node* node = Use(key);
    if (!node) return out;
    const toml::array* array = node->as_array();
    if (!array || !array->is_array_of_tables())
      return Bad(key, fmt::format("expected [[{}]] tables", key), node);
    for (size_t i = 0; i < array->size(); ++i) {
      out.push_back(std::make_unique<TomlView>(doc_, array->get(i)->as_table(),
                                               fmt::format("{} {}", key, i + 1)));
    }
    return out;
  }

  std::vector<std::string> keys() const override {
    std::vector<std::pair<uint32_t, std::string>> ordered;
    for (const auto& [k, v] : *table_)
      ordered.emplace_back(v.source().begin.line, std::string(k.str()));
    std::sort(ordered.begin(), ordered.end());
    std::vector<std::string> out;
    for (auto& [line, k] : ordered) out.push_back(std::move(k));
    return out;
  }

  std::vector<std::string> unused_keys() const override {
    std::vector<std::string> out;
    for (const std::string& k : keys())
      if (!used_.count(k)) out.push_back(k);
    return out;
  }

  Status check_unused() const override {
    std::vector<std::string> unused = unused_keys();
    if (unused.empty()) return Ok();
    std::vector<std::string> lines;
    for (const std::string& k : unused)
      lines.push_back(where(k) +
                      ": unknown key (check its spelling; `hfvfs plugins` lists the "
                      "keys each layer accepts)");
    return Err(EINVAL, fmt::format("{}", fmt::join(lines, "\n")));
  }

 private:
  const toml::node* Use(std::string_view key) {
    used_.insert(std::string(key));
    return table_->get(key);
  }

  Error Bad(std::string_view key, std::string_view expected, const toml::node* node) const {
    std::ostringstream got;
    node->visit([&](const auto& n) { got << toml::toml_formatter{n}; });
    std::string shown = got.str();
    if (shown.size() > 60) shown = shown.substr(0, 57) + "...";
    return Err(EINVAL, fmt::format("{}: {}, got {}", where(key), expected, shown));
  }

  Error Missing(std::string_view key, std::string_view expected) const {
    return Err(EINVAL, fmt::format("{}:{}: {}missing key '{}' ({})", doc_->file,
                                   table_->source().begin.line, label_.empty() ? "" : label_ + ": ",
                                   key, expected));
  }

  std::shared_ptr<Document> doc_;
  const toml::table* table_;
  std::string label_;
  std::set<std::string> used_;
};

Result<std::unique_ptr<ConfigView>> Parse(std::string_view text, std::string file,
                                          std::string base_dir) {
  auto doc = std::make_shared<Document>();
  doc->file = std::move(file);
  doc->base_dir = std::move(base_dir);
  try {
    doc->root = toml::parse(text, doc->file);
  } catch (const toml::parse_error& e) {
    return Err(EINVAL, fmt::format("{}:{}:{}: {}", doc->file, e.source().begin.line,
                                   e.source().begin.column, e.description()));
  }
  const toml::table* root = &doc->root;
  return std::unique_ptr<ConfigView>(std::make_unique<TomlView>(doc, root, ""));
}

}  // namespace

Result<std::unique_ptr<ConfigView>> ConfigView::FromToml(std::string_view toml_text,
                                                         std::string file) {
  return CatchAll("parsing " + file, [&] { return Parse(toml_text, file, ""); });
}

Result<std::unique_ptr<ConfigView>> ConfigView::FromFile(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    return Err(errno ? errno : ENOENT, fmt::format("cannot read spec '{}': {}", path,
                                                   std::strerror(errno ? errno : ENOENT)));
  std::stringstream text;
  text << in.rdbuf();
  std::string dir = ".";
  size_t slash = path.rfind('/');
  if (slash != std::string::npos) dir = slash == 0 ? "/" : path.substr(0, slash);
  char resolved[PATH_MAX];
  if (realpath(dir.c_str(), resolved)) dir = resolved;
  return CatchAll("parsing " + path, [&] { return Parse(text.str(), path, dir); });
}

}  // namespace hfvfs
