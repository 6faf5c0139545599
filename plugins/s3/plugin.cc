// The s3 plugin: options from the spec, credentials, the client and the layer.
#include <spdlog/spdlog.h>

#include "credentials.h"
#include "hfvfs/path.h"
#include "hfvfs/plugin.h"
#include "s3_client.h"
#include "s3_layer.h"

namespace {

using hfvfs::Err;
using hfvfs::Result;

Result<std::vector<std::string>> SplitList(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    std::string item = text.substr(start, comma - start);
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    if (!item.empty()) out.push_back(item);
    start = comma + 1;
  }
  return out;
}

Result<std::unique_ptr<hfvfs::Layer>> Create(hfvfs::LayerArgs& args) {
  using namespace hfvfs::s3;
  hfvfs::ConfigView& cfg = args.config;
  S3Location loc;
  HFVFS_ASSIGN_OR_RETURN(loc.bucket, cfg.require_string("bucket"));
  if (loc.bucket.empty() || loc.bucket.find('/') != std::string::npos) {
    return Err(EINVAL, cfg.where("bucket") +
                           ": a bucket name, without '/' (put folders in "
                           "`prefix`)");
  }
  HFVFS_ASSIGN_OR_RETURN(loc.region, cfg.get_string("region", "us-east-1"));
  HFVFS_ASSIGN_OR_RETURN(std::string endpoint,
                         cfg.get_string("endpoint", "https://s3." + loc.region + ".amazonaws.com"));
  if (hfvfs::Status s = ParseEndpoint(endpoint, loc); !s) {
    return s.error().With(cfg.where("endpoint"));
  }
  HFVFS_ASSIGN_OR_RETURN(std::string addressing,
                         cfg.get_enum("addressing", "auto", {"auto", "path", "virtual"}));
  loc.virtual_host = addressing == "virtual" || (addressing == "auto" && DefaultVirtualHost(loc));

  S3LayerOptions options;
  HFVFS_ASSIGN_OR_RETURN(std::string prefix, cfg.get_string("prefix", ""));
  while (!prefix.empty() && prefix.front() == '/') prefix.erase(0, 1);
  if (!prefix.empty()) {
    Result<std::string> norm = hfvfs::NormalizePath(prefix);
    if (!norm) return norm.error().With(cfg.where("prefix"));
    options.prefix = *norm + "/";
  }
  HFVFS_ASSIGN_OR_RETURN(options.part_size, cfg.get_size("part_size", 8ull << 20));
  if (options.part_size < (5ull << 20) || options.part_size > (5ull << 30)) {
    return Err(EINVAL, cfg.where("part_size") + ": must be between 5MiB and 5GiB (S3's limits)");
  }
  HFVFS_ASSIGN_OR_RETURN(int64_t concurrency, cfg.get_int("upload_concurrency", 4));
  if (concurrency < 1 || concurrency > 64) {
    return Err(EINVAL, cfg.where("upload_concurrency") + ": between 1 and 64");
  }
  options.upload_concurrency = static_cast<int>(concurrency);
  HFVFS_ASSIGN_OR_RETURN(options.seek_window, cfg.get_size("seek_window", 8ull << 20));
  if (options.seek_window > (256ull << 20)) {
    return Err(EINVAL, cfg.where("seek_window") + ": at most 256MiB");
  }
  HFVFS_ASSIGN_OR_RETURN(int64_t streams, cfg.get_int("read_streams", options.read_streams));
  if (streams < 1 || streams > 16) return Err(EINVAL, cfg.where("read_streams") + ": 1 to 16");
  options.read_streams = static_cast<int>(streams);
  HFVFS_ASSIGN_OR_RETURN(options.stream_segment,
                         cfg.get_size("stream_segment", options.stream_segment));
  if (options.stream_segment < (1ull << 20) || options.stream_segment > (64ull << 20)) {
    return Err(EINVAL, cfg.where("stream_segment") + ": between 1MiB and 64MiB");
  }
  HFVFS_ASSIGN_OR_RETURN(options.read_memory, cfg.get_size("read_memory", options.read_memory));

  RetryOptions retry;
  HFVFS_ASSIGN_OR_RETURN(int64_t retries, cfg.get_int("retries", 5));
  if (retries < 0 || retries > 20) return Err(EINVAL, cfg.where("retries") + ": 0 to 20");
  retry.max_retries = static_cast<int>(retries);

  hfvfs::HttpClientOptions curl;
  curl.user_agent = "hfvfs-s3/0.1";
  HFVFS_ASSIGN_OR_RETURN(curl.connect_timeout,
                         cfg.get_duration("connect_timeout", std::chrono::seconds(10)));
  HFVFS_ASSIGN_OR_RETURN(curl.stall_timeout,
                         cfg.get_duration("stall_timeout", std::chrono::seconds(30)));
  HFVFS_ASSIGN_OR_RETURN(curl.verify_tls, cfg.get_bool("verify_tls", true));
  HFVFS_ASSIGN_OR_RETURN(curl.ca_file, cfg.get_path("ca_file", ""));
  HFVFS_ASSIGN_OR_RETURN(std::string resolve, cfg.get_string("resolve", ""));
  HFVFS_ASSIGN_OR_RETURN(curl.resolve, SplitList(resolve));

  CredentialOptions cred_options;
  HFVFS_ASSIGN_OR_RETURN(cred_options.credentials_file, cfg.get_path("credentials_file", ""));
  HFVFS_ASSIGN_OR_RETURN(cred_options.profile, cfg.get_string("profile", ""));
  Result<Credentials> creds = ResolveCredentials(cred_options);
  if (!creds) return creds.error().With(cfg.where());
  spdlog::info("s3: bucket {} at {}://{}{} ({} addressing), credentials from {}", loc.bucket,
               loc.scheme, loc.host, loc.port ? ":" + std::to_string(loc.port) : "",
               loc.virtual_host ? "virtual-host" : "path", creds->source);

  auto client = std::make_shared<S3Client>(std::move(loc), std::move(*creds),
                                           std::make_shared<SdkTransport>(curl), retry);
  return std::unique_ptr<hfvfs::Layer>(new S3Layer(std::move(client), std::move(options)));
}

