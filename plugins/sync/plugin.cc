// The `sync` plugin: write-back staging, a crash-safe journal and remote-change polling.
#include "hfvfs/plugin.h"

#include "sync_layer.h"

namespace {

hfvfs::Result<std::unique_ptr<hfvfs::Layer>> Create(hfvfs::LayerArgs& args) {
  return hfvfs::CatchAll("sync", [&]() -> hfvfs::Result<std::unique_ptr<hfvfs::Layer>> {
    if (!args.lower) return hfvfs::Err(EINVAL, "sync: a wrapper needs a layer below it");
    HFVFS_ASSIGN_OR_RETURN(hfvfs::sync::SyncOptions options,
                           hfvfs::sync::ReadSyncOptions(args.config));
    return std::unique_ptr<hfvfs::Layer>(
        new hfvfs::sync::SyncLayer(args.lower, args.host, std::move(options)));
  });
}

const hfvfs::OptionInfo kOptions[] = {
    {"poll_interval", "duration", "30s", "how often to look for remote changes; 0 disables"},
    {"metadata_ttl", "duration", "10s", "how long a stat() of the layer below is reused"},
    {"staging_dir", "path", "~/.cache/hfvfs/staging",
     "where files being written and the journal live (a folder per mount below it)"},
    {"staging_name", "string", "",
     "the per-mount folder below staging_dir; default: the mount's id (spec path + stack)"},
    {"flush_debounce", "duration", "2s", "upload this long after the last close"},
    {"flush_max_window", "duration", "30s",
     "but never later than this after the first dirty write"},
    {"shutdown_timeout", "duration", "45s", "bound on the uploads at stop/SIGTERM"},
    {"max_staging_size", "size", "0",
     "keep clean (uploaded, closed) files staged up to this many bytes, least recently used "
     "evicted first; 0 drops them once uploaded"},
    {"conflict", "enum(local-wins|keep-both)", "local-wins",
     "a file changed remotely while dirty here: keep-both keeps the remote copy beside it"},
};

}  // namespace

HFVFS_PLUGIN(hfvfs::LayerKind::kWrapper, "sync", "0.1.0",
             "write-back staging with a crash-safe journal, and remote-change polling", kOptions,
             Create)
