#include "http_transport.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <cstring>

namespace hfvfs::s3 {

std::optional<std::string_view> HttpResponse::header(std::string_view lower_name) const {
  for (const auto& [name, value] : headers) {
    if (name == lower_name) return std::string_view(value);
  }
  return std::nullopt;
}

namespace {

constexpr size_t kMaxStringBody = 64 << 20;

struct Exchange {
  const HttpRequest* request;
  size_t sent = 0;
  HttpResponse* response;
  std::span<std::byte> into;
  bool overflow = false;
  bool status_known = false;
  long status = 0;
  CURL* curl;
};

size_t OnHeader(char* data, size_t size, size_t count, void* user) {
  auto* ex = static_cast<Exchange*>(user);
  std::string_view line(data, size * count);
  if (line.rfind("HTTP/", 0) == 0) {
    // A new status line (after 100 Continue, say): forget headers of the previous one.
    ex->response->headers.clear();
    ex->status_known = false;
    return line.size();
  }
  size_t colon = line.find(':');
  if (colon != std::string_view::npos) {
    std::string name(line.substr(0, colon));
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) {
      value.remove_prefix(1);
    }
    while (!value.empty() &&
           (value.back() == '\r' || value.back() == '\n' || value.back() == ' ')) {
      value.remove_suffix(1);
    }
    ex->response->headers.emplace_back(std::move(name), std::string(value));
  }
  return line.size();
}

size_t OnBody(char* data, size_t size, size_t count, void* user) {
  auto* ex = static_cast<Exchange*>(user);
  size_t n = size * count;
  if (!ex->status_known) {
    curl_easy_getinfo(ex->curl, CURLINFO_RESPONSE_CODE, &ex->status);
    ex->status_known = true;
  }
  bool to_buffer = !ex->into.empty() && ex->status >= 200 && ex->status < 300;
  if (to_buffer) {
    size_t& at = ex->response->body_size;
    if (at + n > ex->into.size()) {
      ex->overflow = true;
      return 0;  // aborts the transfer
    }
    std::memcpy(ex->into.data() + at, data, n);
    at += n;
    return n;
  }
  if (ex->response->body.size() + n > kMaxStringBody) {
    ex->overflow = true;
    return 0;
  }
  ex->response->body.append(data, n);
  return n;
}

size_t OnRead(char* buffer, size_t size, size_t count, void* user) {
  auto* ex = static_cast<Exchange*>(user);
  size_t n = std::min(size * count, ex->request->body.size() - ex->sent);
  std::memcpy(buffer, ex->request->body.data() + ex->sent, n);
  ex->sent += n;
  return n;
}

int OnSeek(void* user, curl_off_t offset, int origin) {
  auto* ex = static_cast<Exchange*>(user);
  if (origin != SEEK_SET || offset < 0 || static_cast<size_t>(offset) > ex->request->body.size()) {
    return CURL_SEEKFUNC_FAIL;
  }
  ex->sent = static_cast<size_t>(offset);
  return CURL_SEEKFUNC_OK;
}

// The URL without its query, for messages.
std::string_view UrlForMessage(std::string_view url) { return url.substr(0, url.find('?')); }

}  // namespace

CurlTransport::CurlTransport(CurlOptions options) : options_(std::move(options)) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  curl_slist* list = nullptr;
  for (const std::string& r : options_.resolve) list = curl_slist_append(list, r.c_str());
  resolve_list_ = list;
}

CurlTransport::~CurlTransport() {
  for (void* h : idle_) curl_easy_cleanup(static_cast<CURL*>(h));
  curl_slist_free_all(static_cast<curl_slist*>(resolve_list_));
}

void* CurlTransport::acquire() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!idle_.empty()) {
      void* h = idle_.back();
      idle_.pop_back();
      return h;
    }
  }
  return curl_easy_init();
}

void CurlTransport::release(void* handle) {
  std::lock_guard<std::mutex> lock(mu_);
  idle_.push_back(handle);
}

Result<HttpResponse> CurlTransport::send(const HttpRequest& request, std::span<std::byte> into) {
  CURL* curl = static_cast<CURL*>(acquire());
  if (!curl) return Err(ENOMEM, "s3: curl_easy_init failed");
  curl_easy_reset(curl);
  HttpResponse response;
  Exchange ex{&request, 0, &response, into, false, false, 0, curl};

  curl_slist* headers = nullptr;
  for (const auto& [name, value] : request.headers) {
    headers = curl_slist_append(headers, (name + ": " + value).c_str());
  }
  // No "Expect: 100-continue" round trip before bodies; no default Content-Type on uploads.
  headers = curl_slist_append(headers, "Expect:");
  headers = curl_slist_append(headers, "Content-Type:");

  curl_easy_setopt(curl, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, options_.user_agent.c_str());
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(options_.connect_timeout.count()));
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME,
                   std::max(1L, static_cast<long>(options_.stall_timeout.count() / 1000)));
  curl_easy_setopt(curl, CURLOPT_BUFFERSIZE, 512L * 1024);
  curl_easy_setopt(curl, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &ex);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &ex);
  if (resolve_list_) curl_easy_setopt(curl, CURLOPT_RESOLVE, resolve_list_);
  if (!options_.verify_tls) {
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (!options_.ca_file.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, options_.ca_file.c_str());

  if (request.method == "HEAD") {
    curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  } else if (request.method == "PUT" || request.method == "POST") {
    if (request.method == "PUT") {
      curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE,
                       static_cast<curl_off_t>(request.body.size()));
    } else {
      curl_easy_setopt(curl, CURLOPT_POST, 1L);
      curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE,
                       static_cast<curl_off_t>(request.body.size()));
    }
    curl_easy_setopt(curl, CURLOPT_READFUNCTION, OnRead);
    curl_easy_setopt(curl, CURLOPT_READDATA, &ex);
    curl_easy_setopt(curl, CURLOPT_SEEKFUNCTION, OnSeek);
    curl_easy_setopt(curl, CURLOPT_SEEKDATA, &ex);
  } else if (request.method != "GET") {
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  }

  CURLcode rc = curl_easy_perform(curl);
  curl_slist_free_all(headers);
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  if (rc != CURLE_OK) {
    // A failed handle may hold a broken connection: drop it rather than pool it.
    curl_easy_cleanup(curl);
    if (ex.overflow) {
      return Err(EIO, "s3: " + request.method + " " + std::string(UrlForMessage(request.url)) +
                          ": response body larger than expected");
    }
    return Err(EIO, "s3: " + request.method + " " + std::string(UrlForMessage(request.url)) + ": " +
                        curl_easy_strerror(rc));
  }
  release(curl);
  response.status = status;
  return response;
}

}  // namespace hfvfs::s3
