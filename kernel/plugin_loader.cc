#include "plugin_loader.h"

#include <dlfcn.h>
#include <fmt/format.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <boost/dll/shared_library.hpp>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <system_error>

namespace hfvfs::kernel {
namespace {

namespace fs = std::filesystem;

constexpr char kPrefix[] = "libhfvfs-";
constexpr char kSuffix[] = ".so";
constexpr char kSymbol[] = "hfvfs_plugin";

// The descriptor size of ABI 1.0: every field up to `create`. A plugin claiming less would
// make the kernel read past its descriptor.
constexpr size_t kMinDescriptorSize = offsetof(PluginDescriptor, create) + sizeof(CreateFn);

std::string Canonical(const std::string& path) {
  char resolved[PATH_MAX];
  if (realpath(path.c_str(), resolved)) return resolved;
  return path;
}

// The running executable's folder, or "" when /proc is not readable.
std::string ExeDir() {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return "";
  return exe.parent_path().string();
}

bool IsUnderDir(const std::string& path, const std::string& dir) {
  if (dir.empty() || path.size() < dir.size() || path.compare(0, dir.size(), dir) != 0)
    return false;
  return path.size() == dir.size() || path[dir.size()] == '/' || dir.back() == '/';
}

void AddDir(std::vector<std::string>& dirs, const std::string& dir) {
  if (dir.empty()) return;
  std::string normal = fs::path(dir).lexically_normal().string();
  if (normal.size() > 1 && normal.back() == '/') normal.pop_back();
  if (std::find(dirs.begin(), dirs.end(), normal) == dirs.end()) dirs.push_back(normal);
}

// Boost.DLL 1.74 resets dlerror() after a failed load and reports only a generic code; the
// real reason (missing dependency, undefined symbol, bad ELF class) is what a user needs, so
// repeat the dlopen to read it.
std::string DlopenReason(const std::string& path) {
  dlerror();
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle) {
    dlclose(handle);
    return "it loads now but did not a moment ago";
  }
  const char* reason = dlerror();
  return reason ? reason : "unknown dlopen error";
}

// A quick look at the header, to say "not a shared library" rather than a dlopen riddle.
std::string NotElfReason(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fmt::format("cannot read it: {}", std::strerror(errno ? errno : EACCES));
  char magic[4] = {};
  in.read(magic, sizeof(magic));
  if (in.gcount() != 4 || std::memcmp(magic,
                                      "\x7f"
                                      "ELF",
                                      4) != 0)
    return "it is not a shared library (no ELF header)";
  return "";
}

}  // namespace

struct PluginLoader::Loaded {
  boost::dll::shared_library library;
  const PluginDescriptor* descriptor = nullptr;
};

std::string PluginTypeOfFile(const std::string& path) {
  std::string name = fs::path(path).filename().string();
  const size_t prefix = sizeof(kPrefix) - 1, suffix = sizeof(kSuffix) - 1;
  if (name.size() <= prefix + suffix) return "";
  if (name.compare(0, prefix, kPrefix) != 0) return "";
  if (name.compare(name.size() - suffix, suffix, kSuffix) != 0) return "";
  return name.substr(prefix, name.size() - prefix - suffix);
}

