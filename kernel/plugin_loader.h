// File: plugin_loader.h
//
// Finds and loads layer plugins. Search order for type T (file libhfvfs-T.so): the folders of
// the spec's plugin_path, then HFVFS_PLUGIN_PATH (':'-separated), then the install's plugin
// folder (and, in a build tree, the build's plugin folder). A library is loaded once and never
// unloaded. Refusals name the file: not a plugin (no hfvfs_plugin symbol), another ABI major,
// a newer ABI minor, another build tag, a descriptor whose name differs from the file's type.
#pragma once

#include <string>
#include <vector>

#include "hfvfs/plugin.h"
#include "hfvfs/result.h"

namespace hfvfs::kernel {

struct FoundPlugin {
  std::string path;
  const PluginDescriptor* descriptor = nullptr;  // null when refused
  std::string refusal;                           // why it was refused
};

class PluginLoader {
 public:
  // `extra_dirs` come first (the spec's plugin_path).
  explicit PluginLoader(std::vector<std::string> extra_dirs = {});

  // The folders searched, in order.
  const std::vector<std::string>& search_path() const { return dirs_; }

  // Loads the plugin for `type`; ENOENT lists the folders searched, EINVAL says why refused.
  Result<const PluginDescriptor*> Load(const std::string& type);

  // Loads one file and checks it (used by Load and by tests).
  Result<const PluginDescriptor*> LoadFile(const std::string& path);

  // Every libhfvfs-*.so in the search path, loaded or refused, for `hfvfs plugins`.
  std::vector<FoundPlugin> Discover();

 private:
  std::vector<std::string> dirs_;
};

}  // namespace hfvfs::kernel
