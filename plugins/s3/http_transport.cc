#include "http_transport.h"

#include <cctype>

#include "hfvfs/layer.h"

namespace hfvfs::s3 {

std::optional<std::string_view> HttpResponse::header(std::string_view lower_name) const {
  for (const auto& [name, value] : headers) {
    if (name == lower_name) return std::string_view(value);
  }
  return std::nullopt;
}

HeaderList LowerCaseHeaders(const HttpHeaders& headers) {
  HeaderList out;
  out.reserve(headers.items().size());
  for (const auto& [name, value] : headers.items()) {
    std::string lower = name;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out.emplace_back(std::move(lower), value);
  }
  return out;
}

SdkTransport::SdkTransport(HttpClientOptions options) : client_(std::move(options)) {}

Result<std::unique_ptr<HttpStream>> SdkTransport::open(const HttpRequest& request) {
  hfvfs::HttpRequest req;
  req.method = request.method;
  req.url = request.url;
  req.headers = request.headers;
  req.body.bytes = request.body;
  req.retry = RetryPolicy{.max_retries = 0};  // S3Client retries, signing each attempt anew
  return client_.open(req);
}

Result<HttpResponse> SdkTransport::send(const HttpRequest& request, std::span<std::byte> into) {
  HFVFS_ASSIGN_OR_RETURN(std::unique_ptr<HttpStream> stream, open(request));
  HttpResponse response;
  response.status = stream->status();
  response.headers = LowerCaseHeaders(stream->headers());
  if (request.method == "HEAD") return response;
  bool success = response.status >= 200 && response.status < 300;
  if (success && !into.empty()) {
    HFVFS_ASSIGN_OR_RETURN(size_t n, ReadFully(into, [&](size_t, std::span<std::byte> rest) {
                             return stream->read(rest);
                           }));
    if (n == into.size()) {
      std::byte extra[1];
      HFVFS_ASSIGN_OR_RETURN(size_t more, stream->read(extra));
      if (more != 0) {
        return Err(EIO, "s3: " + request.method + " " + RedactUrl(request.url) +
                            ": response body larger than expected");
      }
    }
    response.body_size = n;
    return response;
  }
  HFVFS_ASSIGN_OR_RETURN(response.body, stream->read_all(64 << 20));
  return response;
}

}  // namespace hfvfs::s3
