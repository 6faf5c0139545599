// The conformance suite over `local` + `cache`: everything local can do, the stack can do, and
// the cache must never serve stale bytes after a change made through it or in the folder.
#include <memory>

#include "cache_layer.h"
#include "conformance.h"
#include "local_layer.h"

namespace hfvfs::conformance {
namespace {

struct CacheDirs {
  TempDir source;
  TempDir cache;
};

StackConfig CacheOverLocal(std::string name, uint64_t chunk_size, bool whole_file) {
  StackConfig config;
  config.name = std::move(name);
  config.cannot = {};
  config.make = [chunk_size, whole_file](const SeedTree& seed) -> Result<StackUnderTest> {
    auto dirs = std::make_shared<CacheDirs>();
    HFVFS_RETURN_IF_ERROR(seed.WriteToDir(dirs->source.path()));
    HFVFS_ASSIGN_OR_RETURN(auto local, local::LocalLayer::Open(dirs->source.path(), {}));
    cache::CacheOptions options;
    options.dir = dirs->cache.path();
    options.max_size = 64 << 20;
    options.chunk_size = chunk_size;
    options.fetch_concurrency = 2;
    options.whole_file = whole_file;
    StackUnderTest stack;
    stack.top = std::make_shared<cache::CacheLayer>(std::shared_ptr<Layer>(std::move(local)),
                                                    std::move(options));
    stack.backing = DirBacking(dirs->source.path());
    stack.keep_alive = dirs;
    HFVFS_RETURN_IF_ERROR(stack.top->start());
    return stack;
  };
  return config;
}

INSTANTIATE_TEST_SUITE_P(Cache, LayerConformance,
                         ::testing::Values(CacheOverLocal("CacheOverLocal", 1 << 20, false),
                                           // small chunks: reads cross many chunk boundaries
                                           CacheOverLocal("CacheSmallChunks", 64 << 10, false),
                                           CacheOverLocal("CacheWholeFile", 256 << 10, true)),
                         ConformanceName);

}  // namespace
}  // namespace hfvfs::conformance
