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

class PluginLoader;

// The `options` table of the spec: how the kernel serves the mount.
// The read_ahead of a stack with a `cache` layer when the spec does not give one: warm reads
// from the chunk cache go direct to the disk 1 MiB at a time and need ~16 in flight.
inline constexpr uint64_t kCacheReadAhead = 16 << 20;
// FUSE worker threads (libfuse starts them as requests wait, up to this many): a request
// blocked on a disk or a network occupies one, so the default keeps many in flight.
inline constexpr unsigned kDefaultMaxThreads = 16;
inline constexpr unsigned kMaxMaxThreads = 256;

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
  // Kernel readahead per sequential reader (the mount's bdi read_ahead_kb, root only): 4 MiB
  // keeps four 1 MiB reads in flight. It is also the read-around of an mmap page fault.
  // Unset in the spec: kCacheReadAhead when the stack has a `cache` layer (LoadSpec).
  uint64_t read_ahead = 4 << 20;
  bool read_ahead_set = false;  // the spec gave read_ahead
  // FUSE worker threads. A CPU-bound stack (crypt over a local folder) reads faster with about
  // one per core (see design.md, FUSE; README, `max_threads`).
  unsigned max_threads = kDefaultMaxThreads;
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
  // Where the mountpoint was given, for messages: "spec.toml:1: key 'mountpoint'" or
  // "--mountpoint".
  std::string mountpoint_origin;
  MountOptions options;
  std::vector<std::string> plugin_path;  // extra plugin folders from the spec
  std::vector<LayerSpec> layers;         // bottom first
  std::vector<std::string> warnings;     // for the log and `hfvfs check`
};

// Reads `spec_path`; `mountpoint_override` (from --mountpoint, relative to the current folder)
// wins over the spec's key. Does not look at the mountpoint folder itself (see
// CheckMountpoint) or load plugins. Every error found is reported, one per line of the
// message, each naming the file and line. Self-defeating stacks become `warnings`.
Result<MountSpec> LoadSpec(const std::string& spec_path,
                           const std::optional<std::string>& mountpoint_override);

// One clear error, naming the mountpoint and saying how to fix it: ENOENT (missing), ENOTDIR
// (not a folder), ENOTCONN (a dead FUSE mount), EBUSY (already a mount point), ENOTEMPTY (not
// empty, unless options.allow_non_empty, or an `overlay` layer without `upper` makes the
// folder's own files its upper layer), EACCES (the user cannot write to it).
Status CheckMountpoint(const MountSpec& spec);

// A built stack: layers bottom to top, all alive until the mount ends.
struct Stack {
  std::vector<std::shared_ptr<Layer>> layers;    // [0] is the source; back() is the top
  std::vector<const PluginDescriptor*> plugins;  // parallel to layers
  std::vector<std::string> plugin_files;         // parallel to layers
  Layer& top() const { return *layers.back(); }
};

// Loads every layer's plugin and creates the stack, bottom to top: the bottom must be a
// source, every other layer a wrapper. Unknown keys of any layer are errors. Does not call
// Layer::start(). Stops at the first error (a wrapper needs the layer below it). `mounting`:
// the layers get the mountpoint in LayerArgs (false for `hfvfs check`: they get "").
Result<Stack> BuildStack(const MountSpec& spec, Host& host, bool mounting = false);
// The same with the caller's loader (its search path must include spec.plugin_path).
Result<Stack> BuildStack(const MountSpec& spec, Host& host, PluginLoader& loader,
                         bool mounting = false);

}  // namespace hfvfs::kernel
