// BuildStack: from a loaded MountSpec to layers; see stack.h.
#include "stack.h"

#include <fmt/format.h>

#include "plugin_loader.h"

namespace hfvfs::kernel {

Result<Stack> BuildStack(const MountSpec& spec, Host& host, bool mounting) {
  PluginLoader loader(spec.plugin_path);
  return BuildStack(spec, host, loader, mounting);
}

Result<Stack> BuildStack(const MountSpec& spec, Host& host, PluginLoader& loader, bool mounting) {
  if (spec.layers.empty())
    return Err(EINVAL, fmt::format("{}: no [[layer]] tables: a stack needs a source", spec.path));
  Stack stack;
  std::shared_ptr<Layer> lower;
  for (const LayerSpec& layer : spec.layers) {
    ConfigView& config = *layer.config;
    if (layer.type.empty())
      return Err(EINVAL, config.where("type") + ": the layer has no valid type");
    Result<const PluginDescriptor*> loaded = loader.Load(layer.type);
    if (!loaded) return loaded.error().With(config.where("type"));
    const PluginDescriptor& plugin = **loaded;

    const bool bottom = layer.index == 0;
    if (bottom && plugin.kind != LayerKind::kSource)
      return Err(EINVAL, fmt::format("{}: '{}' is a wrapper and needs a layer below it; the "
                                     "first [[layer]] must be a source (such as local, hub or "
                                     "s3): add one before it",
                                     config.where("type"), layer.type));
    if (!bottom && plugin.kind != LayerKind::kWrapper)
      return Err(EINVAL, fmt::format("{}: '{}' is a source and cannot sit above another layer; "
                                     "only the first [[layer]] may be a source: move it to the "
                                     "top of the file or remove the layers before it",
                                     config.where("type"), layer.type));

    LayerArgs args{config, lower, host, layer.index, mounting ? spec.mountpoint : ""};
    Result<std::unique_ptr<Layer>> created =
        CatchAll(config.where(), [&] { return plugin.create(args); });
    if (!created) {
      // Plugins usually name the place already; add it when they do not.
      const std::string& message = created.error().message();
      if (message.rfind(config.file(), 0) == 0) return created.error();
      return created.error().With(config.where());
    }
    if (!*created)
      return Err(EIO, fmt::format("{}: the {} plugin returned no layer (a plugin bug)",
                                  config.where(), layer.type));
    HFVFS_RETURN_IF_ERROR(config.check_unused());

    lower = std::shared_ptr<Layer>(std::move(*created));
    stack.layers.push_back(lower);
    stack.plugins.push_back(&plugin);
    stack.plugin_files.push_back(loader.FileOf(&plugin));
  }
  return stack;
}

}  // namespace hfvfs::kernel
