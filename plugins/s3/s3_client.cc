#include "s3_client.h"

#include <time.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <thread>

#include "sigv4.h"
#include "xml.h"

namespace hfvfs::s3 {

Status ParseEndpoint(std::string_view endpoint, S3Location& location) {
  size_t sep = endpoint.find("://");
  if (sep == std::string_view::npos) {
    return Err(EINVAL, "endpoint '" + std::string(endpoint) +
                           "' needs a scheme: https://host[:port] or http://host[:port]");
  }
  std::string scheme(endpoint.substr(0, sep));
  for (char& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (scheme != "http" && scheme != "https") {
    return Err(EINVAL, "endpoint '" + std::string(endpoint) + "': scheme must be http or https");
  }
  std::string_view rest = endpoint.substr(sep + 3);
  while (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.find('/') != std::string_view::npos || rest.find('?') != std::string_view::npos ||
      rest.find('@') != std::string_view::npos) {
    return Err(EINVAL, "endpoint '" + std::string(endpoint) +
                           "' must be scheme://host[:port] only (put the bucket in `bucket` "
                           "and a folder in `prefix`)");
  }
  std::string_view host = rest;
  int port = 0;
  size_t colon = rest.rfind(':');
  if (colon != std::string_view::npos && rest.find(']') == std::string_view::npos) {
    host = rest.substr(0, colon);
    std::string digits(rest.substr(colon + 1));
    char* end = nullptr;
    long p = std::strtol(digits.c_str(), &end, 10);
    if (digits.empty() || *end || p <= 0 || p > 65535) {
      return Err(EINVAL, "endpoint '" + std::string(endpoint) + "': bad port");
    }
    port = static_cast<int>(p);
  }
  if (host.empty()) return Err(EINVAL, "endpoint '" + std::string(endpoint) + "': no host");
  location.scheme = scheme;
  location.host = std::string(host);
  for (char& c : location.host) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  location.port = port;
  return Ok();
}

bool DefaultVirtualHost(const S3Location& location) {
  if (location.bucket.find('.') != std::string::npos) return false;
  const std::string& h = location.host;
  const std::string aws = ".amazonaws.com";
  return h.size() > aws.size() && h.compare(h.size() - aws.size(), aws.size(), aws) == 0;
}

int64_t ParseIsoTime(std::string_view text) {
  std::tm tm{};
  std::string s(text);
  const char* end = strptime(s.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (!end) return 0;
  int64_t ns = 0;
  if (*end == '.') {
    ++end;
    int64_t scale = 100'000'000;
    while (std::isdigit(static_cast<unsigned char>(*end))) {
      ns += (*end - '0') * scale;
      scale /= 10;
      ++end;
    }
  }
  return static_cast<int64_t>(timegm(&tm)) * 1'000'000'000 + ns;
}

int64_t ParseHttpTime(std::string_view text) {
  std::tm tm{};
  std::string s(text);
  if (!strptime(s.c_str(), "%a, %d %b %Y %H:%M:%S", &tm)) return 0;
  return static_cast<int64_t>(timegm(&tm)) * 1'000'000'000;
}

S3Client::S3Client(S3Location location, Credentials credentials,
                   std::shared_ptr<HttpTransport> http, RetryOptions retry)
    : location_(std::move(location)),
      credentials_(std::move(credentials)),
      http_(std::move(http)),
      retry_(retry) {
  const char* trace = std::getenv("HFVFS_S3_TRACE");
  trace_ = trace && *trace && std::string_view(trace) != "0";
}

std::string S3Client::host_header() const {
  std::string host =
      location_.virtual_host ? location_.bucket + "." + location_.host : location_.host;
  if (location_.port) host += ":" + std::to_string(location_.port);
  return host;
}

static std::string CanonicalPath(const S3Location& loc, std::string_view key) {
  std::string path = "/";
  if (!loc.virtual_host) {
    path += UriEncode(loc.bucket, true);
    if (!key.empty()) path += "/";
  }
  path += UriEncode(key, false);
  return path;
}

std::string S3Client::url(std::string_view key, const std::string& query) const {
  std::string u = location_.scheme + "://" + host_header() + CanonicalPath(location_, key);
  if (!query.empty()) u += "?" + query;
  return u;
}

namespace {

struct S3ErrorDoc {
  std::string code;
  std::string message;
};

std::optional<S3ErrorDoc> ParseErrorDoc(std::string_view body) {
  if (body.find("<Error") == std::string_view::npos) return std::nullopt;
  Result<XmlNode> doc = ParseXml(body);
  if (!doc || doc->name != "Error") return std::nullopt;
  return S3ErrorDoc{doc->child_text("Code"), doc->child_text("Message")};
}

bool RetryableStatus(long status) {
  return status == 408 || status == 429 || status == 500 || status == 502 || status == 503 ||
         status == 504;
}

bool RetryableCode(std::string_view code) {
  return code == "RequestTimeout" || code == "SlowDown" || code == "InternalError" ||
         code == "ServiceUnavailable" || code == "RequestTimeTooSkewed";
}

int ErrnoFor(long status) {
  switch (status) {
    case 404:
      return ENOENT;
    case 401:
    case 403:
      return EACCES;
    case 412:
      return ESTALE;
    case 400:
      return EINVAL;
    case 413:
      return EFBIG;
    case 409:
      return EEXIST;
    default:
      return EIO;
  }
}

}  // namespace

Error S3Client::status_error(const Call& c, const HttpResponse& r) const {
  std::string msg = "s3: " + c.what + ": HTTP " + std::to_string(r.status);
  if (auto doc = ParseErrorDoc(r.body)) {
    msg += " " + doc->code;
    if (!doc->message.empty()) msg += ": " + doc->message;
  }
  return Err(ErrnoFor(r.status), msg);
}

void S3Client::backoff(int attempt, std::mt19937& jitter) const {
  counters_.retries++;
  auto delay = std::min(retry_.max_delay, retry_.base_delay * (1 << std::min(attempt - 1, 16)));
  auto ms = delay.count() / 2 + static_cast<int64_t>(jitter() % (delay.count() / 2 + 1));
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

HttpRequest S3Client::signed_request(const Call& c, const std::string& query) const {
  HttpRequest req;
  req.method = c.method;
  req.url = url(c.key, query);
  req.body = c.body;
  SigningInput in;
  in.method = c.method;
  in.canonical_uri = CanonicalPath(location_, c.key);
  in.query = c.query;
  in.region = location_.region;
  in.amz_date = AmzDate(std::time(nullptr));
  in.payload_hash =
      c.sign_body
          ? Sha256Hex(std::string_view(reinterpret_cast<const char*>(c.body.data()), c.body.size()))
          : std::string(c.body.empty() ? kEmptyPayloadSha256 : kUnsignedPayload);
  in.headers = {{"host", host_header()},
                {"x-amz-date", in.amz_date},
                {"x-amz-content-sha256", in.payload_hash}};
  if (!credentials_.session_token.empty()) {
    in.headers.emplace_back("x-amz-security-token", credentials_.session_token);
  }
  for (const auto& h : c.headers) in.headers.push_back(h);
  req.headers = in.headers;
  req.headers.emplace_back(
      "Authorization", AuthorizationHeader(credentials_.access_key, credentials_.secret_key, in));
  return req;
}

void S3Client::trace(const Call& c, long status, std::chrono::steady_clock::time_point t0) const {
  if (!trace_) return;
  auto us =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  // The wall-clock second and microsecond the answer came, to line up with other logs.
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  std::fprintf(stderr, "s3 trace: %02ld.%06ld %s %s -> %ld (%.1f ms)\n",
               static_cast<long>(now.tv_sec % 60), static_cast<long>(now.tv_nsec / 1000),
               c.method.c_str(), c.what.c_str(), status, us / 1000.0);
}

Result<HttpResponse> S3Client::call(const Call& c) {
  const std::string query = CanonicalQueryString(c.query);
  std::string last_error;
  std::mt19937 jitter(std::random_device{}());
  for (int attempt = 0;; ++attempt) {
    if (attempt > 0) backoff(attempt, jitter);
    HttpRequest req = signed_request(c, query);  // signed anew: x-amz-date moves on
    counters_.requests++;
    counters_.bytes_sent += static_cast<int64_t>(c.body.size());
    auto t0 = std::chrono::steady_clock::now();
    Result<HttpResponse> r = http_->send(req, c.into);
    trace(c, r ? r->status : -1L, t0);
    if (!r) {
      last_error = r.error().message();
      if (attempt < retry_.max_retries) continue;
      return Err(EIO, "s3: " + c.what + ": " + last_error + " (after " +
                          std::to_string(attempt + 1) + " attempts)");
    }
    counters_.bytes_received += static_cast<int64_t>(r->body_size + r->body.size());
    bool ok = r->status >= 200 && r->status < 300;
    std::optional<S3ErrorDoc> doc;
    if (ok && c.error_in_200) doc = ParseErrorDoc(r->body);
    if (ok && !doc) return r;
    if (!ok) doc = ParseErrorDoc(r->body);
    bool retry = RetryableStatus(r->status) || (doc && RetryableCode(doc->code));
    if (retry && attempt < retry_.max_retries) {
      last_error = "HTTP " + std::to_string(r->status);
      continue;
    }
    if (ok) {  // an <Error> inside a 200
      return Err(EIO, "s3: " + c.what + ": " + doc->code + ": " + doc->message);
    }
    return r;  // the caller maps the status
  }
}

Result<std::unique_ptr<HttpStream>> S3Client::open_call(const Call& c, HttpResponse& failed) {
  const std::string query = CanonicalQueryString(c.query);
  std::string last_error;
  std::mt19937 jitter(std::random_device{}());
  for (int attempt = 0;; ++attempt) {
    if (attempt > 0) backoff(attempt, jitter);
    HttpRequest req = signed_request(c, query);
    counters_.requests++;
    auto t0 = std::chrono::steady_clock::now();
    Result<std::unique_ptr<HttpStream>> s = http_->open(req);
    trace(c, s ? (*s)->status() : -1L, t0);
    if (!s) {
      last_error = s.error().message();
      if (attempt < retry_.max_retries) continue;
      return Err(EIO, "s3: " + c.what + ": " + last_error + " (after " +
                          std::to_string(attempt + 1) + " attempts)");
    }
    std::unique_ptr<HttpStream> stream = std::move(*s);
    if (stream->status() >= 200 && stream->status() < 300) return stream;
    failed = HttpResponse{};
    failed.status = stream->status();
    failed.headers = LowerCaseHeaders(stream->headers());
    Result<std::string> body = stream->read_all(64 << 10);
    if (body) failed.body = std::move(*body);
    std::optional<S3ErrorDoc> doc = ParseErrorDoc(failed.body);
    bool retry = RetryableStatus(failed.status) || (doc && RetryableCode(doc->code));
    if (retry && attempt < retry_.max_retries) continue;
    return std::unique_ptr<HttpStream>();
  }
}

Result<ObjectInfo> S3Client::head(std::string_view key) {
  Call c{.method = "HEAD", .key = std::string(key), .what = "HEAD " + std::string(key)};
  HFVFS_ASSIGN_OR_RETURN(HttpResponse r, call(c));
  if (r.status != 200) return status_error(c, r);
  ObjectInfo info;
  info.key = std::string(key);
  if (auto v = r.header("content-length"))
    info.size = std::strtoull(std::string(*v).c_str(), nullptr, 10);
  if (auto v = r.header("etag")) info.etag = std::string(*v);
  if (auto v = r.header("last-modified")) info.mtime_ns = ParseHttpTime(*v);
  return info;
}

Result<ListPage> S3Client::list(std::string_view prefix, std::string_view delimiter,
                                std::string_view token, int max_keys) {
  Call c{.method = "GET", .what = "ListObjectsV2 '" + std::string(prefix) + "'"};
  c.query = {{"list-type", "2"}, {"max-keys", std::to_string(max_keys)}};
  if (!prefix.empty()) c.query.emplace_back("prefix", std::string(prefix));
  if (!delimiter.empty()) c.query.emplace_back("delimiter", std::string(delimiter));
  if (!token.empty()) c.query.emplace_back("continuation-token", std::string(token));
  HFVFS_ASSIGN_OR_RETURN(HttpResponse r, call(c));
  if (r.status != 200) return status_error(c, r);
  Result<XmlNode> doc = ParseXml(r.body);
  if (!doc) return doc.error().With("s3: " + c.what);
  if (doc->name != "ListBucketResult") {
    return Err(EIO, "s3: " + c.what + ": unexpected <" + doc->name + "> document");
  }
  ListPage page;
  for (const XmlNode* o : doc->children_named("Contents")) {
    ObjectInfo info;
    info.key = o->child_text("Key");
    info.size = std::strtoull(o->child_text("Size").c_str(), nullptr, 10);
    info.etag = o->child_text("ETag");
    info.mtime_ns = ParseIsoTime(o->child_text("LastModified"));
    page.objects.push_back(std::move(info));
  }
  for (const XmlNode* p : doc->children_named("CommonPrefixes")) {
    page.prefixes.push_back(p->child_text("Prefix"));
  }
  if (doc->child_text("IsTruncated") == "true") {
    page.next_token = doc->child_text("NextContinuationToken");
    if (page.next_token.empty()) {
      return Err(EIO, "s3: " + c.what + ": truncated listing without a continuation token");
    }
  }
  return page;
}

Result<size_t> S3Client::get(std::string_view key, uint64_t offset, std::span<std::byte> buf,
                             std::string_view if_match) {
  size_t done = 0;
  int resumes = 0;
  while (done < buf.size()) {
    uint64_t first = offset + done;
    uint64_t last = offset + buf.size() - 1;
    Call c{.method = "GET",
           .key = std::string(key),
           .into = buf.subspan(done),
           .what = "GET " + std::string(key)};
    c.headers = {{"range", "bytes=" + std::to_string(first) + "-" + std::to_string(last)}};
    if (!if_match.empty()) c.headers.emplace_back("if-match", std::string(if_match));
    HFVFS_ASSIGN_OR_RETURN(HttpResponse r, call(c));
    if (r.status == 416) return done;  // at or past the end
    if (r.status != 206 && r.status != 200) return status_error(c, r);
    if (r.status == 200 && first != 0) {
      return Err(EIO, "s3: " + c.what + ": the server ignored the Range header");
    }
    // The total size, from "Content-Range: bytes a-b/total" (or the whole body on a 200).
    uint64_t total = first + r.body_size;
    if (auto cr = r.header("content-range")) {
      size_t slash = cr->rfind('/');
      if (slash != std::string_view::npos && (*cr)[slash + 1] != '*') {
        total = std::strtoull(std::string(cr->substr(slash + 1)).c_str(), nullptr, 10);
      }
    } else if (r.status == 200) {
      total = r.body_size;
    }
    done += r.body_size;
    if (offset + done >= total) break;  // the object ends here
    if (r.body_size == 0 || ++resumes > retry_.max_retries) {
      return Err(EIO, "s3: " + c.what + ": body cut short at byte " +
                          std::to_string(offset + done) + " of " + std::to_string(total));
    }
  }
  return done;
}

Result<std::unique_ptr<HttpStream>> S3Client::open_get(std::string_view key, uint64_t offset,
                                                       std::string_view if_match, uint64_t end) {
  Call c{.method = "GET", .key = std::string(key), .what = "GET " + std::string(key) + " (stream)"};
  c.headers = {{"range", "bytes=" + std::to_string(offset) + "-" +
                             (end > offset ? std::to_string(end - 1) : std::string())}};
  if (!if_match.empty()) c.headers.emplace_back("if-match", std::string(if_match));
  HttpResponse failed;
  HFVFS_ASSIGN_OR_RETURN(std::unique_ptr<HttpStream> stream, open_call(c, failed));
  if (!stream) {
    if (failed.status == 416) return std::unique_ptr<HttpStream>();  // at or past the end
    return status_error(c, failed);
  }
  if (stream->status() == 200 && offset != 0) {
    return Err(EIO, "s3: " + c.what + ": the server ignored the Range header");
  }
  return stream;
}

Result<std::string> S3Client::put(std::string_view key, std::span<const std::byte> body) {
  Call c{.method = "PUT", .key = std::string(key), .body = body, .what = "PUT " + std::string(key)};
  HFVFS_ASSIGN_OR_RETURN(HttpResponse r, call(c));
  if (r.status != 200) return status_error(c, r);
  return std::string(r.header("etag").value_or(""));
}

Status S3Client::remove(std::string_view key) {
  Call c{.method = "DELETE", .key = std::string(key), .what = "DELETE " + std::string(key)};
  HFVFS_ASSIGN_OR_RETURN(HttpResponse r, call(c));
  if (r.status != 204 && r.status != 200 && r.status != 404) return status_error(c, r);
  return Ok();
}

Result<std::string> S3Client::copy(std::string_view from, std::string_view to) {
  Call c{.method = "PUT",
         .key = std::string(to),
         .what = "COPY " + std::string(from) + " -> " + std::string(to),
         .error_in_200 = true};
  c.headers = {{"x-amz-copy-source",
                "/" + UriEncode(location_.bucket, true) + "/" + UriEncode(from, false)}};
  HFVFS_ASSIGN_OR_RETURN(HttpResponse r, call(c));
  if (r.status != 200) return status_error(c, r);
  Result<XmlNode> doc = ParseXml(r.body);
  if (!doc) return doc.error().With("s3: " + c.what);
  return doc->child_text("ETag");
}

Result<std::string> S3Client::create_multipart(std::string_view key) {
  Call c{.method = "POST",
         .key = std::string(key),
         .what = "CreateMultipartUpload " + std::string(key)};
  c.query = {{"uploads", ""}};
  HFVFS_ASSIGN_OR_RETURN(HttpResponse r, call(c));
  if (r.status != 200) return status_error(c, r);
  Result<XmlNode> doc = ParseXml(r.body);
  if (!doc) return doc.error().With("s3: " + c.what);
  std::string id = doc->child_text("UploadId");
  if (id.empty()) return Err(EIO, "s3: " + c.what + ": no UploadId in the answer");
  return id;
}

Result<std::string> S3Client::upload_part(std::string_view key, std::string_view upload_id,
                                          int part, std::span<const std::byte> body) {
  Call c{.method = "PUT",
         .key = std::string(key),
         .body = body,
         .what = "UploadPart " + std::to_string(part) + " of " + std::string(key)};
  c.query = {{"partNumber", std::to_string(part)}, {"uploadId", std::string(upload_id)}};
  HFVFS_ASSIGN_OR_RETURN(HttpResponse r, call(c));
  if (r.status != 200) return status_error(c, r);
  auto etag = r.header("etag");
  if (!etag) return Err(EIO, "s3: " + c.what + ": no ETag in the answer");
  return std::string(*etag);
}

Result<std::string> S3Client::upload_part_copy(std::string_view key, std::string_view upload_id,
                                               int part, std::string_view from, uint64_t first,
                                               uint64_t last) {
  Call c{.method = "PUT",
         .key = std::string(key),
         .what = "UploadPartCopy " + std::to_string(part) + " of " + std::string(key),
         .error_in_200 = true};
  c.query = {{"partNumber", std::to_string(part)}, {"uploadId", std::string(upload_id)}};
  c.headers = {
      {"x-amz-copy-source", "/" + UriEncode(location_.bucket, true) + "/" + UriEncode(from, false)},
      {"x-amz-copy-source-range", "bytes=" + std::to_string(first) + "-" + std::to_string(last)}};
  HFVFS_ASSIGN_OR_RETURN(HttpResponse r, call(c));
  if (r.status != 200) return status_error(c, r);
  Result<XmlNode> doc = ParseXml(r.body);
  if (!doc) return doc.error().With("s3: " + c.what);
  return doc->child_text("ETag");
}

Result<std::string> S3Client::complete_multipart(std::string_view key, std::string_view upload_id,
                                                 const std::vector<std::string>& etags) {
  std::string xml = "<CompleteMultipartUpload>";
  for (size_t i = 0; i < etags.size(); ++i) {
    xml += "<Part><PartNumber>" + std::to_string(i + 1) + "</PartNumber><ETag>" +
           XmlEscape(etags[i]) + "</ETag></Part>";
  }
  xml += "</CompleteMultipartUpload>";
  Call c{.method = "POST",
         .key = std::string(key),
         .body = std::as_bytes(std::span<const char>(xml.data(), xml.size())),
         .sign_body = true,
         .what = "CompleteMultipartUpload " + std::string(key),
         .error_in_200 = true};
  c.query = {{"uploadId", std::string(upload_id)}};
  HFVFS_ASSIGN_OR_RETURN(HttpResponse r, call(c));
  if (r.status != 200) return status_error(c, r);
  Result<XmlNode> doc = ParseXml(r.body);
  if (!doc) return doc.error().With("s3: " + c.what);
  return doc->child_text("ETag");
}

Status S3Client::abort_multipart(std::string_view key, std::string_view upload_id) {
  Call c{.method = "DELETE",
         .key = std::string(key),
         .what = "AbortMultipartUpload " + std::string(key)};
  c.query = {{"uploadId", std::string(upload_id)}};
  HFVFS_ASSIGN_OR_RETURN(HttpResponse r, call(c));
  if (r.status != 204 && r.status != 200 && r.status != 404) return status_error(c, r);
  return Ok();
}

Status S3Client::create_bucket() {
  Call c{.method = "PUT", .what = "CreateBucket " + location_.bucket};
  HFVFS_ASSIGN_OR_RETURN(HttpResponse r, call(c));
  if (r.status != 200) return status_error(c, r);
  return Ok();
}

Status S3Client::check_bucket(std::string_view prefix) {
  Result<ListPage> page = list(prefix, "/", "", 1);
  if (page) return Ok();
  const Error& e = page.error();
  if (e.code() == EACCES) {
    return Err(EACCES, "s3: bucket '" + location_.bucket + "' refused the credentials from " +
                           credentials_.source + " (" + e.message() + ")");
  }
  if (e.code() == ENOENT) {
    return Err(ENOENT, "s3: bucket '" + location_.bucket + "' does not exist at " +
                           location_.scheme + "://" + location_.host + " (" + e.message() + ")");
  }
  return e;
}

}  // namespace hfvfs::s3
