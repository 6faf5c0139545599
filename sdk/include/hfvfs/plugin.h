// File: plugin.h
//
// How a layer becomes a plugin. A plugin is a shared object that exports one Boost.DLL alias,
// `hfvfs_plugin`, in the section "hfvfs", pointing to a function that returns a const
// PluginDescriptor. The kernel reads `abi_major`, `abi_minor` and `struct_size` first and
// refuses, with a message naming the file, a plugin whose major differs from its own, whose
// minor is newer, or whose build tag differs: C++ objects (Layer, File, std::string) cross the
// boundary, so host and plugin must share a compiler, a standard library ABI and an SDK.
//
// A plugin is never unloaded while the process lives, so objects it created may outlive any
// handle to the library.
//
//   static hfvfs::Result<std::unique_ptr<hfvfs::Layer>> Create(hfvfs::LayerArgs& args) { ... }
//   static const hfvfs::OptionInfo kOptions[] = {{"path", "string", "", "the folder to serve"}};
//   HFVFS_PLUGIN(hfvfs::LayerKind::kSource, "local", "0.1.0", "a local folder", kOptions, Create)
#pragma once

#include <boost/config.hpp>
#include <boost/dll/alias.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "hfvfs/config.h"
#include "hfvfs/layer.h"
#include "hfvfs/result.h"
#include "hfvfs/version.h"

namespace hfvfs {

// The plugin ABI. Bump the major for any change to a type that crosses the boundary (Layer,
// File, Host, LayerArgs, ConfigView, Result) or to the descriptor's existing fields; bump the
// minor when fields are appended to the descriptor.
inline constexpr uint32_t kAbiMajor = 3;  // 2: Layer::status_notes; 3: File::read_lent
inline constexpr uint32_t kAbiMinor = 0;

#define HFVFS_STRINGIFY_INNER_(x) #x
#define HFVFS_STRINGIFY_(x) HFVFS_STRINGIFY_INNER_(x)

#if defined(__clang__)
#define HFVFS_COMPILER_TAG_ "clang-" HFVFS_STRINGIFY_(__clang_major__)
#elif defined(__GNUC__)
#define HFVFS_COMPILER_TAG_ "gcc-" HFVFS_STRINGIFY_(__GNUC__)
#else
#define HFVFS_COMPILER_TAG_ "unknown-compiler"
#endif

#if defined(_GLIBCXX_USE_CXX11_ABI)
#define HFVFS_STDLIB_TAG_ "libstdc++-cxx11abi" HFVFS_STRINGIFY_(_GLIBCXX_USE_CXX11_ABI)
#elif defined(_LIBCPP_VERSION)
#define HFVFS_STDLIB_TAG_ "libc++-" HFVFS_STRINGIFY_(_LIBCPP_ABI_VERSION)
#else
#define HFVFS_STDLIB_TAG_ "unknown-stdlib"
#endif

// Compiler, standard library ABI and SDK version of the code that includes this header. The
// kernel compares a plugin's tag with its own, byte for byte.
#define HFVFS_BUILD_TAG HFVFS_COMPILER_TAG_ "/" HFVFS_STDLIB_TAG_ "/sdk-" HFVFS_SDK_VERSION

enum class LayerKind : uint32_t {
  kSource = 1,   // bottom of a stack: has no lower layer
  kWrapper = 2,  // wraps the layer below it
};

// How the kernel asks a plugin to invalidate its caches of a path (see Host::invalidate).
enum class Invalidation : uint8_t {
  kEntry,     // the name may now point elsewhere or nowhere (added, removed, renamed)
  kContent,   // the file's bytes or attributes changed
  kChildren,  // the directory's listing changed
};

// Services the kernel offers to every layer. All methods are thread-safe and may be called
// from a request handler and while holding the layer's own locks: the kernel queues the work
// and performs it on its own thread.
class Host {
 public:
  virtual ~Host() = default;

  // Drops the kernel's cached entry, attributes, pages or listing of `path` (layer path of
  // the top of the stack). Once shutdown begins, calls are ignored.
  virtual void invalidate(std::string_view path, Invalidation what) = 0;

  // A stable identity of this mount (a hash of the spec's absolute path and its stack), for
  // naming per-mount state: cache locks, staging journals.
  virtual std::string_view mount_id() const = 0;

  // True once the mount is stopping; long-running work should wind down.
  virtual bool shutting_down() const = 0;
};

// What create() receives. References stay valid during create() only; copy what you keep
// (the `lower` shared_ptr, and `host`, which outlives every layer).
struct LayerArgs {
  ConfigView& config;            // this layer's table of the spec
  std::shared_ptr<Layer> lower;  // the layer below; null for a source
  Host& host;
  int index = 0;  // position in the stack, 0 = bottom
  // The folder the stack will be mounted on (absolute), or empty when only checking a spec.
  // create() runs before the mount, so a layer may open it (the overlay's default upper).
  std::string mountpoint;
};

// One option a plugin accepts, for `hfvfs plugins` and the docs.
struct OptionInfo {
  const char* key;
  const char* type;      // "string", "bool", "int", "size", "duration", "path", "enum(a|b)"
  const char* fallback;  // default as written in a spec; "" = required or none
  const char* help;
};

using CreateFn = Result<std::unique_ptr<Layer>> (*)(LayerArgs& args);

// Fields are only ever appended (and the minor bumped); `struct_size` tells the kernel how many
// the plugin knew of.
struct PluginDescriptor {
  uint32_t abi_major;
  uint32_t abi_minor;
  uint32_t struct_size;
  LayerKind kind;
  const char* name;            // the spec's `type`
  const char* plugin_version;  // the plugin's own version
  const char* build_tag;       // HFVFS_BUILD_TAG as the plugin was compiled
  const char* summary;         // one line for `hfvfs plugins`
  const OptionInfo* options;
  uint32_t option_count;
  // Builds the layer. Called through CatchAll by the kernel's loader; a plugin should still
  // return errors rather than throw.
  CreateFn create;
};

// The signature of the exported function (Boost.DLL alias "hfvfs_plugin").
using DescriptorFn = const PluginDescriptor*();

}  // namespace hfvfs

// Declares the plugin's descriptor and exports it. Use once per shared object, at namespace
// scope, outside any namespace.
#define HFVFS_PLUGIN(kind_, name_, version_, summary_, options_, create_)   \
  namespace hfvfs_plugin_detail_ {                                          \
  static const ::hfvfs::PluginDescriptor kDescriptor = {                    \
      ::hfvfs::kAbiMajor,                                                   \
      ::hfvfs::kAbiMinor,                                                   \
      sizeof(::hfvfs::PluginDescriptor),                                    \
      kind_,                                                                \
      name_,                                                                \
      version_,                                                             \
      HFVFS_BUILD_TAG,                                                      \
      summary_,                                                             \
      options_,                                                             \
      static_cast<uint32_t>(sizeof(options_) / sizeof((options_)[0])),      \
      create_};                                                             \
  const ::hfvfs::PluginDescriptor* GetDescriptor() { return &kDescriptor; } \
  }                                                                         \
  BOOST_DLL_ALIAS_SECTIONED(hfvfs_plugin_detail_::GetDescriptor, hfvfs_plugin, hfvfs)
