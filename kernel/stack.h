// File: stack.h
//
// From a mount spec to a running stack of layers. LoadSpec reads and checks the spec's own
// keys; BuildStack loads each layer's plugin (plugin_loader.h), creates the layers bottom to
// top and checks that every key of the spec was understood. Every error names the spec file,
// the line and the key, and says how to fix it.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "hfvfs/config.h"
#include "hfvfs/layer.h"
#include "hfvfs/plugin.h"
#include "hfvfs/result.h"

namespace hfvfs::kernel {

// The `options` table of the spec: how the kernel serves the mount.
struct MountOptions {
  bool allow_other = false;
  std::optional<uint32_t> uid;  // owner shown for every file (default: the mounting user)
  std::optional<uint32_t> gid;
  bool allow_non_empty = false;                   // mount over a non-empty folder
  std::chrono::milliseconds attr_ttl{10'000};     // attribute and listing cache
  std::chrono::milliseconds negative_ttl{1'000};  // "no such file" cache
  size_t max_inodes = 0;  // soft limit on forgotten inodes kept; 0 = default
  std::chrono::milliseconds stop_timeout{45'000};  // bound on the flush at stop
  bool read_only = false;                          // serve read-only whatever the stack can do
  // Acknowledged self-defeating stacks (a plaintext cache above crypt): no warning.
  bool allow_plaintext_above_crypt = false;
};

// One `[[layer]]` entry, before its plugin is loaded.
struct LayerSpec {
  std::string type;
  int index = 0;  // 0 = bottom
  std::shared_ptr<ConfigView> config;
};

struct MountSpec {
  std::string path;        // the spec file, absolute
  std::string mountpoint;  // absolute; may come from the command line
  MountOptions options;
  std::vector<std::string> plugin_path;  // extra plugin folders from the spec
  std::vector<LayerSpec> layers;         // bottom first
  std::vector<std::string> warnings;     // for the log and `hfvfs check`
};

// Reads `spec_path`; `mountpoint_override` (from --mountpoint) wins over the spec's key.
// Does not look at the mountpoint folder itself (see CheckMountpoint) or load plugins.
Result<MountSpec> LoadSpec(const std::string& spec_path,
                           const std::optional<std::string>& mountpoint_override);

// EINVAL/ENOENT/EBUSY with a clear message when the mountpoint is missing, not a folder, not
// empty (unless allowed) or already a mount.
Status CheckMountpoint(const MountSpec& spec);

// A built stack: layers bottom to top, all alive until the mount ends.
struct Stack {
  std::vector<std::shared_ptr<Layer>> layers;    // [0] is the source; back() is the top
  std::vector<const PluginDescriptor*> plugins;  // parallel to layers
  Layer& top() const { return *layers.back(); }
};

// Loads every layer's plugin and creates the stack. Unknown keys of any layer are errors.
// Does not call Layer::start().
Result<Stack> BuildStack(const MountSpec& spec, Host& host);

}  // namespace hfvfs::kernel
