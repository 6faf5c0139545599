// Mount spec loading (LoadSpec) and the mountpoint checks (CheckMountpoint); see stack.h.
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "hfvfs/units.h"
#include "mountinfo.h"
#include "plugin_loader.h"
#include "stack.h"

namespace hfvfs::kernel {
namespace {

namespace fs = std::filesystem;

constexpr char kRootKeys[] = "mountpoint, plugin_path, options and [[layer]] tables";
constexpr char kOptionKeys[] =
    "allow_other, uid, gid, allow_non_empty, attr_ttl, negative_ttl, max_inodes, stop_timeout, "
    "read_only, read_ahead, max_threads, allow_plaintext_above_crypt";

constexpr uint64_t kMinReadAhead = 4 << 10;
constexpr uint64_t kMaxReadAhead = 256 << 20;

// Collects every problem of a spec so that `hfvfs check` can show them all at once.
class Problems {
 public:
  // Records the error of `r`, if any; true when `r` is ok.
  template <typename T>
  bool Ok(const Result<T>& r) {
    if (r.ok()) return true;
    Add(r.error());
    return false;
  }
  void Add(const Error& e) {
    if (errors_.empty()) code_ = e.code();
    errors_.push_back(e.message());
  }
  void Add(std::string message) { Add(Err(EINVAL, std::move(message))); }
  bool empty() const { return errors_.empty(); }
  Error ToError() const {
    return Err(errors_.size() == 1 ? code_ : EINVAL, fmt::format("{}", fmt::join(errors_, "\n")));
  }

