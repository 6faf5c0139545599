// File: plugin_loader.h
//
// Finds and loads layer plugins. Search order for type T (file libhfvfs-T.so): the folders of
// the spec's plugin_path, then HFVFS_PLUGIN_PATH (':'-separated), then the install's plugin
// folder (`<dir of the executable>/../lib/hfvfs/plugins` and the configured install libdir) or,
// for an executable inside the build tree, the build's plugin folder. The first file found for
// a type is the one used: a refused file is an error, never skipped for a later one.
//
// Refusals name the file: not loadable (the dlopen error), not a plugin (no hfvfs_plugin
// symbol), another ABI major, a newer ABI minor, a descriptor smaller than the kernel needs,
// another build tag (both shown), an unknown kind, a descriptor whose name differs from the
// file's type.
//
// Lifetime: a library is loaded once and never unloaded while the process lives (it is
// re-opened with RTLD_NODELETE), so layers and files it created may outlive the loader. The
// loader itself keeps each loaded library's handle in its registry.
//
// Thread safety: none; load plugins from one thread (dlopen of many libraries concurrently is
// not portable, and the kernel loads at start-up only).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "hfvfs/plugin.h"
#include "hfvfs/result.h"

namespace boost::dll {
class shared_library;
}

namespace hfvfs::kernel {

struct FoundPlugin {
  std::string path;
  std::string type;                              // from the file name: libhfvfs-<type>.so
  const PluginDescriptor* descriptor = nullptr;  // null when refused
  std::string refusal;                           // why it was refused (names the file)
  std::string shadowed_by;  // a file earlier in the search path for the same type, if any
};

class PluginLoader {
 public:
  // `extra_dirs` come first (the spec's plugin_path). With `default_dirs` false only
  // `extra_dirs` are searched (tests).
  explicit PluginLoader(std::vector<std::string> extra_dirs = {}, bool default_dirs = true);
  ~PluginLoader();
  PluginLoader(const PluginLoader&) = delete;
  PluginLoader& operator=(const PluginLoader&) = delete;

  // The folders searched, in order.
  const std::vector<std::string>& search_path() const { return dirs_; }

  // The folders searched when no spec adds any: HFVFS_PLUGIN_PATH, then the install's (or the
  // build tree's) plugin folder.
  static std::vector<std::string> DefaultDirs();

  // Loads the plugin for `type`; ENOENT lists the folders searched, EINVAL says why refused.
  Result<const PluginDescriptor*> Load(const std::string& type);

  // Loads one file and checks it (used by Load and by tests). The type expected is taken from
  // the file name. A file already loaded returns its descriptor again.
  Result<const PluginDescriptor*> LoadFile(const std::string& path);

  // The file a descriptor was loaded from ("" if it is not one of this loader's).
  std::string FileOf(const PluginDescriptor* descriptor) const;

  // Every libhfvfs-*.so in the search path, loaded or refused, for `hfvfs plugins`.
  std::vector<FoundPlugin> Discover();

 private:
  struct Loaded;

  std::vector<std::string> dirs_;
  // The registry: canonical path -> the library and its checked descriptor. Never erased.
  std::map<std::string, std::unique_ptr<Loaded>> loaded_;
};

// The type a plugin file serves: "/x/libhfvfs-local.so" -> "local"; "" if the name does not
// have the form libhfvfs-<type>.so.
std::string PluginTypeOfFile(const std::string& path);

// True when `type` can name a plugin: [a-z0-9_-]+, at most 64 characters.
bool IsValidPluginType(const std::string& type);

}  // namespace hfvfs::kernel