const hfvfs::OptionInfo kOptions[] = {
    {"bucket", "string", "", "the bucket (required)"},
    {"endpoint", "string", "https://s3.<region>.amazonaws.com",
     "scheme://host[:port] of the S3 service (AWS, B2, R2, MinIO...)"},
    {"region", "string", "us-east-1", "the region used in signatures"},
    {"prefix", "string", "", "mount only the keys under this folder"},
    {"addressing", "enum(auto|path|virtual)", "auto",
     "virtual-host style for *.amazonaws.com, path style elsewhere"},
    {"profile", "string", "", "profile of the credentials file (then the file wins over env)"},
    {"credentials_file", "path", "", "AWS-style credentials file (default ~/.aws/credentials)"},
    {"part_size", "size", "8MiB", "multipart part size (5MiB..5GiB)"},
    {"upload_concurrency", "int", "4", "parts uploaded at once per file"},
    {"seek_window", "size", "8MiB",
     "a read this far ahead of a sequential reader's stream skips forward on it"},
    {"read_streams", "int", "4",
     "ranged GETs in flight at once ahead of a sequential reader (1 = one streaming GET)"},
    {"stream_segment", "size", "8MiB",
     "bytes per GET of a sequential reader; memory (read_streams+1) x this per reading handle"},
    {"read_memory", "size", "256MiB",
     "most segment buffers all sequential readers hold at once (each always gets one)"},
    {"retries", "int", "5", "retries of a failed request (backoff 100ms doubling to 5s)"},
    {"connect_timeout", "duration", "10s", "TCP/TLS connect timeout"},
    {"stall_timeout", "duration", "30s", "a transfer moving no byte this long is retried"},
    {"verify_tls", "bool", "true", "verify the server's TLS certificate"},
    {"ca_file", "path", "", "CA bundle instead of the system's"},
    {"resolve", "string", "", "host:port:address[,...] overrides (curl --resolve)"},
};

}  // namespace

HFVFS_PLUGIN(hfvfs::LayerKind::kSource, "s3", "0.1.0",
             "an S3-compatible bucket (AWS, B2, R2, MinIO...), read-write", kOptions, Create)