bool IsValidPluginType(const std::string& type) {
  if (type.empty() || type.size() > 64) return false;
  return std::all_of(type.begin(), type.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

PluginLoader::PluginLoader(std::vector<std::string> extra_dirs, bool default_dirs) {
  for (const std::string& dir : extra_dirs) AddDir(dirs_, dir);
  if (default_dirs)
    for (const std::string& dir : DefaultDirs()) AddDir(dirs_, dir);
}

PluginLoader::~PluginLoader() = default;

std::vector<std::string> PluginLoader::DefaultDirs() {
  std::vector<std::string> dirs;
  if (const char* env = getenv("HFVFS_PLUGIN_PATH")) {
    std::string list = env;
    size_t start = 0;
    while (start <= list.size()) {
      size_t colon = list.find(':', start);
      if (colon == std::string::npos) colon = list.size();
      AddDir(dirs, list.substr(start, colon - start));
      start = colon + 1;
    }
  }
  std::string exe_dir = ExeDir();
#ifdef HFVFS_BUILD_DIR
  // An executable inside the build tree uses the plugins built beside it, never installed ones
  // (which may come from another build); an installed one never looks into a build tree.
  if (!exe_dir.empty() && IsUnderDir(Canonical(exe_dir), Canonical(HFVFS_BUILD_DIR))) {
    AddDir(dirs, HFVFS_BUILD_PLUGIN_DIR);
    return dirs;
  }
#endif
#ifdef HFVFS_INSTALL_PLUGIN_RELDIR
  // Relocatable installs: <prefix>/bin/hfvfs finds <prefix>/lib/hfvfs/plugins.
  if (!exe_dir.empty()) AddDir(dirs, exe_dir + "/../" + HFVFS_INSTALL_PLUGIN_RELDIR);
#endif
#ifdef HFVFS_INSTALL_PLUGIN_DIR
  AddDir(dirs, HFVFS_INSTALL_PLUGIN_DIR);
#endif
  return dirs;
}

Result<const PluginDescriptor*> PluginLoader::Load(const std::string& type) {
  if (!IsValidPluginType(type))
    return Err(EINVAL, fmt::format("'{}' is not a valid layer type (lower-case letters, digits, "
                                   "'-' and '_'); `hfvfs plugins` lists the types available",
                                   type));
  std::string file = kPrefix + type + kSuffix;
  for (const std::string& dir : dirs_) {
    std::string path = dir + "/" + file;
    std::error_code ec;
    if (fs::exists(path, ec)) return LoadFile(path);
  }
  return Err(
      ENOENT,
      fmt::format("unknown layer type '{}': no {} in the plugin folders ({}); check the "
                  "spelling (`hfvfs plugins` lists the types found) or add the plugin's "
                  "folder to plugin_path in the spec or to HFVFS_PLUGIN_PATH",
                  type, file, dirs_.empty() ? "none" : fmt::format("{}", fmt::join(dirs_, ", "))));
}

Result<const PluginDescriptor*> PluginLoader::LoadFile(const std::string& path) {
  std::string canonical = Canonical(path);
  if (auto it = loaded_.find(canonical); it != loaded_.end()) return it->second->descriptor;

  auto refuse = [&](const std::string& why) {
    return Err(EINVAL, fmt::format("plugin {} refused: {}", path, why));
  };
  std::string type = PluginTypeOfFile(path);
  if (type.empty()) return refuse("its name is not of the form libhfvfs-<type>.so");
  std::error_code ec;
  if (!fs::is_regular_file(canonical, ec))
    return Err(ENOENT,
               fmt::format("plugin {} refused: {}", path,
                           fs::exists(canonical, ec) ? "not a regular file" : "no such file"));
  if (std::string why = NotElfReason(canonical); !why.empty()) return refuse(why);

  auto loaded = std::make_unique<Loaded>();
  boost::dll::fs::error_code load_error;
  // rtld_now: an undefined symbol is reported here, not as a crash at first use.
  // rtld_local: plugins do not see each other's symbols.
  loaded->library.load(boost::dll::fs::path(canonical), load_error,
                       boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
  if (load_error || !loaded->library.is_loaded())
    return refuse("cannot load it: " + DlopenReason(canonical));

  if (!loaded->library.has(kSymbol))
    return refuse(
        "not an hfvfs plugin (no 'hfvfs_plugin' symbol; a plugin declares itself with "
        "HFVFS_PLUGIN(...) from hfvfs/plugin.h)");

  Result<const PluginDescriptor*> got = CatchAll("reading the descriptor", [&] {
    return Result<const PluginDescriptor*>(loaded->library.get_alias<DescriptorFn>(kSymbol)());
  });
  if (!got) return refuse(got.error().message());
  const PluginDescriptor* d = *got;
  if (!d) return refuse("its hfvfs_plugin() returned no descriptor");

  // Only the first three fields are read before the major is known to match.
  if (d->abi_major != kAbiMajor)
    return refuse(fmt::format(
        "it was built for plugin ABI {}.{}, this hfvfs speaks ABI {}.{} (the major must match): "
        "rebuild the plugin against this hfvfs's SDK",
        d->abi_major, d->abi_minor, kAbiMajor, kAbiMinor));
  if (d->abi_minor > kAbiMinor)
    return refuse(fmt::format(
        "it needs plugin ABI {}.{}, newer than this hfvfs's {}.{}: upgrade hfvfs or rebuild the "
        "plugin against this hfvfs's SDK",
        d->abi_major, d->abi_minor, kAbiMajor, kAbiMinor));
  if (d->struct_size < kMinDescriptorSize)
    return refuse(fmt::format(
        "its descriptor is {} bytes, smaller than the {} bytes of ABI {}.0 (a corrupt or "
        "hand-made descriptor): build it with HFVFS_PLUGIN(...)",
        d->struct_size, kMinDescriptorSize, kAbiMajor));
  if (!d->build_tag || std::strcmp(d->build_tag, HFVFS_BUILD_TAG) != 0)
    return refuse(fmt::format(
        "it was built as '{}' but this hfvfs is '{}' (compiler, C++ library ABI and SDK "
        "version must match, since C++ objects cross the boundary): rebuild the plugin with "
        "the same compiler against this hfvfs's SDK",
        d->build_tag ? d->build_tag : "(none)", HFVFS_BUILD_TAG));
  if (d->kind != LayerKind::kSource && d->kind != LayerKind::kWrapper)
    return refuse(fmt::format("its kind {} is neither source (1) nor wrapper (2)",
                              static_cast<uint32_t>(d->kind)));
  if (!d->name || type != d->name)
    return refuse(fmt::format(
        "its descriptor names the type '{}' but the file is named for '{}': rename the file "
        "to libhfvfs-{}.so or fix the name in HFVFS_PLUGIN(...)",
        d->name ? d->name : "(none)", type, d->name ? d->name : "<type>"));
  if (!d->create) return refuse("its descriptor has no create function");
  if (d->option_count > 0 && !d->options)
    return refuse("its descriptor counts options but lists none");

  // Never unloaded while the process lives: objects the plugin creates (layers, files, their
  // vtables) may outlive this loader. glibc lets RTLD_NOLOAD promote the flag on the loaded
  // library; the extra reference it takes is deliberately never closed. A refused library, by
  // contrast, is closed again when `loaded` goes out of scope: nothing of it was used.
  if (!dlopen(canonical.c_str(), RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE))
    return refuse("cannot pin it in memory: " + DlopenReason(canonical));
  loaded->descriptor = d;
  loaded_.emplace(canonical, std::move(loaded));
  return d;
}

std::string PluginLoader::FileOf(const PluginDescriptor* descriptor) const {
  for (const auto& [path, loaded] : loaded_)
    if (loaded->descriptor == descriptor) return path;
  return "";
}

std::vector<FoundPlugin> PluginLoader::Discover() {
  std::vector<FoundPlugin> found;
  std::map<std::string, std::string> first_of_type;  // type -> path that wins
  for (const std::string& dir : dirs_) {
    std::error_code ec;
    std::vector<std::string> files;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      std::string path = it->path().string();
      if (!PluginTypeOfFile(path).empty()) files.push_back(path);
    }
    std::sort(files.begin(), files.end());
    for (const std::string& path : files) {
      FoundPlugin plugin;
      plugin.path = path;
      plugin.type = PluginTypeOfFile(path);
      Result<const PluginDescriptor*> d = LoadFile(path);
      if (d)
        plugin.descriptor = *d;
      else
        plugin.refusal = d.error().message();
      auto [it, inserted] = first_of_type.emplace(plugin.type, path);
      if (!inserted) plugin.shadowed_by = it->second;
      found.push_back(std::move(plugin));
    }
  }
  return found;
}

}  // namespace hfvfs::kernel
