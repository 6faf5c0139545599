// File: http_transport.h
//
// The HTTP exchanges the s3 layer needs, behind a small interface: one request, its body from
// memory, the response body into a string or straight into the caller's buffer. Retries,
// signing and S3 error decoding live above it (s3_client.h), so a transport only moves bytes.
//
// CurlTransport is the libcurl implementation: a pool of easy handles (each keeps its own
// connections alive, so sequential requests reuse them), CURLOPT_RESOLVE entries for names
// glibc does not resolve (*.localhost), a connect timeout and a stall timeout. Messages never
// hold header values or query strings (signatures).
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "hfvfs/result.h"

namespace hfvfs::s3 {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method = "GET";  // "HEAD" receives no body
  std::string url;
  HeaderList headers;  // sent as given (values never logged)
  std::span<const std::byte> body;
};

struct HttpResponse {
  long status = 0;
  HeaderList headers;    // names lower-cased
  std::string body;      // when no buffer was given, or for a non-2xx status
  size_t body_size = 0;  // bytes written into the caller's buffer (2xx with a buffer)
  std::optional<std::string_view> header(std::string_view lower_name) const;
};

class HttpTransport {
 public:
  virtual ~HttpTransport() = default;
  // One exchange. A 2xx body goes into `into` when it is not empty (a larger body is EIO);
  // otherwise into response.body (at most 64 MiB). Transport failures (refused, reset, timed
  // out, cut short) are EIO with a message saying which; HTTP statuses are not errors here.
  virtual Result<HttpResponse> send(const HttpRequest& request, std::span<std::byte> into) = 0;
};

struct CurlOptions {
  std::chrono::milliseconds connect_timeout{10000};
  // A transfer that moves no byte for this long fails (and is retried above).
  std::chrono::milliseconds stall_timeout{30000};
  std::vector<std::string> resolve;  // "host:port:address"
  bool verify_tls = true;
  std::string ca_file;  // empty = the system's
  std::string user_agent = "hfvfs-s3/0.1";
};

class CurlTransport : public HttpTransport {
 public:
  explicit CurlTransport(CurlOptions options);
  ~CurlTransport() override;
  Result<HttpResponse> send(const HttpRequest& request, std::span<std::byte> into) override;

 private:
  void* acquire();
  void release(void* handle);

  CurlOptions options_;
  void* resolve_list_ = nullptr;  // curl_slist*, read-only after construction
  std::mutex mu_;                 // guards idle_
  std::vector<void*> idle_;       // CURL* handles not in use, with their live connections
};

}  // namespace hfvfs::s3