 private:
  std::vector<std::string> errors_;
  int code_ = EINVAL;
};

std::string Absolute(const std::string& path) {
  std::error_code ec;
  fs::path abs = fs::absolute(path, ec);
  if (ec) abs = path;
  std::string out = abs.lexically_normal().string();
  if (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

// Reads a duration option into `out`, refusing 0 when `positive`.
void ReadDuration(ConfigView& view, const char* key, std::chrono::milliseconds& out, bool positive,
                  Problems& problems) {
  auto d = view.get_duration(key, out);
  if (!problems.Ok(d)) return;
  if (positive && d->count() == 0) {
    problems.Add(view.where(key) + ": expected a duration above 0, like \"45s\"");
    return;
  }
  out = *d;
}

std::optional<uint32_t> ReadId(ConfigView& view, const char* key, Problems& problems) {
  if (!view.has(key)) return std::nullopt;
  auto v = view.get_int(key, 0);
  if (!problems.Ok(v)) return std::nullopt;
  // (uint32_t)-1 means "unchanged" to chown(2), so it is no valid owner.
  if (*v < 0 || *v >= std::numeric_limits<uint32_t>::max()) {
    problems.Add(fmt::format("{}: expected a numeric id from 0 to {}, got {}", view.where(key),
                             std::numeric_limits<uint32_t>::max() - 1, *v));
    return std::nullopt;
  }
  return static_cast<uint32_t>(*v);
}

void ReadOptions(ConfigView& root, MountOptions& o, Problems& problems) {
  auto table = root.table("options");
  if (!problems.Ok(table)) return;
  ConfigView& view = **table;
  auto read_bool = [&](const char* key, bool& out) {
    auto v = view.get_bool(key, out);
    if (problems.Ok(v)) out = *v;
  };
  read_bool("allow_other", o.allow_other);
  o.uid = ReadId(view, "uid", problems);
  o.gid = ReadId(view, "gid", problems);
  read_bool("allow_non_empty", o.allow_non_empty);
  ReadDuration(view, "attr_ttl", o.attr_ttl, false, problems);
  ReadDuration(view, "negative_ttl", o.negative_ttl, false, problems);
  if (auto v = view.get_int("max_inodes", static_cast<int64_t>(o.max_inodes)); problems.Ok(v)) {
    if (*v < 0)
      problems.Add(view.where("max_inodes") + ": expected a count of 0 or more (0 = default)");
    else
      o.max_inodes = static_cast<size_t>(*v);
  }
  ReadDuration(view, "stop_timeout", o.stop_timeout, true, problems);
  read_bool("read_only", o.read_only);
  if (auto v = view.get_size("read_ahead", o.read_ahead); problems.Ok(v)) {
    if (*v < kMinReadAhead || *v > kMaxReadAhead)
      problems.Add(view.where("read_ahead") + ": expected a size from 4KiB to 256MiB");
    else {
      o.read_ahead = *v;
      o.read_ahead_set = view.has("read_ahead");
    }
  }
  if (auto v = view.get_int("max_threads", o.max_threads); problems.Ok(v)) {
    if (*v < 1 || *v > kMaxMaxThreads)
      problems.Add(fmt::format("{}: expected a thread count from 1 to {}",
                               view.where("max_threads"), kMaxMaxThreads));
    else
      o.max_threads = static_cast<unsigned>(*v);
  }
  read_bool("allow_plaintext_above_crypt", o.allow_plaintext_above_crypt);
  for (const std::string& key : view.unused_keys())
    problems.Add(fmt::format("{}: unknown option (check its spelling; options are {})",
                             view.where(key), kOptionKeys));
}

void ReadLayers(ConfigView& root, MountSpec& spec, Problems& problems) {
  auto tables = root.tables("layer");
  if (!problems.Ok(tables)) return;
  int index = 0;
  for (std::unique_ptr<ConfigView>& view : *tables) {
    LayerSpec layer;
    layer.index = index++;
    auto type = view->require_string("type");
    if (!problems.Ok(type)) {
      layer.type = "";
    } else if (!IsValidPluginType(*type)) {
      problems.Add(fmt::format(
          "{}: '{}' is not a layer type (lower-case letters, digits, '-' and '_'; `hfvfs "
          "plugins` lists the types available)",
          view->where("type"), *type));
    } else {
      layer.type = *type;
      view->set_label(fmt::format("layer {} ({})", layer.index + 1, layer.type));
    }
    layer.config = std::shared_ptr<ConfigView>(std::move(view));
    spec.layers.push_back(std::move(layer));
  }
}

// A plaintext cache or sync staging area above crypt writes what crypt protects to disk in
// the clear (DESIGN.md §5).
void WarnSelfDefeating(MountSpec& spec) {
  if (spec.options.allow_plaintext_above_crypt) return;
  const LayerSpec* crypt = nullptr;
  for (const LayerSpec& layer : spec.layers) {
    if (layer.type == "crypt") {
      crypt = &layer;
    } else if (crypt && (layer.type == "cache" || layer.type == "sync")) {
      spec.warnings.push_back(fmt::format(
          "{} sits above layer {} (crypt), so it keeps plaintext on disk and defeats the "
          "encryption; put it below crypt to store ciphertext, or set "
          "options.allow_plaintext_above_crypt = true if this is intended",
          layer.config->where(), crypt->index + 1));
    }
  }
}

bool InMountinfo(const std::string& path) { return MountTypeAt(path).has_value(); }

// An `overlay` layer without an `upper` key uses the mountpoint's own folder as its upper
// layer (opened before mounting): that folder's files are part of the mount, not hidden by it.
bool MountpointIsOverlayUpper(const MountSpec& spec) {
  for (const LayerSpec& layer : spec.layers)
    if (layer.type == "overlay" && layer.config && !layer.config->has("upper")) return true;
  return false;
}

}  // namespace

Result<MountSpec> LoadSpec(const std::string& spec_path,
                           const std::optional<std::string>& mountpoint_override) {
  MountSpec spec;
  spec.path = Absolute(spec_path);
  std::error_code ec;
  if (fs::is_directory(spec_path, ec))
    return Err(EISDIR,
               fmt::format("{} is a folder; give the spec file (a .toml) instead", spec_path));
  HFVFS_ASSIGN_OR_RETURN(std::unique_ptr<ConfigView> root, ConfigView::FromFile(spec_path));
  Problems problems;

  auto mountpoint = root->get_path("mountpoint", "");
  if (problems.Ok(mountpoint)) {
    if (mountpoint_override) {
      if (mountpoint_override->empty()) {
        problems.Add("--mountpoint: expected a folder, got an empty string");
      } else {
        spec.mountpoint = Absolute(ExpandPath(*mountpoint_override));
        spec.mountpoint_origin = "--mountpoint";
      }
    } else if (!mountpoint->empty()) {
      spec.mountpoint = Absolute(*mountpoint);
      spec.mountpoint_origin = root->where("mountpoint");
    } else {
      problems.Add(fmt::format(
          "{}: no mountpoint: add `mountpoint = \"/some/empty/dir\"` at the top of the spec or "
          "pass --mountpoint DIR",
          spec_path));
    }
  }

  auto plugin_path = root->get_path_list("plugin_path");
  if (problems.Ok(plugin_path)) spec.plugin_path = std::move(*plugin_path);

  ReadOptions(*root, spec.options, problems);
  ReadLayers(*root, spec, problems);
  if (spec.layers.empty() && root->has("layer") && problems.empty())
    problems.Add(root->where("layer") + ": no layers in it");
  if (spec.layers.empty() && !root->has("layer"))
    problems.Add(
        fmt::format("{}: no [[layer]] tables: a stack needs at least a source at the bottom, e.g.\n"
                    "  [[layer]]\n  type = \"local\"\n  path = \"/some/dir\"",
                    spec_path));

  for (const std::string& key : root->unused_keys())
    problems.Add(fmt::format("{}: unknown key (check its spelling; the top level of a spec has {})",
                             root->where(key), kRootKeys));

  if (!problems.empty()) return problems.ToError();
  bool has_cache = false;
  for (const LayerSpec& layer : spec.layers) has_cache = has_cache || layer.type == "cache";
  if (has_cache && !spec.options.read_ahead_set) spec.options.read_ahead = kCacheReadAhead;
  WarnSelfDefeating(spec);
  return spec;
}

Status CheckMountpoint(const MountSpec& spec) {
  const std::string& dir = spec.mountpoint;
  std::string origin = spec.mountpoint_origin.empty() ? "" : spec.mountpoint_origin + ": ";
  if (dir.empty())
    return Err(EINVAL, fmt::format("{}: no mountpoint: add `mountpoint = \"/some/empty/dir\"` "
                                   "to the spec or pass --mountpoint DIR",
                                   spec.path));
  struct stat st;
  if (stat(dir.c_str(), &st) != 0) {
    int e = errno;
    if (e == ENOENT)
      return Err(ENOENT,
                 fmt::format("{}mountpoint {} does not exist: create it (mkdir -p {}) or choose "
                             "another folder",
                             origin, dir, dir));
    if (e == ENOTCONN)
      return Err(ENOTCONN, fmt::format("{}mountpoint {} is a dead FUSE mount (its daemon is "
                                       "gone): unmount it with `fusermount3 -u {}` first",
                                       origin, dir, dir));
    return Err(e,
               fmt::format("{}mountpoint {}: cannot stat it: {}", origin, dir, std::strerror(e)));
  }
  if (!S_ISDIR(st.st_mode))
    return Err(ENOTDIR,
               fmt::format("{}mountpoint {} is not a folder: choose an empty folder", origin, dir));

  std::error_code ec;
  fs::path real = fs::canonical(dir, ec);
  if (ec) real = dir;
  // mountinfo also sees bind mounts of the same file system; the device test covers a
  // system without /proc.
  bool mounted = real == "/" || InMountinfo(real.string());
  if (!mounted) {
    struct stat parent;
    if (stat(real.parent_path().c_str(), &parent) == 0) mounted = parent.st_dev != st.st_dev;
  }
  if (mounted)
    return Err(EBUSY, fmt::format("{}mountpoint {} is already a mount point: unmount it first "
                                  "(`hfvfs stop {}` or `fusermount3 -u {}`) or choose another "
                                  "folder",
                                  origin, dir, dir, dir));

  if (access(dir.c_str(), W_OK) != 0)
    return Err(EACCES, fmt::format("{}mountpoint {}: you cannot write to it, and mounting needs "
                                   "that: choose a folder you own",
                                   origin, dir));

  if (!spec.options.allow_non_empty && !MountpointIsOverlayUpper(spec)) {
    fs::directory_iterator it(dir, ec);
    if (ec)
      return Err(ec.value(),
                 fmt::format("{}mountpoint {}: cannot list it: {}", origin, dir, ec.message()));
    if (it != fs::directory_iterator())
      return Err(ENOTEMPTY,
                 fmt::format("{}mountpoint {} is not empty: choose an empty folder, or set "
                             "options.allow_non_empty = true to mount over it (its files are "
                             "hidden while mounted)",
                             origin, dir));
  }
  return Ok();
}

}  // namespace hfvfs::kernel
