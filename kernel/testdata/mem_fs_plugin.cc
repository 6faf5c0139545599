// The `memfs` test plugin: MemFs (mem_fs.h) as a mountable source, for the FUSE end-to-end
// tests. Built into the tests' own plugin folder, never installed.
#include "hfvfs/plugin.h"
#include "mem_fs.h"

namespace {

hfvfs::Result<std::unique_ptr<hfvfs::Layer>> Create(hfvfs::LayerArgs& args) {
  HFVFS_ASSIGN_OR_RETURN(auto slow_read,
                         args.config.get_duration("slow_read", std::chrono::milliseconds(0)));
  HFVFS_ASSIGN_OR_RETURN(std::string hello, args.config.get_string("hello", ""));
  HFVFS_ASSIGN_OR_RETURN(auto shutdown_delay,
                         args.config.get_duration("shutdown_delay", std::chrono::milliseconds(0)));
  auto fs = std::make_unique<hfvfs::testing::MemFs>(slow_read);
  fs->shutdown_delay = shutdown_delay;
  HFVFS_ASSIGN_OR_RETURN(fs->start_delay,
                         args.config.get_duration("start_delay", std::chrono::milliseconds(0)));
  HFVFS_ASSIGN_OR_RETURN(bool invalidate, args.config.get_bool("invalidate_on_write", false));
  if (invalidate) {
    hfvfs::Host* host = &args.host;  // outlives every layer
    fs->on_change = [host](std::string_view path) {
      host->invalidate(path, hfvfs::Invalidation::kContent);
    };
  }
  if (!hello.empty()) fs->Put("hello.txt", hello);
  return std::unique_ptr<hfvfs::Layer>(std::move(fs));
}

const hfvfs::OptionInfo kOptions[] = {
    {"slow_read", "duration", "0", "reads of files named slow* sleep this long first"},
    {"start_delay", "duration", "0", "start() sleeps this long"},
    {"shutdown_delay", "duration", "0", "shutdown() sleeps this long, ignoring its deadline"},
    {"invalidate_on_write", "bool", "false",
     "every write calls Host::invalidate(kContent) from inside the request"},
    {"hello", "string", "", "content of hello.txt at the start (none when empty)"},
};

}  // namespace

HFVFS_PLUGIN(hfvfs::LayerKind::kSource, "memfs", "0.0.1", "an in-memory read-write tree (tests)",
             kOptions, Create)
