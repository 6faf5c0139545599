// The overlay plugin: reads the spec keys and builds an OverlayLayer (overlay_layer.h).
#include "hfvfs/plugin.h"
#include "overlay_layer.h"

namespace {

hfvfs::Result<std::unique_ptr<hfvfs::Layer>> Create(hfvfs::LayerArgs& args) {
  if (!args.lower) return hfvfs::Err(EINVAL, args.config.where() + ": overlay needs a layer below");
  hfvfs::overlay::OverlayOptions options;
  HFVFS_ASSIGN_OR_RETURN(options.copy_up, args.config.get_bool("copy_up", true));
  HFVFS_ASSIGN_OR_RETURN(std::string on_touch,
                         args.config.get_enum("on_touch", "copy_up", {"copy_up", "ignore"}));
  options.ignore_lower_touch = on_touch == "ignore";
  // Checking a spec (no mountpoint) must leave no trace: nothing is created then.
  const bool checking = args.mountpoint.empty();
  std::string upper;
  if (args.config.has("upper")) {
    HFVFS_ASSIGN_OR_RETURN(upper, args.config.get_path("upper", ""));
    if (upper.empty())
      return hfvfs::Err(EINVAL, args.config.where("upper") + ": expected a folder, got \"\"");
  } else if (checking) {
    return std::unique_ptr<hfvfs::Layer>(std::make_unique<hfvfs::overlay::OverlayLayer>(
        args.lower,
        "overlay: no `upper` key and no mountpoint: the upper directory is the mountpoint's own "
        "folder, known only when mounting",
        options));
  } else {
    // The mountpoint's own folder, opened now: the mount covers it afterwards, and its files
    // stay visible through the overlay and win.
    upper = args.mountpoint;
  }
  auto layer = hfvfs::overlay::OverlayLayer::Open(args.lower, upper, options, !checking);
  if (!layer) return layer.error().With(args.config.where());
  return std::unique_ptr<hfvfs::Layer>(std::move(*layer));
}

const hfvfs::OptionInfo kOptions[] = {
    {"upper", "path", "",
     "the local writable folder (created if missing); default: the mountpoint's own folder, "
     "opened before mounting, so files already there stay visible and win"},
    {"copy_up", "bool", "true",
     "true: changing or deleting a lower-only file copies it up or records a whiteout; false: "
     "such changes answer EPERM (strict)"},
    {"on_touch", "enum(copy_up|ignore)", "copy_up",
     "a change of the modification time alone of a lower-only file: copy_up (or EPERM when "
     "copy_up = false), or ignore (it succeeds without effect: caches that touch entries on "
     "every hit, like ccache, then do not copy hits into the upper folder)"},
};

}  // namespace

HFVFS_PLUGIN(hfvfs::LayerKind::kWrapper, "overlay", "0.1.0",
             "a local writable folder over a read-only view; the lower layer is never written",
             kOptions, Create)
