// The `cache` plugin: option parsing and the descriptor. The layer is in cache_layer.h.
#include <cctype>

#include "cache_layer.h"
#include "hfvfs/plugin.h"
#include "hfvfs/units.h"

namespace {

using hfvfs::Err;
using hfvfs::Result;

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;
constexpr uint64_t kGiB = 1024 * kMiB;

// The default folder is per mount, so two different mounts never contend for one folder.
std::string DefaultDir(std::string_view mount_id) {
  std::string safe;
  for (char c : mount_id) {
    safe.push_back(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ? c : '_');
  }
  if (safe.empty()) safe = "default";
  return hfvfs::ExpandPath("~/.cache/hfvfs") + "/" + safe;
}

Result<std::unique_ptr<hfvfs::Layer>> Create(hfvfs::LayerArgs& args) {
  if (!args.lower) return Err(EINVAL, args.config.where() + ": cache needs a layer below it");
  hfvfs::ConfigView& config = args.config;
  hfvfs::cache::CacheOptions options;
  HFVFS_ASSIGN_OR_RETURN(options.dir, config.get_path("dir", ""));
  if (options.dir.empty()) options.dir = DefaultDir(args.host.mount_id());
  HFVFS_ASSIGN_OR_RETURN(options.max_size, config.get_size("max_size", 10 * kGiB));
  HFVFS_ASSIGN_OR_RETURN(options.chunk_size, config.get_size("chunk_size", options.chunk_size));
  HFVFS_ASSIGN_OR_RETURN(options.readahead.min, config.get_size("readahead_min", 1 * kMiB));
  HFVFS_ASSIGN_OR_RETURN(options.readahead.max, config.get_size("readahead_max", 64 * kMiB));
  HFVFS_ASSIGN_OR_RETURN(int64_t concurrency, config.get_int("fetch_concurrency", 8));
  HFVFS_ASSIGN_OR_RETURN(int64_t streams, config.get_int("readahead_streams", 4));
  if (streams < 1 || streams > 16) {
    return Err(EINVAL, config.where("readahead_streams") + ": expected 1 to 16");
  }
  options.readahead_streams = static_cast<int>(streams);
  HFVFS_ASSIGN_OR_RETURN(options.readahead_segment,
                         config.get_size("readahead_segment", options.readahead_segment));
  if (options.readahead_segment == 0 || options.readahead_segment > 256 * kMiB) {
    return Err(EINVAL, config.where("readahead_segment") + ": expected 1 byte to 256MiB");
  }
  HFVFS_ASSIGN_OR_RETURN(options.warm_readahead,
                         config.get_size("warm_readahead", options.warm_readahead));
  if (options.warm_readahead > 1 * kGiB) {
    return Err(EINVAL, config.where("warm_readahead") + ": expected 0 to 1GiB");
  }
  HFVFS_ASSIGN_OR_RETURN(options.direct_reads, config.get_bool("direct_reads", true));
  HFVFS_ASSIGN_OR_RETURN(std::string mode, config.get_enum("mode", "chunk", {"chunk", "file"}));
  options.whole_file = mode == "file";

  if (options.chunk_size < 64 * kKiB || options.chunk_size > 256 * kMiB ||
      options.chunk_size % (4 * kKiB) != 0) {
    return Err(EINVAL, config.where("chunk_size") +
                           ": expected a multiple of 4KiB between 64KiB and 256MiB");
  }
  if (options.max_size < 4 * options.chunk_size + 2 * kMiB) {
    return Err(EINVAL, config.where("max_size") + ": must hold at least 4 chunks plus 2MiB (" +
                           hfvfs::FormatSize(4 * options.chunk_size + 2 * kMiB) + ")");
  }
  if (options.readahead.max < options.readahead.min) {
    return Err(EINVAL, config.where("readahead_max") + ": must not be below readahead_min");
  }
  if (concurrency < 1 || concurrency > 64) {
    return Err(EINVAL, config.where("fetch_concurrency") + ": expected 1 to 64");
  }
  options.fetch_concurrency = static_cast<int>(concurrency);
  return std::unique_ptr<hfvfs::Layer>(
      std::make_unique<hfvfs::cache::CacheLayer>(args.lower, std::move(options)));
}

const hfvfs::OptionInfo kOptions[] = {
    {"dir", "path", "~/.cache/hfvfs/<mount id>",
     "cache folder; one mount at a time (a second mount of the same folder is refused)"},
    {"max_size", "size", "10GiB", "byte budget of the folder as du counts it; LRU eviction"},
    {"chunk_size", "size", "4MiB", "unit of fetching and caching (64KiB..256MiB)"},
    {"readahead_min", "size", "1MiB", "first read-ahead window of a sequential reader"},
    {"readahead_max", "size", "64MiB", "cap of the window, which doubles per sequential read"},
    {"fetch_concurrency", "int", "8",
     "read-ahead threads; read-ahead memory <= fetch_concurrency x readahead_segment, plus 8 "
     "chunks queued for disk"},
    {"readahead_streams", "int", "4",
     "lower reads in flight for one sequential reader once its window spans that many "
     "segments (1 = one sequential stream)"},
    {"readahead_segment", "size", "8MiB",
     "bytes of one read-ahead request to the lower layer (whole chunks, at least one)"},
    {"warm_readahead", "size", "0",
     "cached chunks read into memory (O_DIRECT) ahead of sequential readers, all together; "
     "0 = only advise the kernel"},
    {"direct_reads", "bool", "true",
     "large reads of cached chunks go from the disk straight into the reply (O_DIRECT), "
     "bypassing the page cache; false = through the page cache, read ahead with WILLNEED"},
    {"mode", "enum(chunk|file)", "chunk", "\"file\": fetch whole files in the background at open"},
};

}  // namespace

HFVFS_PLUGIN(hfvfs::LayerKind::kWrapper, "cache", "0.1.0",
             "on-disk chunk cache with adaptive read-ahead", kOptions, Create)
