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

SdkTransport::SdkTransport(HttpClientOptions options) : client_(std::move(options)) {}

Result<HttpResponse> SdkTransport::send(const HttpRequest& request, std::span<std::byte> into) {
  hfvfs::HttpRequest req;
  req.method = request.method;
  req.url = request.url;
  req.headers = request.headers;
  req.body.bytes = request.body;
  req.retry = RetryPolicy{.max_retries = 0};
  HFVFS_ASSIGN_OR_RETURN(std::unique_ptr<HttpStream> stream, client_.open(req));
  HttpResponse response;
  response.status = stream->status();
  for (const auto& [name, value] : stream->headers().items()) {
    std::string lower = name;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    response.headers.emplace_back(std::move(lower), value);
  }
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
