// A trivial wrapper for the kernel's tests: forwards everything and reads one option,
// `suffix`, to prove that wrapper keys are marked used. Built as libhfvfs-upper.so.
#include "hfvfs/plugin.h"

namespace {

class Upper final : public hfvfs::LayerWrapper {
 public:
  using LayerWrapper::LayerWrapper;
  std::string_view type() const override { return "upper"; }
};

hfvfs::Result<std::unique_ptr<hfvfs::Layer>> Create(hfvfs::LayerArgs& args) {
  if (!args.lower) return hfvfs::Err(EINVAL, "upper: needs a lower layer");
  HFVFS_RETURN_IF_ERROR(args.config.get_string("suffix", ""));
  return std::unique_ptr<hfvfs::Layer>(std::make_unique<Upper>(args.lower));
}

const hfvfs::OptionInfo kOptions[] = {{"suffix", "string", "", "ignored (tests)"}};

}  // namespace

HFVFS_PLUGIN(hfvfs::LayerKind::kWrapper, "upper", "0.0.1", "a forwarding wrapper (tests)", kOptions,
             Create)
