// The layer conformance suite (tests/conformance) over the s3 source, against the loopback
// Swift + s3api server. Each test gets a bucket of its own, seeded with plain PUTs (not through
// the layer); the backing store is read and written with a separate S3 client.
#include <atomic>
#include <memory>

#include "conformance.h"
#include "s3_client.h"
#include "s3_layer.h"
#include "s3_test_server.h"

namespace hfvfs::conformance {
namespace {

using hfvfs::testing::S3TestServer;

std::shared_ptr<s3::S3Client> Client(const S3TestServer& server, const std::string& bucket) {
  s3::S3Location loc;
  (void)s3::ParseEndpoint(server.endpoint, loc);
  loc.bucket = bucket;
  loc.region = server.region;
  s3::Credentials creds{server.access_key, server.secret_key, "", "test"};
  return std::make_shared<s3::S3Client>(
      loc, creds, std::make_shared<s3::SdkTransport>(HttpClientOptions{}), s3::RetryOptions{});
}

std::span<const std::byte> Bytes(std::string_view s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

StackConfig S3Stack() {
  StackConfig config;
  config.name = "S3";
  config.cannot = {Feature::kRandomWrite,    Feature::kAtomicRename, Feature::kSymlinks,
                   Feature::kSetMode,        Feature::kSetMtime,     Feature::kStatfs,
                   Feature::kReadAfterRemove};
  config.make = [](const SeedTree& seed) -> Result<StackUnderTest> {
    const S3TestServer& server = S3TestServer::Get();
    if (!server.ok()) return Err(EIO, server.error);
    static std::atomic<int> counter{0};
    std::string bucket = S3TestServer::UniqueBucket("conf-" + std::to_string(counter++));
    auto store = Client(server, bucket);
    HFVFS_RETURN_IF_ERROR(store->create_bucket());
    for (const SeedEntry& e : seed.entries()) {
      if (e.type == FileType::kDirectory) {
        HFVFS_RETURN_IF_ERROR(store->put(e.path + "/", {}));
      } else if (e.type == FileType::kFile) {
        HFVFS_RETURN_IF_ERROR(store->put(e.path, Bytes(e.content)));
      } else {
        return Err(EINVAL, "s3 cannot hold the symlink " + e.path);
      }
    }
    s3::S3LayerOptions options;
    options.part_size = 5 << 20;
    options.list_page_size = 7;  // the 40-file folder spans several pages
    StackUnderTest stack;
    stack.top = std::make_shared<s3::S3Layer>(Client(server, bucket), options);
    stack.backing.read = [store](std::string_view path) -> Result<std::string> {
      HFVFS_ASSIGN_OR_RETURN(s3::ObjectInfo info, store->head(path));
      std::string out(info.size, '\0');
      HFVFS_ASSIGN_OR_RETURN(size_t n,
                             store->get(path, 0, std::as_writable_bytes(std::span<char>(out)), ""));
      out.resize(n);
      return out;
    };
    stack.backing.write = [store](std::string_view path, std::string_view content) -> Status {
      HFVFS_ASSIGN_OR_RETURN(std::string etag, store->put(path, Bytes(content)));
      (void)etag;
      return Ok();
    };
    stack.keep_alive = store;
    HFVFS_RETURN_IF_ERROR(stack.top->start());
    return stack;
  };
  return config;
}

INSTANTIATE_TEST_SUITE_P(S3, LayerConformance, ::testing::Values(S3Stack()), ConformanceName);

}  // namespace
}  // namespace hfvfs::conformance
