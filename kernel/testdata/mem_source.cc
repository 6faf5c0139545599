// A trivial in-memory source for the kernel's tests: one file, "hello.txt", whose content is
// the option `text`. Built as libhfvfs-memsrc.so into the tests' own plugin folder.
#include <algorithm>
#include <cstring>
#include <fstream>

#include "hfvfs/plugin.h"

namespace {

class MemFile final : public hfvfs::File {
 public:
  explicit MemFile(const std::string& text) : text_(text) {}
  hfvfs::Result<size_t> read(uint64_t offset, std::span<std::byte> buf) override {
    if (offset >= text_.size()) return size_t{0};
    size_t n = std::min<size_t>(buf.size(), text_.size() - offset);
    std::memcpy(buf.data(), text_.data() + offset, n);
    return n;
  }
  hfvfs::Result<hfvfs::Attr> stat() override {
    hfvfs::Attr a;
    a.size = text_.size();
    return a;
  }

 private:
  const std::string& text_;
};

class MemSource final : public hfvfs::Layer {
 public:
  MemSource(std::string text, std::string start_marker)
      : text_(std::move(text)), start_marker_(std::move(start_marker)) {}
  std::string_view type() const override { return "memsrc"; }
  // Leaves a file behind when asked to, so tests can tell whether start() ran.
  hfvfs::Status start() override {
    if (!start_marker_.empty()) std::ofstream(start_marker_) << "started\n";
    return hfvfs::Ok();
  }
  hfvfs::Capabilities capabilities() const override { return {}; }
  hfvfs::Result<hfvfs::Attr> stat(std::string_view path) override {
    hfvfs::Attr a;
    if (path.empty()) {
      a.type = hfvfs::FileType::kDirectory;
      return a;
    }
    if (path != "hello.txt") return hfvfs::Err(ENOENT, "memsrc: no such file");
    a.size = text_.size();
    return a;
  }
  hfvfs::Result<std::vector<hfvfs::DirEntry>> list(std::string_view dir) override {
    if (!dir.empty()) return hfvfs::Err(ENOENT, "memsrc: no such folder");
    HFVFS_ASSIGN_OR_RETURN(hfvfs::Attr a, stat("hello.txt"));
    return std::vector<hfvfs::DirEntry>{{"hello.txt", a}};
  }
  hfvfs::Result<std::unique_ptr<hfvfs::File>> open(std::string_view path, int) override {
    HFVFS_RETURN_IF_ERROR(stat(path));
    return std::unique_ptr<hfvfs::File>(std::make_unique<MemFile>(text_));
  }

 private:
  std::string text_;
  std::string start_marker_;
};

hfvfs::Result<std::unique_ptr<hfvfs::Layer>> Create(hfvfs::LayerArgs& args) {
  HFVFS_ASSIGN_OR_RETURN(std::string text, args.config.get_string("text", "hello\n"));
  HFVFS_ASSIGN_OR_RETURN(bool fail, args.config.get_bool("fail", false));
  HFVFS_ASSIGN_OR_RETURN(uint64_t limit, args.config.get_size("limit", 1 << 20));
  if (text.size() > limit) return hfvfs::Err(EFBIG, "memsrc: text is longer than limit");
  HFVFS_ASSIGN_OR_RETURN(std::string marker, args.config.get_path("start_marker", ""));
  if (fail) return hfvfs::Err(EINVAL, "memsrc: asked to fail");
  return std::unique_ptr<hfvfs::Layer>(
      std::make_unique<MemSource>(std::move(text), std::move(marker)));
}

const hfvfs::OptionInfo kOptions[] = {
    {"text", "string", "hello\\n", "the content of hello.txt"},
    {"fail", "bool", "false", "make create() fail (tests)"},
    {"limit", "size", "1MiB", "the longest text accepted"},
    {"start_marker", "path", "", "a file that start() creates (tests)"},
};

}  // namespace

HFVFS_PLUGIN(hfvfs::LayerKind::kSource, "memsrc", "0.0.1", "an in-memory file (tests)", kOptions,
             Create)
