// File: s3_client.h
//
// S3 operations over an HttpTransport: SigV4-signed, path or virtual-host addressed, retried.
//
// Retries: transport failures (refused, reset, timed out, cut short), 500/502/503/504, 429,
// 408 and S3's RequestTimeout / SlowDown / InternalError codes (also inside a 200 body, as
// CompleteMultipartUpload and CopyObject may send) are retried with exponential backoff
// (base_delay * 2^n, capped at max_delay), at most `max_retries` times; then EIO. Every attempt
// is signed anew.
//
// Errors: 404 -> ENOENT, 403 -> EACCES, 412 -> ESTALE (the object changed under an If-Match),
// 400 -> EINVAL, 413 -> EFBIG, other statuses -> EIO. Messages say the operation, the key,
// the HTTP status and S3's error code and message; never a header value or a signature.
//
// HFVFS_S3_TRACE=1 in the environment prints one line per request to stderr: method, the
// operation and key, status and milliseconds (never headers or query strings).
//
// Keys are raw bytes (UTF-8); they are percent-encoded here.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "credentials.h"
#include "hfvfs/result.h"
#include "http_transport.h"

namespace hfvfs::s3 {

struct S3Location {
  std::string scheme = "https";
  std::string host;  // "s3.us-east-1.amazonaws.com", "127.0.0.1"
  int port = 0;      // 0 = the scheme's default
  std::string bucket;
  std::string region = "us-east-1";
  bool virtual_host = false;  // <bucket>.<host> instead of <host>/<bucket>
};

// Parses "https://host[:port]" (a path is refused); fills scheme, host, port.
Status ParseEndpoint(std::string_view endpoint, S3Location& location);

// Virtual-host addressing by default for AWS endpoints; path style elsewhere (IP addresses,
// localhost, custom servers), and whenever the bucket name has a '.' (TLS certificates).
bool DefaultVirtualHost(const S3Location& location);

struct RetryOptions {
  int max_retries = 5;
  std::chrono::milliseconds base_delay{100};
  std::chrono::milliseconds max_delay{5000};
};

struct ObjectInfo {
  std::string key;
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  std::string etag;  // with its quotes, as S3 sends it
};

struct ListPage {
  std::vector<ObjectInfo> objects;
  std::vector<std::string> prefixes;  // CommonPrefixes, whole ("dir/sub/")
  std::string next_token;             // empty when this is the last page
};

struct S3Counters {
  std::atomic<int64_t> requests{0};
  std::atomic<int64_t> retries{0};
  std::atomic<int64_t> bytes_received{0};
  std::atomic<int64_t> bytes_sent{0};
  std::atomic<int64_t> uploads_in_flight{0};
  std::atomic<int64_t> segments{0};  // segments of sequential readers started (read_streams > 1)
  std::atomic<int64_t> opens_without_head{0};  // opens served by a HEAD of moments before
};

// "2026-11-30T23:00:00.000Z" -> ns since the epoch; 0 when it cannot be parsed.
int64_t ParseIsoTime(std::string_view text);
// "Mon, 30 Nov 2026 23:00:00 GMT" -> ns since the epoch; 0 when it cannot be parsed.
int64_t ParseHttpTime(std::string_view text);

class S3Client {
 public:
  S3Client(S3Location location, Credentials credentials, std::shared_ptr<HttpTransport> http,
           RetryOptions retry);

  const S3Location& location() const { return location_; }
  S3Counters& counters() const { return counters_; }

  // A HEAD of the object; ENOENT when missing.
  Result<ObjectInfo> head(std::string_view key);
  // One page of ListObjectsV2. `delimiter` may be empty (a flat listing).
  Result<ListPage> list(std::string_view prefix, std::string_view delimiter, std::string_view token,
                        int max_keys = 1000);
  // Bytes [offset, offset + buf.size()) of the object, or fewer at its end; `if_match` (an
  // ETag) makes a changed object ESTALE instead of mixing versions. A body cut short is
  // resumed from where it stopped.
  Result<size_t> get(std::string_view key, uint64_t offset, std::span<std::byte> buf,
                     std::string_view if_match);
  // A GET of bytes [offset, end of the object) whose body the caller pulls: one response for a
  // sequential reader, read straight into its buffers. Retried like every call until the
  // headers are in (a body that breaks later is the caller's to reopen); If-Match as for
  // get(); nullptr when offset is at or past the end. A non-zero `end` asks for bytes
  // [offset, end) only (a segment of a sequential reader).
  Result<std::unique_ptr<HttpStream>> open_get(std::string_view key, uint64_t offset,
                                               std::string_view if_match, uint64_t end = 0);
  // Returns the new ETag.
  Result<std::string> put(std::string_view key, std::span<const std::byte> body);
  Status remove(std::string_view key);
  // Server-side copy of a whole object of at most 5 GiB; returns the new ETag.
  Result<std::string> copy(std::string_view from, std::string_view to);

  Result<std::string> create_multipart(std::string_view key);
  // Returns the part's ETag.
  Result<std::string> upload_part(std::string_view key, std::string_view upload_id, int part,
                                  std::span<const std::byte> body);
  // Copies bytes [first, last] of `from` as a part (for copies above 5 GiB).
  Result<std::string> upload_part_copy(std::string_view key, std::string_view upload_id, int part,
                                       std::string_view from, uint64_t first, uint64_t last);
  // `etags[i]` is part i+1. Returns the object's ETag.
  Result<std::string> complete_multipart(std::string_view key, std::string_view upload_id,
                                         const std::vector<std::string>& etags);
  Status abort_multipart(std::string_view key, std::string_view upload_id);

  // Creates the bucket (tests and tools; the layer never creates buckets).
  Status create_bucket();

  // Checks that the credentials are accepted and the bucket exists: EACCES / ENOENT with a
  // message saying which, at mount time.
  Status check_bucket(std::string_view prefix);

 private:
  struct Call {
    std::string method = "GET";
    std::string key;  // raw; empty = the bucket itself
    std::vector<std::pair<std::string, std::string>> query;
    HeaderList headers;  // extra headers, signed too
    std::span<const std::byte> body;
    bool sign_body = false;  // hash the body (small XML) instead of UNSIGNED-PAYLOAD
    std::span<std::byte> into;
    std::string what;  // "GET key" for messages
    // 200 bodies that may be an <Error> (CompleteMultipartUpload, CopyObject).
    bool error_in_200 = false;
  };
  // One call with retries; the body goes to c.into or the response.
  Result<HttpResponse> call(const Call& c);
  // One call with retries whose 2xx body the caller pulls; for a final non-2xx answer, nullptr
  // and `failed` holds the status, headers and (the start of) the body.
  Result<std::unique_ptr<HttpStream>> open_call(const Call& c, HttpResponse& failed);
  HttpRequest signed_request(const Call& c, const std::string& query) const;
  // Sleeps before attempt number `attempt` (1-based retry): exponential backoff with jitter.
  void backoff(int attempt, std::mt19937& jitter) const;
  void trace(const Call& c, long status, std::chrono::steady_clock::time_point t0) const;
  Error status_error(const Call& c, const HttpResponse& r) const;
  std::string url(std::string_view key, const std::string& query) const;
  std::string host_header() const;

  S3Location location_;
  Credentials credentials_;
  std::shared_ptr<HttpTransport> http_;
  RetryOptions retry_;
  mutable S3Counters counters_;
  bool trace_ = false;  // HFVFS_S3_TRACE=1: one stderr line per request (no secrets)
};

}  // namespace hfvfs::s3
