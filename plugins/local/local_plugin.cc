// The `local` plugin: exports the LocalLayer (local_layer.h) as libhfvfs-local.so. This file is
// all a source plugin needs beyond its layer: read the options, build the layer, declare the
// descriptor.
//
//   [[layer]]
//   type = "local"
//   path = "~/data"      # required: the folder to serve
//   read_only = false    # refuse every write (EROFS)
#include <cerrno>
#include <memory>

#include "hfvfs/plugin.h"
#include "local_layer.h"

namespace {

hfvfs::Result<std::unique_ptr<hfvfs::Layer>> Create(hfvfs::LayerArgs& args) {
  if (args.lower) {
    return hfvfs::Err(EINVAL, args.config.where() +
                                  ": local is a source and must be the first [[layer]] of the "
                                  "stack");
  }
  HFVFS_ASSIGN_OR_RETURN(std::string path, args.config.require_string("path"));
  // require_string marks the key used; get_path expands `~` and makes it absolute.
  HFVFS_ASSIGN_OR_RETURN(path, args.config.get_path("path", path));
  hfvfs::local::LocalOptions options;
  HFVFS_ASSIGN_OR_RETURN(options.read_only, args.config.get_bool("read_only", false));

  auto layer = hfvfs::local::LocalLayer::Open(path, options);
  if (!layer) return layer.error().With(args.config.where("path"));
  return std::unique_ptr<hfvfs::Layer>(std::move(*layer));
}

const hfvfs::OptionInfo kOptions[] = {
    {"path", "path", "", "the folder to serve (required; `~` is expanded)"},
    {"read_only", "bool", "false", "refuse every write with EROFS"},
};

}  // namespace

HFVFS_PLUGIN(hfvfs::LayerKind::kSource, "local", "0.1.0", "a local folder, read-write", kOptions,
             Create)
