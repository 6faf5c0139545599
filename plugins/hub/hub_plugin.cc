// The `hub` plugin: exports the descriptor that builds a HubLayer from a spec table.
#include "hfvfs/plugin.h"
#include "hub_layer.h"

namespace {

hfvfs::Result<std::unique_ptr<hfvfs::Layer>> Create(hfvfs::LayerArgs& args) {
  if (args.lower)
    return hfvfs::Err(EINVAL, args.config.where() + ": hub is a source (bottom layer)");
  HFVFS_ASSIGN_OR_RETURN(hfvfs::hub::HubOptions options, hfvfs::hub::ParseOptions(args.config));
  return std::unique_ptr<hfvfs::Layer>(std::make_unique<hfvfs::hub::HubLayer>(std::move(options)));
}

const hfvfs::OptionInfo kOptions[] = {
    {"repo", "string", "", "\"org/name\", \"datasets/org/name\" or \"spaces/org/name\""},
    {"revision", "string", "main", "branch, tag, commit sha or refs/pr/N"},
    {"subfolder", "string", "", "mount only this folder of the repo"},
    {"endpoint", "string", "", "Hub URL; default $HF_ENDPOINT, else https://huggingface.co"},
    {"token_file", "path", "", "file holding the token, re-read when it changes; else $HF_TOKEN"},
    {"max_retries", "int", "3", "retries of 408/429/5xx and connection errors"},
    {"max_retry_wait", "duration", "30s", "cap on a wait asked by RateLimit or Retry-After"},
    {"stall_timeout", "duration", "30s", "abort and retry a transfer that receives nothing"},
    {"seek_window", "size", "8MiB", "a forward seek up to this far reuses the open stream"},
};

}  // namespace

HFVFS_PLUGIN(hfvfs::LayerKind::kSource, "hub", "0.1.0",
             "a Hugging Face model, dataset or space at a revision, read-only", kOptions, Create)
