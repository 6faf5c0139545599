#include "hfvfs/http.h"

#include <curl/curl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <thread>

#include "hfvfs/layer.h"

namespace hfvfs {

namespace {

using Clock = std::chrono::steady_clock;

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  }
  return true;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

// Transport errors worth another attempt: the connection failed, broke or stalled.
bool IsRetryableCurlError(CURLcode code) {
  switch (code) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_READ_ERROR:
      return true;
    default:
      return false;
  }
}

void InitCurlOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// Parses "bytes first-last/total" or "bytes */total". Returns false when malformed.
bool ParseContentRange(std::string_view v, std::optional<uint64_t>& first,
                       std::optional<uint64_t>& total) {
  v = Trim(v);
  if (v.substr(0, 6) != "bytes ") return false;
  v.remove_prefix(6);
  size_t slash = v.find('/');
  if (slash == std::string_view::npos) return false;
  std::string_view range = v.substr(0, slash), tot = v.substr(slash + 1);
  first.reset();
  total.reset();
  if (range != "*") {
    size_t dash = range.find('-');
    if (dash == std::string_view::npos) return false;
    first = std::strtoull(std::string(range.substr(0, dash)).c_str(), nullptr, 10);
  }
  if (tot != "*") total = std::strtoull(std::string(tot).c_str(), nullptr, 10);
  return true;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// HttpHeaders

std::optional<std::string_view> HttpHeaders::get(std::string_view name) const {
  for (const auto& [k, v] : items_) {
    if (EqualsIgnoreCase(k, name)) return std::string_view(v);
  }
  return std::nullopt;
}

std::vector<std::string_view> HttpHeaders::get_all(std::string_view name) const {
  std::vector<std::string_view> out;
  for (const auto& [k, v] : items_) {
    if (EqualsIgnoreCase(k, name)) out.emplace_back(v);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// One libcurl exchange driven pull-style through its own multi handle. Its connections live in
// that multi handle's cache and are reused by the next exchange on this Transfer; DNS and TLS
// sessions are shared by every transfer of the client (the share).

namespace {

struct Transfer {
  CURL* easy = nullptr;
  CURLM* multi = nullptr;
  curl_slist* header_list = nullptr;
  HttpCounters* counters = nullptr;
  std::chrono::milliseconds stall_timeout{30000};

  // Per exchange.
  long status = 0;
  HttpHeaders headers;
  bool headers_done = false;
  bool added = false;
  bool done = false;
  CURLcode result = CURLE_OK;
  bool paused = false;
  std::byte* out = nullptr;  // the caller's buffer during read()
  size_t out_cap = 0;
  size_t out_len = 0;
  std::string spill;  // body bytes received beyond the caller's buffer
  size_t spill_pos = 0;
  uint64_t received = 0;  // body bytes handed to the caller
  HttpBody body;
  uint64_t body_pos = 0;

  Transfer() {
    easy = curl_easy_init();
    multi = curl_multi_init();
  }
  ~Transfer() {
    detach();
    curl_slist_free_all(header_list);
    if (multi) curl_multi_cleanup(multi);
    if (easy) curl_easy_cleanup(easy);
  }

  void detach() {
    if (added) {
      curl_multi_remove_handle(multi, easy);
      added = false;
    }
  }

  static size_t OnHeader(char* data, size_t size, size_t n, void* self) {
    auto* t = static_cast<Transfer*>(self);
    std::string_view line(data, size * n);
    std::string_view trimmed = Trim(line);
    if (trimmed.substr(0, 5) == "HTTP/") {
      t->headers.clear();
      t->headers_done = false;
      size_t sp = trimmed.find(' ');
      t->status = sp == std::string_view::npos
                      ? 0
                      : std::strtol(std::string(trimmed.substr(sp + 1, 3)).c_str(), nullptr, 10);
    } else if (trimmed.empty()) {
      if (t->status >= 200) t->headers_done = true;  // 1xx: another status line follows
    } else {
      size_t colon = trimmed.find(':');
      if (colon != std::string_view::npos) {
        t->headers.add(std::string(Trim(trimmed.substr(0, colon))),
                       std::string(Trim(trimmed.substr(colon + 1))));
      }
    }
    return size * n;
  }

  static size_t OnWrite(char* data, size_t size, size_t n, void* self) {
    auto* t = static_cast<Transfer*>(self);
    size_t len = size * n;
    size_t room = t->out_cap - t->out_len;
    if (room == 0 || t->spill_pos < t->spill.size()) {
      t->paused = true;
      return CURL_WRITEFUNC_PAUSE;  // libcurl keeps these bytes and delivers them on resume
    }
    size_t take = std::min(room, len);
    std::memcpy(t->out + t->out_len, data, take);
    t->out_len += take;
    if (take < len) {
      t->spill.assign(data + take, len - take);
      t->spill_pos = 0;
    }
    t->counters->bytes_received += static_cast<int64_t>(len);
    return len;
  }

  static size_t OnRead(char* buf, size_t size, size_t n, void* self) {
    auto* t = static_cast<Transfer*>(self);
    uint64_t left = t->body.size() - t->body_pos;
    size_t take = static_cast<size_t>(std::min<uint64_t>(left, size * n));
    if (take == 0) return 0;
    if (t->body.fd >= 0) {
      ssize_t got =
          ::pread(t->body.fd, buf, take, static_cast<off_t>(t->body.file_offset + t->body_pos));
      if (got <= 0) return CURL_READFUNC_ABORT;
      take = static_cast<size_t>(got);
    } else {
      std::memcpy(buf, t->body.bytes.data() + t->body_pos, take);
    }
    t->body_pos += take;
    t->counters->bytes_sent += static_cast<int64_t>(take);
    return take;
  }

  static int OnSeek(void* self, curl_off_t offset, int origin) {
    auto* t = static_cast<Transfer*>(self);
    if (origin != SEEK_SET || offset < 0 || static_cast<uint64_t>(offset) > t->body.size())
      return CURL_SEEKFUNC_CANTSEEK;
    t->body_pos = static_cast<uint64_t>(offset);
    return CURL_SEEKFUNC_OK;
  }

  // Sets up and adds the exchange; nothing is sent until drive().
  Status start(const HttpRequest& req, const HttpClientOptions& opt, CURLSH* share,
               curl_slist* resolve) {
    detach();
    curl_easy_reset(easy);
    curl_slist_free_all(header_list);
    header_list = nullptr;
    status = 0;
    headers.clear();
    headers_done = done = paused = false;
    result = CURLE_OK;
    out = nullptr;
    out_cap = out_len = 0;
    spill.clear();
    spill_pos = 0;
    received = 0;
    body = req.body;
    body_pos = 0;

    curl_easy_setopt(easy, CURLOPT_URL, req.url.c_str());
    curl_easy_setopt(easy, CURLOPT_SHARE, share);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_USERAGENT, opt.user_agent.c_str());
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(opt.connect_timeout.count()));
    curl_easy_setopt(easy, CURLOPT_BUFFERSIZE, opt.receive_buffer);
    curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, &Transfer::OnHeader);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, this);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &Transfer::OnWrite);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, this);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    if (resolve) curl_easy_setopt(easy, CURLOPT_RESOLVE, resolve);
    if (!opt.ca_file.empty()) curl_easy_setopt(easy, CURLOPT_CAINFO, opt.ca_file.c_str());
    if (!opt.verify_tls) {
      curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 0L);
      curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 0L);
    }

    const std::string& m = req.method;
    bool has_body = !req.body.empty();
    if (m == "HEAD") {
      curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
    } else if (m == "GET" && !has_body) {
      curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
    } else if (m == "POST") {
      curl_easy_setopt(easy, CURLOPT_POST, 1L);
      curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
      curl_easy_setopt(easy, CURLOPT_READFUNCTION, &Transfer::OnRead);
      curl_easy_setopt(easy, CURLOPT_READDATA, this);
      curl_easy_setopt(easy, CURLOPT_SEEKFUNCTION, &Transfer::OnSeek);
      curl_easy_setopt(easy, CURLOPT_SEEKDATA, this);
    } else if (has_body || m == "PUT") {
      curl_easy_setopt(easy, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt(easy, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(body.size()));
      curl_easy_setopt(easy, CURLOPT_READFUNCTION, &Transfer::OnRead);
      curl_easy_setopt(easy, CURLOPT_READDATA, this);
      curl_easy_setopt(easy, CURLOPT_SEEKFUNCTION, &Transfer::OnSeek);
      curl_easy_setopt(easy, CURLOPT_SEEKDATA, this);
      curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, m.c_str());
    } else {
      curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, m.c_str());
    }

    bool has_expect = false;
    for (const auto& [k, v] : req.headers) {
      if (EqualsIgnoreCase(k, "Expect")) has_expect = true;
      std::string line = v.empty() ? k + ";" : k + ": " + v;
      header_list = curl_slist_append(header_list, line.c_str());
    }
    if (!has_expect) header_list = curl_slist_append(header_list, "Expect:");
    if (req.range) {
      std::string line = "Range: bytes=" + std::to_string(req.range->first) + "-";
      if (req.range->second) line += std::to_string(*req.range->second);
      header_list = curl_slist_append(header_list, line.c_str());
    }
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, header_list);

    if (curl_multi_add_handle(multi, easy) != CURLM_OK) {
      return Err(EIO, "http: cannot start a transfer to " + RedactUrl(req.url));
    }
    added = true;
    return Ok();
  }

  // Runs the exchange until `until()` holds, it ends, or it stalls for stall_timeout.
  template <typename Pred>
  void drive(Pred until) {
    Clock::time_point last_progress = Clock::now();
    uint64_t last_bytes = static_cast<uint64_t>(-1);
    while (!done && !until()) {
      int running = 0;
      curl_multi_perform(multi, &running);
      int queued = 0;
      while (CURLMsg* msg = curl_multi_info_read(multi, &queued)) {
        if (msg->msg == CURLMSG_DONE) {
          done = true;
          result = msg->data.result;
        }
      }
      if (done || until()) break;
      uint64_t now_bytes = out_len + received + (headers_done ? 1 : 0) + body_pos;
      if (now_bytes != last_bytes) {
        last_bytes = now_bytes;
        last_progress = Clock::now();
      } else if (Clock::now() - last_progress > stall_timeout) {
        done = true;
        result = CURLE_OPERATION_TIMEDOUT;
        break;
      }
      curl_multi_poll(multi, nullptr, 0, 200, nullptr);
    }
  }
};

}  // namespace

