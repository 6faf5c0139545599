// `uppercase`: a third-party wrapper plugin, the worked example of docs/plugin-guide.md. It
// shows the files of the layer below with their ASCII letters upper-cased, and is read-only.
//
//   [[layer]]
//   type = "local"
//   path = "~/notes"
//
//   [[layer]]
//   type = "uppercase"
//   only_suffix = ".txt"   # default "": every file
//
// What it demonstrates: a LayerWrapper that overrides only what it changes, a FileWrapper that
// transforms reads, capability masking (it never claims a write its lower could do but it
// cannot), a version of its own for content it changes, options read through the ConfigView,
// errors as values, and the descriptor macro.
#include <fcntl.h>

#include <cctype>
#include <cerrno>
#include <memory>
#include <string>

#include "hfvfs/plugin.h"

namespace {

bool HasSuffix(std::string_view path, std::string_view suffix) {
  return path.size() >= suffix.size() && path.substr(path.size() - suffix.size()) == suffix;
}

// Upper-cases what the lower file returns. Size and offsets are unchanged, so a read needs no
// bookkeeping: the lower read already fills the buffer (no short reads), and so does this one.
class UppercaseFile final : public hfvfs::FileWrapper {
 public:
  using FileWrapper::FileWrapper;

  hfvfs::Result<size_t> read(uint64_t offset, std::span<std::byte> buf) override {
    HFVFS_ASSIGN_OR_RETURN(size_t n, lower().read(offset, buf));
    for (size_t i = 0; i < n; ++i) {
      buf[i] = static_cast<std::byte>(std::toupper(static_cast<unsigned char>(buf[i])));
    }
    return n;
  }
};

class UppercaseLayer final : public hfvfs::LayerWrapper {
 public:
  UppercaseLayer(std::shared_ptr<hfvfs::Layer> lower, std::string only_suffix)
      : LayerWrapper(std::move(lower)), only_suffix_(std::move(only_suffix)) {}

  std::string_view type() const override { return "uppercase"; }

  // Masking: keep what reading depends on, drop every write the lower could do.
  hfvfs::Capabilities capabilities() const override {
    hfvfs::Capabilities lower_caps = lower().capabilities();
    hfvfs::Capabilities caps;
    caps.changes = lower_caps.changes;
    caps.immutable = lower_caps.immutable;
    return caps;
  }

  hfvfs::Result<hfvfs::Attr> stat(std::string_view path) override {
    HFVFS_ASSIGN_OR_RETURN(hfvfs::Attr attr, lower().stat(path));
    Retag(path, attr);
    return attr;
  }

  hfvfs::Result<std::vector<hfvfs::DirEntry>> list(std::string_view dir) override {
    HFVFS_ASSIGN_OR_RETURN(auto entries, lower().list(dir));
    for (hfvfs::DirEntry& entry : entries) {
      std::string child = dir.empty() ? entry.name : std::string(dir) + "/" + entry.name;
      Retag(child, entry.attr);
    }
    return entries;
  }

  hfvfs::Result<std::unique_ptr<hfvfs::File>> open(std::string_view path, int flags) override {
    if ((flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC)) return ReadOnly("open", path);
    HFVFS_ASSIGN_OR_RETURN(auto file, lower().open(path, flags));
    if (!Transforms(path)) return file;
    return std::unique_ptr<hfvfs::File>(std::make_unique<UppercaseFile>(std::move(file)));
  }

  // LayerWrapper would forward these to the lower layer; a read-only wrapper refuses them.
  hfvfs::Result<std::unique_ptr<hfvfs::File>> create(std::string_view path, uint32_t,
                                                     int) override {
    return ReadOnly("create", path);
  }
  hfvfs::Status mkdir(std::string_view path, uint32_t) override { return ReadOnly("mkdir", path); }
  hfvfs::Status remove(std::string_view path) override { return ReadOnly("unlink", path); }
  hfvfs::Status rmdir(std::string_view path) override { return ReadOnly("rmdir", path); }
  hfvfs::Status rename(std::string_view from, std::string_view, bool) override {
    return ReadOnly("rename", from);
  }
  hfvfs::Status setattr(std::string_view path, const hfvfs::SetAttr&) override {
    return ReadOnly("setattr", path);
  }
  hfvfs::Status symlink(std::string_view, std::string_view path) override {
    return ReadOnly("symlink", path);
  }

 private:
  bool Transforms(std::string_view path) const { return HasSuffix(path, only_suffix_); }

  // The bytes this layer shows differ from the lower's: so must the version, or a cache that
  // saw the lower's bytes under the same (path, version) would serve them here.
  void Retag(std::string_view path, hfvfs::Attr& attr) const {
    if (attr.is_file() && Transforms(path) && !attr.version.empty()) {
      attr.version = "upper:" + attr.version;
    }
  }

  static hfvfs::Error ReadOnly(std::string_view what, std::string_view path) {
    return hfvfs::Err(EROFS, "uppercase: " + std::string(what) + " '" + std::string(path) +
                                 "': this layer is read-only");
  }

  const std::string only_suffix_;
};

hfvfs::Result<std::unique_ptr<hfvfs::Layer>> Create(hfvfs::LayerArgs& args) {
  if (!args.lower)
    return hfvfs::Err(EINVAL, args.config.where() + ": uppercase needs a layer below it");
  HFVFS_ASSIGN_OR_RETURN(std::string only_suffix, args.config.get_string("only_suffix", ""));
  return std::unique_ptr<hfvfs::Layer>(
      std::make_unique<UppercaseLayer>(args.lower, std::move(only_suffix)));
}

const hfvfs::OptionInfo kOptions[] = {
    {"only_suffix", "string", "", "upper-case only files whose name ends with this"},
};

}  // namespace

HFVFS_PLUGIN(hfvfs::LayerKind::kWrapper, "uppercase", "1.0.0",
             "shows the files below it upper-cased (read-only; an SDK example)", kOptions, Create)
