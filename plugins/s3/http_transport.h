// File: http_transport.h
//
// The HTTP exchanges the s3 layer needs, behind a small interface: one request, its body from
// memory, the response body into a string or straight into the caller's buffer, or pulled by
// the caller through a stream (a sequential reader's GET). Retries,
// signing and S3 error decoding live above it (s3_client.h), so a transport only moves bytes.
//
// SdkTransport is the implementation over the SDK's HttpClient. Messages never hold header
// values or query strings (signatures).
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "hfvfs/http.h"
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
  // Starts one exchange and returns once its final headers are in; the caller pulls the body
  // (of any status). Transport failures before the headers are EIO, as for send().
  virtual Result<std::unique_ptr<HttpStream>> open(const HttpRequest& request) = 0;
};

// Headers with lower-cased names, in arrival order.
HeaderList LowerCaseHeaders(const HttpHeaders& headers);

// The SDK's HTTP client (hfvfs/http.h) as the transport: one shared libcurl connection pool
// for the whole mount. Its own retries are turned off: S3Client retries, re-signing each
// attempt and recognising S3's error codes.
class SdkTransport : public HttpTransport {
 public:
  explicit SdkTransport(HttpClientOptions options);
  Result<HttpResponse> send(const HttpRequest& request, std::span<std::byte> into) override;
  Result<std::unique_ptr<HttpStream>> open(const HttpRequest& request) override;
  const HttpClient& client() const { return client_; }

 private:
  HttpClient client_;
};

}  // namespace hfvfs::s3