struct HttpClient::Impl {
  CURLSH* share = nullptr;
  // share_locks[i] guards the libcurl share data of kind i (DNS cache, TLS sessions).
  std::array<std::mutex, CURL_LOCK_DATA_LAST> share_locks;
  curl_slist* resolve = nullptr;
  // idle_mu guards idle: transfers ready for reuse, each with its open connections.
  std::mutex idle_mu;
  std::vector<std::unique_ptr<Transfer>> idle;

  static void Lock(CURL*, curl_lock_data data, curl_lock_access, void* self) {
    static_cast<Impl*>(self)->share_locks[data].lock();
  }
  static void Unlock(CURL*, curl_lock_data data, void* self) {
    static_cast<Impl*>(self)->share_locks[data].unlock();
  }

  std::unique_ptr<Transfer> acquire(HttpCounters* counters, std::chrono::milliseconds stall) {
    std::unique_ptr<Transfer> t;
    {
      std::lock_guard lock(idle_mu);
      if (!idle.empty()) {
        t = std::move(idle.back());
        idle.pop_back();
      }
    }
    if (!t) t = std::make_unique<Transfer>();
    t->counters = counters;
    t->stall_timeout = stall;
    return t;
  }

  void release(std::unique_ptr<Transfer> t) {
    if (!t) return;
    t->detach();  // an unfinished exchange closes its connection; a finished one keeps it
    std::lock_guard lock(idle_mu);
    if (idle.size() < 64) idle.push_back(std::move(t));
  }
};

