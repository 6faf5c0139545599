// File: http.h
//
// The SDK's HTTP client, for sources that talk to a remote store (hub, s3, bucket). One
// `HttpClient` per mount: a pool of transfers, each keeping its connections open for the next
// request that takes it (most recently used first), plus a libcurl share of DNS and TLS
// sessions. Connections are reused across threads and files, never used by two at once.
//
// Contracts:
// - Redirects are never followed by the client: a 3xx is returned to the caller, who decides
//   where to go and which headers to send there (so a token is never sent to another host).
// - `send` and `open` retry 408, 429, 500, 502, 503, 504 and connection errors with backoff,
//   honouring `RateLimit: ...;t=N` and `Retry-After` (both capped by RetryPolicy::max_delay), a
//   bounded number of times. Exhausted retries are EIO. Other statuses are returned as they are:
//   the caller maps them with `StatusError` (404 -> ENOENT, 401/403 -> EACCES...).
// - `read_range` fills the caller's buffer completely except at the end of the resource; a body
//   cut short is resumed from where it stopped, and bytes are never returned twice or misplaced.
// - Messages never contain header values or URL query strings (tokens, signatures).
// - Thread-safe: any number of threads may call one client; one `HttpStream` is used by one
//   thread at a time.
//
//   HttpClient http({.user_agent = "hfvfs-hub/0.1"});
//   HttpRequest req{.url = "https://huggingface.co/api/models/gpt2",
//                   .headers = {{"Authorization", "Bearer " + token}}};
//   HFVFS_ASSIGN_OR_RETURN(HttpResponse r, http.send(req));
//   if (r.status != 200) return StatusError(r, "repo info");
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "hfvfs/result.h"

namespace hfvfs {

// Response (or request) headers in arrival order; lookups ignore case.
class HttpHeaders {
 public:
  void add(std::string name, std::string value) {
    items_.emplace_back(std::move(name), std::move(value));
  }
  void clear() { items_.clear(); }
  // The first header named `name`, or nullopt.
  std::optional<std::string_view> get(std::string_view name) const;
  // Every header named `name`, in order (Link may repeat).
  std::vector<std::string_view> get_all(std::string_view name) const;
  const std::vector<std::pair<std::string, std::string>>& items() const { return items_; }

 private:
  std::vector<std::pair<std::string, std::string>> items_;
};

struct RetryPolicy {
  int max_retries = 3;                         // attempts = 1 + max_retries
  std::chrono::milliseconds base_delay{500};   // backoff: base * 2^(retry-1)
  std::chrono::milliseconds max_delay{30000};  // cap for backoff, RateLimit t= and Retry-After
};

struct HttpClientOptions {
  std::string user_agent = "hfvfs";
  std::chrono::milliseconds connect_timeout{10000};
  // A transfer that receives nothing for this long (while being read) is aborted and retried.
  std::chrono::milliseconds stall_timeout{30000};
  RetryPolicy retry;
  // CURLOPT_RESOLVE entries, "host:port:address" (glibc does not resolve *.localhost).
  std::vector<std::string> resolve;
  std::string ca_file;  // empty = the system's
  bool verify_tls = true;
  // Receive buffer per transfer (CURLOPT_BUFFERSIZE); large buffers help 1+ GB/s streams.
  long receive_buffer = 512 * 1024;
};

// The request body: none, bytes owned by the caller (alive until the call returns), or a range
// of a file (read with pread, so a retry resends it from the start).
struct HttpBody {
  std::span<const std::byte> bytes{};
  int fd = -1;  // when >= 0, the body is [file_offset, file_offset + length)
  uint64_t file_offset = 0;
  uint64_t length = 0;

