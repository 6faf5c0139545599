// A trivial in-memory source for the kernel's tests: one file, "hello.txt", whose content is
// the option `text`. Built as libhfvfs-memsrc.so into the tests' own plugin folder.
#include <algorithm>
#include <cstring>
#include <fstream>
#include <vector>

#include "hfvfs/plugin.h"

namespace {

class MemFile final : public hfvfs::File {
 public:
  MemFile(const std::string& text, const std::string& lend) : text_(text), lend_(lend) {}
  hfvfs::Result<size_t> read(uint64_t offset, std::span<std::byte> buf) override {
    if (offset >= text_.size()) return size_t{0};
    size_t n = std::min<size_t>(buf.size(), text_.size() - offset);
    std::memcpy(buf.data(), text_.data() + offset, n);
    return n;
  }
  // lend = "pieces": the text itself, lent in pieces of 1,000 bytes with an empty piece after
  // each; "nothing": success without delivering (a broken layer the kernel must survive).
  hfvfs::Status read_lent(uint64_t offset, std::span<std::byte> buf,
                          const Deliver& deliver) override {
    if (lend_ == "nothing") return hfvfs::Ok();
    if (lend_ != "pieces") return File::read_lent(offset, buf, deliver);
    const auto* text = reinterpret_cast<const std::byte*>(text_.data());
    const size_t end = std::min<size_t>(text_.size(), offset + buf.size());
    std::vector<std::span<const std::byte>> pieces;
    for (size_t at = offset; at < end; at += 1000) {
      pieces.emplace_back(text + at, std::min<size_t>(1000, end - at));
      pieces.emplace_back();
    }
    deliver(pieces);
    return hfvfs::Ok();
  }
  hfvfs::Result<hfvfs::Attr> stat() override {
    hfvfs::Attr a;
    a.size = text_.size();
    return a;
  }

 private:
  const std::string& text_;
  const std::string& lend_;
};

class MemSource final : public hfvfs::Layer {
 public:
  MemSource(std::string text, std::string start_marker, std::string lend)
      : text_(std::move(text)), start_marker_(std::move(start_marker)), lend_(std::move(lend)) {}
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
    return std::unique_ptr<hfvfs::File>(std::make_unique<MemFile>(text_, lend_));
  }

 private:
  std::string text_;
  std::string start_marker_;
  std::string lend_;
};

hfvfs::Result<std::unique_ptr<hfvfs::Layer>> Create(hfvfs::LayerArgs& args) {
  HFVFS_ASSIGN_OR_RETURN(std::string text, args.config.get_string("text", "hello\n"));
  HFVFS_ASSIGN_OR_RETURN(bool fail, args.config.get_bool("fail", false));
  HFVFS_ASSIGN_OR_RETURN(uint64_t limit, args.config.get_size("limit", 1 << 20));
  if (text.size() > limit) return hfvfs::Err(EFBIG, "memsrc: text is longer than limit");
  HFVFS_ASSIGN_OR_RETURN(std::string marker, args.config.get_path("start_marker", ""));
  HFVFS_ASSIGN_OR_RETURN(std::string lend,
                         args.config.get_enum("lend", "read", {"read", "pieces", "nothing"}));
  if (fail) return hfvfs::Err(EINVAL, "memsrc: asked to fail");
  return std::unique_ptr<hfvfs::Layer>(
      std::make_unique<MemSource>(std::move(text), std::move(marker), std::move(lend)));
}

const hfvfs::OptionInfo kOptions[] = {
    {"text", "string", "hello\\n", "the content of hello.txt"},
    {"fail", "bool", "false", "make create() fail (tests)"},
    {"limit", "size", "1MiB", "the longest text accepted"},
    {"start_marker", "path", "", "a file that start() creates (tests)"},
    {"lend", "read|pieces|nothing", "read",
     "read_lent: through read, the text in 1,000-byte pieces, or nothing at all (tests)"},
};

}  // namespace

HFVFS_PLUGIN(hfvfs::LayerKind::kSource, "memsrc", "0.0.1", "an in-memory file (tests)", kOptions,
             Create)