namespace {

class StreamImpl : public HttpStream {
 public:
  StreamImpl(HttpClient::Impl* impl, std::unique_ptr<Transfer> t, std::string url)
      : impl_(impl), t_(std::move(t)), url_(std::move(url)) {}
  ~StreamImpl() override { impl_->release(std::move(t_)); }

  long status() const override { return t_->status; }
  const HttpHeaders& headers() const override { return t_->headers; }
  uint64_t received() const override { return t_->received; }

  Result<size_t> read(std::span<std::byte> buf) override {
    if (failed_) return Err(EIO, "http: " + url_ + ": read after a failed transfer");
    Transfer& t = *t_;
    t.out = buf.data();
    t.out_cap = buf.size();
    t.out_len = 0;
    // Bytes that arrived past the previous buffer come first.
    if (t.spill_pos < t.spill.size()) {
      size_t take = std::min(buf.size(), t.spill.size() - t.spill_pos);
      std::memcpy(buf.data(), t.spill.data() + t.spill_pos, take);
      t.spill_pos += take;
      t.out_len = take;
      if (t.spill_pos == t.spill.size()) {
        t.spill.clear();
        t.spill_pos = 0;
      }
    }
    if (t.out_len < t.out_cap && t.paused && !t.done) {
      t.paused = false;
      curl_easy_pause(t.easy, CURLPAUSE_CONT);  // may deliver the held bytes right here
    }
    t.drive([&] { return t.out_len == t.out_cap; });
    size_t n = t.out_len;
    t.out = nullptr;
    t.out_cap = t.out_len = 0;
    t.received += n;
    if (n == 0 && t.done && t.result != CURLE_OK && t.spill_pos >= t.spill.size()) {
      failed_ = true;
      return Err(EIO, "http: " + url_ + ": body cut short after " + std::to_string(t.received) +
                          " bytes (" + curl_easy_strerror(t.result) + ")");
    }
    return n;
  }

