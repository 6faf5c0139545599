// Plugins the kernel must refuse, one per BAD_* definition (see CMakeLists.txt). Each writes
// its descriptor by hand to break one rule; BAD_NO_SYMBOL exports nothing at all.
#include <cstddef>

#include "hfvfs/plugin.h"

namespace {

hfvfs::Result<std::unique_ptr<hfvfs::Layer>> Create(hfvfs::LayerArgs&) {
  return hfvfs::Err(EINVAL, "a refused plugin must never be created");
}

#ifndef BAD_NO_SYMBOL

#ifndef BAD_NAME
#error "BAD_NAME: the type the descriptor claims"
#endif

constexpr uint32_t kMajor =
#ifdef BAD_MAJOR
    hfvfs::kAbiMajor + 1;
#else
    hfvfs::kAbiMajor;
#endif
constexpr uint32_t kMinor =
#ifdef BAD_MINOR
    hfvfs::kAbiMinor + 1;
#else
    hfvfs::kAbiMinor;
#endif
constexpr uint32_t kSize =
#ifdef BAD_SIZE
    offsetof(hfvfs::PluginDescriptor, name);
#else
    sizeof(hfvfs::PluginDescriptor);
#endif
constexpr const char* kTag =
#ifdef BAD_TAG
    "othercc-99/libstdc++-cxx11abi1/sdk-0.0.0";
#else
    HFVFS_BUILD_TAG;
#endif

const hfvfs::PluginDescriptor kDescriptor = {kMajor,   kMinor,  kSize, hfvfs::LayerKind::kSource,
                                             BAD_NAME, "0.0.0", kTag,  "bad",
                                             nullptr,  0,       Create};

const hfvfs::PluginDescriptor* GetDescriptor() { return &kDescriptor; }

#else
// Keeps Create referenced so the module is not empty.
[[maybe_unused]] const auto kUnused = &Create;
#endif

}  // namespace

#ifndef BAD_NO_SYMBOL
BOOST_DLL_ALIAS_SECTIONED(GetDescriptor, hfvfs_plugin, hfvfs)
#endif