  static HttpBody FromString(std::string_view s) {
    HttpBody b;
    b.bytes = std::as_bytes(std::span<const char>(s.data(), s.size()));
    return b;
  }
  static HttpBody FromFile(int fd, uint64_t offset, uint64_t length) {
    HttpBody b;
    b.fd = fd;
    b.file_offset = offset;
    b.length = length;
    return b;
  }
  bool empty() const { return fd < 0 && bytes.empty(); }
  uint64_t size() const { return fd >= 0 ? length : bytes.size(); }
};

struct HttpRequest {
  std::string method = "GET";  // any method; "HEAD" asks for no body
  std::string url{};
  std::vector<std::pair<std::string, std::string>> headers{};  // values never logged
  HttpBody body{};
  // Sent as "Range: bytes=first-[last]" when set; last = nullopt means to the end.
  std::optional<std::pair<uint64_t, std::optional<uint64_t>>> range{};
  // Per-request retry override (nullopt = the client's).
  std::optional<RetryPolicy> retry{};
};

struct HttpResponse {
  long status = 0;
  HttpHeaders headers;
  std::string body;      // send(): the body (bounded by max_body); send_into(): empty
  size_t body_size = 0;  // bytes of body received
  int attempts = 0;      // 1 + retries used
};

// Counters of one client, for `hfvfs status`.
struct HttpCounters {
  std::atomic<int64_t> requests{0};        // HTTP exchanges started (retries included)
  std::atomic<int64_t> retries{0};         // of which retries
  std::atomic<int64_t> bytes_received{0};  // body bytes
  std::atomic<int64_t> bytes_sent{0};      // request body bytes
  std::atomic<int64_t> errors{0};          // transport errors and retryable statuses seen
  std::atomic<int64_t> resumed{0};         // bodies continued after being cut short
  std::atomic<int64_t> connects{0};        // new connections opened (the rest were reused)
};

class HttpClient;

// One response being received: headers are known, the body is pulled by read(). Between reads
// the transfer is paused, so an unread body costs a socket, not memory. Destroying it aborts
// the transfer (the connection is then closed, not reused, unless the body was complete).
class HttpStream {
 public:
  virtual ~HttpStream() = default;
  virtual long status() const = 0;
  virtual const HttpHeaders& headers() const = 0;
  // Reads up to buf.size() body bytes; fewer only at the end of the body (0 = end). A transport
  // error or a body shorter than its Content-Length is EIO (the stream is then unusable;
  // `received()` says how far it got, for resuming).
  virtual Result<size_t> read(std::span<std::byte> buf) = 0;
  // Body bytes delivered to read() so far.
  virtual uint64_t received() const = 0;
  // Reads the rest of the body into a string, at most `limit` bytes (more are discarded).
  Result<std::string> read_all(size_t limit = 1 << 20);
};

class HttpClient {
 public:
  explicit HttpClient(HttpClientOptions options = {});
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // One exchange with retries; the body is collected into response.body (at most `max_body`
  // bytes; more is EIO, since a truncated document must not be parsed).
  Result<HttpResponse> send(const HttpRequest& request, size_t max_body = 64 << 20);
  // Same, but the body goes into `buf` (response.body_size bytes); a larger body is EIO.
  Result<HttpResponse> send_into(const HttpRequest& request, std::span<std::byte> buf);

  // Starts an exchange and returns once the final headers are in, retrying retryable statuses
  // and connection errors (not once the body has started). The caller pulls the body.
  Result<std::unique_ptr<HttpStream>> open(const HttpRequest& request);

  // Reads [offset, offset + buf.size()) of the resource with one ranged GET (request.range is
  // replaced), resuming a cut-short body from where it stopped. Returns the bytes read: fewer
  // than buf.size() only at the end of the resource (0 when offset is at or past it).
  // Statuses other than 200/206/416 are errors from StatusError.
  Result<size_t> read_range(const HttpRequest& request, uint64_t offset, std::span<std::byte> buf);

  const HttpCounters& counters() const { return counters_; }
  HttpCounters& counters() { return counters_; }
  const HttpClientOptions& options() const { return options_; }

  // Internals shared with the stream implementation.
  struct Impl;

 private:
  HttpClientOptions options_;
  HttpCounters counters_;
  std::unique_ptr<Impl> impl_;
};

// True for the statuses the client retries: 408, 429, 500, 502, 503, 504.
bool IsRetryableStatus(long status);

// The wait before retry number `retry` (1-based): RateLimit `t=` or Retry-After when present
// (capped at policy.max_delay), else base * 2^(retry-1) capped at max_delay.
std::chrono::milliseconds RetryDelay(const HttpHeaders& headers, int retry,
                                     const RetryPolicy& policy);

// errno for an HTTP status: 404/410 -> ENOENT, 401/403 -> EACCES, 400 -> EINVAL,
// 409/412 -> EEXIST... 413/507 -> ENOSPC, 416 -> EINVAL, 429/5xx and the rest -> EIO.
int ErrnoForStatus(long status);

// An Error for a non-success response: "<what>: HTTP 404 (EntryNotFound: ...)" with the
// X-Error-Code / X-Error-Message headers or the start of the body; no secrets.
Error StatusError(const HttpResponse& response, std::string_view what);
Error StatusError(long status, const HttpHeaders& headers, std::string_view body,
                  std::string_view what);

// A URL for messages: scheme, host, port and path; the query and userinfo are dropped.
std::string RedactUrl(std::string_view url);

// `location` (absolute or relative, from a Location header) resolved against `base`.
Result<std::string> ResolveUrl(std::string_view base, std::string_view location);

// Percent-encodes every byte except unreserved characters (A-Z a-z 0-9 - . _ ~) and those in
// `keep` (e.g. "/" for paths).
std::string PercentEncode(std::string_view text, std::string_view keep = "");

// The URL of the `rel="next"` entry of Link headers, or empty.
std::string LinkNext(const HttpHeaders& headers);

// The "scheme://host[:port]" of a URL, lower-cased; empty when it cannot be parsed.
std::string UrlOrigin(std::string_view url);

}  // namespace hfvfs