 private:
  HttpClient::Impl* impl_;
  std::unique_ptr<Transfer> t_;
  std::string url_;  // redacted
  bool failed_ = false;
};

}  // namespace

Result<std::string> HttpStream::read_all(size_t limit) {
  std::string out;
  std::array<std::byte, 64 * 1024> chunk;
  for (;;) {
    HFVFS_ASSIGN_OR_RETURN(size_t n, read(chunk));
    if (n == 0) break;
    size_t take = std::min(n, limit - std::min(limit, out.size()));
    out.append(reinterpret_cast<const char*>(chunk.data()), take);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// HttpClient

HttpClient::HttpClient(HttpClientOptions options)
    : options_(std::move(options)), impl_(std::make_unique<Impl>()) {
  InitCurlOnce();
  impl_->share = curl_share_init();
  curl_share_setopt(impl_->share, CURLSHOPT_LOCKFUNC, &Impl::Lock);
  curl_share_setopt(impl_->share, CURLSHOPT_UNLOCKFUNC, &Impl::Unlock);
  curl_share_setopt(impl_->share, CURLSHOPT_USERDATA, impl_.get());
  // Connections are not put in the share: libcurl documents sharing them between concurrent
  // threads as unsafe. Each pooled transfer keeps its own (its multi handle's cache), and the
  // LIFO pool hands the most recently used one out first, so connections are still reused.
  curl_share_setopt(impl_->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
  curl_share_setopt(impl_->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  for (const std::string& r : options_.resolve) {
    impl_->resolve = curl_slist_append(impl_->resolve, r.c_str());
  }
}

HttpClient::~HttpClient() {
  impl_->idle.clear();  // every transfer leaves the share before it is cleaned up
  curl_share_cleanup(impl_->share);
  curl_slist_free_all(impl_->resolve);
}

namespace {

// Opens one exchange with retries. `attempts` counts attempts across calls (send() resumes the
// count when it retries a body that broke).
Result<std::unique_ptr<HttpStream>> OpenWithRetries(HttpClient::Impl* impl,
                                                    const HttpClientOptions& opt,
                                                    HttpCounters& counters, const HttpRequest& req,
                                                    int& attempts) {
  const RetryPolicy& policy = req.retry ? *req.retry : opt.retry;
  std::string url = RedactUrl(req.url);
  for (;;) {
    ++attempts;
    ++counters.requests;
    if (attempts > 1) ++counters.retries;
    std::unique_ptr<Transfer> t = impl->acquire(&counters, opt.stall_timeout);
    Status started = t->start(req, opt, impl->share, impl->resolve);
    if (!started) {
      impl->release(std::move(t));
      return started.error();
    }
    t->drive([&] { return t->headers_done; });
    bool can_retry = attempts <= policy.max_retries;
    if (!t->headers_done) {
      CURLcode code = t->done ? t->result : CURLE_GOT_NOTHING;
      impl->release(std::move(t));
      ++counters.errors;
      if (can_retry && IsRetryableCurlError(code)) {
        std::this_thread::sleep_for(RetryDelay({}, attempts, policy));
        continue;
      }
      return Err(EIO, "http: " + req.method + " " + url + ": " + curl_easy_strerror(code) +
                          " (after " + std::to_string(attempts) + " attempts)");
    }
    long new_connections = 0;
    curl_easy_getinfo(t->easy, CURLINFO_NUM_CONNECTS, &new_connections);
    counters.connects += new_connections;
    auto stream = std::make_unique<StreamImpl>(impl, std::move(t), url);
    long status = stream->status();
    if (IsRetryableStatus(status)) {
      ++counters.errors;
      HttpHeaders headers = stream->headers();
      Result<std::string> body = stream->read_all(4096);
      if (can_retry) {
        stream.reset();
        std::this_thread::sleep_for(RetryDelay(headers, attempts, policy));
        continue;
      }
      Error e = StatusError(status, headers, body ? *body : "", req.method + " " + url);
      return Err(EIO, e.message() + " (gave up after " + std::to_string(attempts) + " attempts)");
    }
    return std::unique_ptr<HttpStream>(std::move(stream));
  }
}

}  // namespace

Result<std::unique_ptr<HttpStream>> HttpClient::open(const HttpRequest& request) {
  int attempts = 0;
  return OpenWithRetries(impl_.get(), options_, counters_, request, attempts);
}

namespace {

// One exchange with retries, its body read by `consume(stream, response, broke)`: an error with
// `broke` set (the body was cut short) is retried like a connection error; any other error is
// returned as it is.
template <typename Consume>
Result<HttpResponse> SendWithRetries(HttpClient::Impl* impl, const HttpClientOptions& options,
                                     HttpCounters& counters, const HttpRequest& request,
                                     Consume&& consume) {
  const RetryPolicy& policy = request.retry ? *request.retry : options.retry;
  int attempts = 0;
  for (;;) {
    HFVFS_ASSIGN_OR_RETURN(std::unique_ptr<HttpStream> stream,
                           OpenWithRetries(impl, options, counters, request, attempts));
    HttpResponse resp;
    resp.status = stream->status();
    resp.headers = stream->headers();
    resp.attempts = attempts;
    bool broke = false;
    Status body = consume(*stream, resp, broke);
    if (body) return resp;
    if (!broke) return body.error();
    ++counters.errors;
    if (attempts > policy.max_retries) return body.error();
    std::this_thread::sleep_for(RetryDelay({}, attempts, policy));
  }
}

}  // namespace

Result<HttpResponse> HttpClient::send(const HttpRequest& request, size_t max_body) {
  return SendWithRetries(impl_.get(), options_, counters_, request,
                         [&](HttpStream& stream, HttpResponse& resp, bool& broke) -> Status {
                           std::array<std::byte, 64 * 1024> chunk;
                           for (;;) {
                             Result<size_t> n = stream.read(chunk);
                             if (!n) {
                               broke = true;
                               return n.error();
                             }
                             if (*n == 0) break;
                             if (resp.body.size() + *n > max_body) {
                               return Err(EIO, "http: " + request.method + " " +
                                                   RedactUrl(request.url) +
                                                   ": response body larger than " +
                                                   std::to_string(max_body) + " bytes");
                             }
                             resp.body.append(reinterpret_cast<const char*>(chunk.data()), *n);
                           }
                           resp.body_size = resp.body.size();
                           return Ok();
                         });
}

Result<HttpResponse> HttpClient::send_into(const HttpRequest& request, std::span<std::byte> buf) {
  return SendWithRetries(
      impl_.get(), options_, counters_, request,
      [&](HttpStream& stream, HttpResponse& resp, bool& broke) -> Status {
        Result<size_t> n =
            ReadFully(buf, [&](size_t, std::span<std::byte> rest) { return stream.read(rest); });
        if (!n) {
          broke = true;
          return n.error();
        }
        if (*n == buf.size()) {
          std::array<std::byte, 1> extra;
          HFVFS_ASSIGN_OR_RETURN(size_t more, stream.read(extra));
          if (more != 0) {
            return Err(EIO, "http: " + request.method + " " + RedactUrl(request.url) +
                                ": response body larger than the buffer (" +
                                std::to_string(buf.size()) + " bytes)");
          }
        }
        resp.body_size = *n;
        return Ok();
      });
}

Result<size_t> HttpClient::read_range(const HttpRequest& request, uint64_t offset,
                                      std::span<std::byte> buf) {
  if (buf.empty()) return size_t{0};
  const RetryPolicy& policy = request.retry ? *request.retry : options_.retry;
  std::string url = RedactUrl(request.url);
  HttpRequest req = request;
  req.method = "GET";
  size_t done = 0;
  int failures = 0;  // consecutive broken bodies without progress
  while (done < buf.size()) {
    uint64_t pos = offset + done;
    req.range = {{pos, offset + buf.size() - 1}};
    HFVFS_ASSIGN_OR_RETURN(std::unique_ptr<HttpStream> stream, open(req));
    long status = stream->status();
    if (status == 416) return done;  // at or past the end
    std::optional<uint64_t> total;
    if (status == 206) {
      std::optional<uint64_t> first;
      auto cr = stream->headers().get("Content-Range");
      if (!cr || !ParseContentRange(*cr, first, total) || first != pos) {
        return Err(EIO, "http: GET " + url + ": 206 with a Content-Range that does not start at " +
                            std::to_string(pos));
      }
    } else if (status == 200) {
      // The server ignored Range: skip to the position.
      uint64_t skip = pos;
      std::array<std::byte, 64 * 1024> sink;
      while (skip > 0) {
        size_t want = static_cast<size_t>(std::min<uint64_t>(skip, sink.size()));
        HFVFS_ASSIGN_OR_RETURN(size_t n, stream->read(std::span(sink).first(want)));
        if (n == 0) return done;  // the resource ends before pos
        skip -= n;
      }
    } else {
      HttpHeaders headers = stream->headers();
      Result<std::string> body = stream->read_all(4096);
      return StatusError(status, headers, body ? *body : "", "GET " + url);
    }
    bool broke = false;
    bool ended = false;
    while (done < buf.size()) {
      Result<size_t> n = stream->read(buf.subspan(done));
      if (!n) {
        broke = true;
        break;
      }
      if (*n == 0) {
        ended = true;
        break;
      }
      done += *n;
      failures = 0;
    }
    if (done == buf.size()) {
      if (status == 206) {
        std::array<std::byte, 1> probe;  // lets the exchange end so its connection is kept
        (void)stream->read(probe);
      }
      break;
    }
    if (ended && (status == 200 || (total && offset + done >= *total))) break;  // true EOF
    // The body stopped before the range or the resource ended: continue from here.
    if (++failures > policy.max_retries) {
      return Err(EIO, "http: GET " + url + ": body cut short at byte " +
                          std::to_string(offset + done) + ", gave up after " +
                          std::to_string(failures) + " attempts");
    }
    ++counters_.resumed;
    ++counters_.retries;
    if (broke && failures > 1) std::this_thread::sleep_for(RetryDelay({}, failures - 1, policy));
  }
  return done;
}

// ---------------------------------------------------------------------------------------------
// Free functions

bool IsRetryableStatus(long status) {
  return status == 408 || status == 429 || status == 500 || status == 502 || status == 503 ||
         status == 504;
}

std::chrono::milliseconds RetryDelay(const HttpHeaders& headers, int retry,
                                     const RetryPolicy& policy) {
  using std::chrono::milliseconds;
  // RateLimit: "api";r=0;t=45  (IETF draft; t = seconds until the window resets)
  for (std::string_view v : headers.get_all("RateLimit")) {
    size_t p = 0;
    while ((p = v.find("t=", p)) != std::string_view::npos) {
      if (p == 0 || v[p - 1] == ';' || v[p - 1] == ',' || v[p - 1] == ' ') {
        long secs = std::strtol(std::string(v.substr(p + 2)).c_str(), nullptr, 10);
        if (secs >= 0) return std::min(milliseconds(secs * 1000), policy.max_delay);
      }
      p += 2;
    }
  }
  if (auto ra = headers.get("Retry-After")) {
    std::string s(Trim(*ra));
    if (!s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
          return std::isdigit(static_cast<unsigned char>(c));
        })) {
      return std::min(milliseconds(std::stoll(s) * 1000), policy.max_delay);
    }
    time_t when = curl_getdate(s.c_str(), nullptr);
    if (when > 0) {
      auto wait = std::chrono::system_clock::from_time_t(when) - std::chrono::system_clock::now();
      auto ms = std::chrono::duration_cast<milliseconds>(wait);
      return std::clamp(ms, milliseconds(0), policy.max_delay);
    }
  }
  int shift = std::clamp(retry - 1, 0, 20);
  milliseconds d = policy.base_delay * (int64_t{1} << shift);
  return std::min(d, policy.max_delay);
}

int ErrnoForStatus(long status) {
  switch (status) {
    case 404:
    case 410:
      return ENOENT;
    case 401:
    case 403:
      return EACCES;
    case 400:
    case 416:
      return EINVAL;
    case 409:
    case 412:
      return EEXIST;
    case 413:
    case 507:
      return ENOSPC;
    case 405:
    case 501:
      return EOPNOTSUPP;
    default:
      return EIO;
  }
}

Error StatusError(long status, const HttpHeaders& headers, std::string_view body,
                  std::string_view what) {
  std::string msg = std::string(what) + ": HTTP " + std::to_string(status);
  std::string detail;
  if (auto code = headers.get("X-Error-Code")) detail = std::string(*code);
  if (auto m = headers.get("X-Error-Message")) {
    detail += detail.empty() ? "" : ": ";
    detail += std::string(*m);
  } else if (!body.empty()) {
    std::string_view b = body.substr(0, 200);
    std::string clean;
    for (char c : b) clean += (c == '\n' || c == '\r') ? ' ' : c;
    detail += detail.empty() ? "" : ": ";
    detail += clean;
  }
  if (!detail.empty()) msg += " (" + detail + ")";
  return Err(ErrnoForStatus(status), msg);
}

Error StatusError(const HttpResponse& response, std::string_view what) {
  return StatusError(response.status, response.headers, response.body, what);
}

std::string RedactUrl(std::string_view url) {
  size_t q = url.find_first_of("?#");
  std::string_view base = url.substr(0, q);
  size_t scheme = base.find("://");
  if (scheme != std::string_view::npos) {
    size_t host_start = scheme + 3;
    size_t slash = base.find('/', host_start);
    size_t at = base.find('@', host_start);
    if (at != std::string_view::npos && (slash == std::string_view::npos || at < slash)) {
      return std::string(base.substr(0, host_start)) + std::string(base.substr(at + 1));
    }
  }
  return std::string(base);
}

Result<std::string> ResolveUrl(std::string_view base, std::string_view location) {
  CURLU* u = curl_url();
  std::string b(base), l(location);
  std::string out;
  CURLUcode rc = curl_url_set(u, CURLUPART_URL, b.c_str(), 0);
  if (rc == CURLUE_OK) rc = curl_url_set(u, CURLUPART_URL, l.c_str(), 0);
  char* full = nullptr;
  if (rc == CURLUE_OK) rc = curl_url_get(u, CURLUPART_URL, &full, 0);
  if (rc == CURLUE_OK && full) out = full;
  curl_free(full);
  curl_url_cleanup(u);
  if (rc != CURLUE_OK) return Err(EIO, "http: bad redirect target " + RedactUrl(location));
  return out;
}

std::string PercentEncode(std::string_view text, std::string_view keep) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' ||
        keep.find(static_cast<char>(c)) != std::string_view::npos) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string LinkNext(const HttpHeaders& headers) {
  for (std::string_view v : headers.get_all("Link")) {
    // Entries are separated by commas: <url>; rel="next", <url2>; rel="prev"
    size_t pos = 0;
    while (pos < v.size()) {
      size_t lt = v.find('<', pos);
      if (lt == std::string_view::npos) break;
      size_t gt = v.find('>', lt);
      if (gt == std::string_view::npos) break;
      size_t next_lt = v.find('<', gt);
      std::string_view params = v.substr(
          gt + 1, next_lt == std::string_view::npos ? std::string_view::npos : next_lt - gt - 1);
      if (params.find("rel=\"next\"") != std::string_view::npos ||
          params.find("rel=next") != std::string_view::npos) {
        return std::string(v.substr(lt + 1, gt - lt - 1));
      }
      pos = gt + 1;
    }
  }
  return "";
}

std::string UrlOrigin(std::string_view url) {
  size_t scheme = url.find("://");
  if (scheme == std::string_view::npos) return "";
  size_t end = url.find_first_of("/?#", scheme + 3);
  std::string origin(url.substr(0, end));
  size_t at = origin.find('@', scheme + 3);
  if (at != std::string::npos) origin = origin.substr(0, scheme + 3) + origin.substr(at + 1);
  for (char& c : origin) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return origin;
}

}  // namespace hfvfs
