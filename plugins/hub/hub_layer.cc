#include "hub_layer.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "hfvfs/config.h"
#include "hfvfs/path.h"

namespace hfvfs::hub {

namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

constexpr std::string_view kDefaultEndpoint = "https://huggingface.co";

std::string TypePlural(RepoType t) {
  switch (t) {
    case RepoType::kDataset:
      return "datasets";
    case RepoType::kSpace:
      return "spaces";
    default:
      return "models";
  }
}

std::string ResolvePrefix(RepoType t) {
  switch (t) {
    case RepoType::kDataset:
      return "datasets/";
    case RepoType::kSpace:
      return "spaces/";
    default:
      return "";
  }
}

// RFC 3339 ("2024-02-19T10:57:45.000Z") to nanoseconds since the epoch; 0 when unparsable.
int64_t ParseRfc3339(std::string_view s) {
  std::tm tm{};
  std::string str(s);
  const char* end = strptime(str.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (!end) return 0;
  int64_t frac_ns = 0;
  if (*end == '.') {
    ++end;
    int64_t scale = 100000000;
    while (std::isdigit(static_cast<unsigned char>(*end))) {
      frac_ns += (*end - '0') * scale;
      scale /= 10;
      ++end;
    }
  }
  time_t secs = timegm(&tm);
  if (*end == '+' || *end == '-') {
    int sign = *end == '+' ? 1 : -1;
    int hh = 0, mm = 0;
    if (std::sscanf(end + 1, "%d:%d", &hh, &mm) >= 1) secs -= sign * (hh * 3600 + mm * 60);
  }
  return static_cast<int64_t>(secs) * 1000000000 + frac_ns;
}

std::string QueryParam(std::string_view url, std::string_view name) {
  size_t q = url.find('?');
  if (q == std::string_view::npos) return "";
  std::string_view query = url.substr(q + 1);
  size_t pos = 0;
  while (pos <= query.size()) {
    size_t amp = query.find('&', pos);
    std::string_view item = query.substr(pos, amp == std::string_view::npos ? amp : amp - pos);
    size_t eq = item.find('=');
    if (eq != std::string_view::npos && item.substr(0, eq) == name) {
      return std::string(item.substr(eq + 1));
    }
    if (amp == std::string_view::npos) break;
    pos = amp + 1;
  }
  return "";
}

bool IsHexSha(std::string_view s) {
  return s.size() == 40 && std::all_of(s.begin(), s.end(), [](char c) {
           return std::isdigit(static_cast<unsigned char>(c)) || (c >= 'a' && c <= 'f');
         });
}

// Reads exactly buf.size() bytes from `stream` unless its body ends first; errors propagate.
Result<size_t> FillFromStream(HttpStream& stream, std::span<std::byte> buf) {
  return ReadFully(buf, [&](size_t, std::span<std::byte> rest) { return stream.read(rest); });
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Options

Result<std::pair<RepoType, std::string>> ParseRepo(std::string_view repo) {
  RepoType type = RepoType::kModel;
  std::string_view id = repo;
  for (auto [prefix, t] :
       {std::pair{"datasets/", RepoType::kDataset}, std::pair{"spaces/", RepoType::kSpace},
        std::pair{"models/", RepoType::kModel}}) {
    std::string_view p(prefix);
    if (id.substr(0, p.size()) == p) {
      type = t;
      id.remove_prefix(p.size());
      break;
    }
  }
  auto ok_char = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  };
  std::vector<std::string_view> parts = SplitPath(id);
  bool valid = !id.empty() && parts.size() <= 2 && id.front() != '/' && id.back() != '/';
  for (std::string_view part : parts) {
    valid = valid && !part.empty() && part != "." && part != ".." &&
            std::all_of(part.begin(), part.end(), ok_char);
  }
  if (!valid) {
    return Err(EINVAL,
               "repo '" + std::string(repo) +
                   "': expected \"org/name\", \"datasets/org/name\" or \"spaces/org/name\"");
  }
  return std::pair{type, std::string(id)};
}

Status CheckRevision(std::string_view rev) {
  bool ok = !rev.empty() && rev.front() != '/' && rev.back() != '/' &&
            rev.find("..") == std::string_view::npos &&
            std::all_of(rev.begin(), rev.end(), [](char c) {
              return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' ||
                     c == '/' || c == '-';
            });
  if (!ok) {
    return Err(EINVAL, "revision '" + std::string(rev) +
                           "': expected a branch, tag, commit sha or refs/pr/N "
                           "(letters, digits, . _ / -)");
  }
  return Ok();
}

std::optional<int64_t> SignedUrlExpiry(std::string_view url) {
  std::string expires = QueryParam(url, "Expires");
  if (!expires.empty()) return std::strtoll(expires.c_str(), nullptr, 10);
  std::string amz_date = QueryParam(url, "X-Amz-Date");
  std::string amz_expires = QueryParam(url, "X-Amz-Expires");
  if (!amz_date.empty() && !amz_expires.empty()) {
    std::tm tm{};
    if (strptime(amz_date.c_str(), "%Y%m%dT%H%M%SZ", &tm)) {
      return static_cast<int64_t>(timegm(&tm)) + std::strtoll(amz_expires.c_str(), nullptr, 10);
    }
  }
  return std::nullopt;
}

Result<HubOptions> ParseOptions(ConfigView& config) {
  HubOptions o;
  HFVFS_ASSIGN_OR_RETURN(o.repo, config.require_string("repo"));
  if (auto r = ParseRepo(o.repo); !r) return r.error().With(config.where("repo"));
  HFVFS_ASSIGN_OR_RETURN(o.revision, config.get_string("revision", "main"));
  if (auto s = CheckRevision(o.revision); !s) return s.error().With(config.where("revision"));
  HFVFS_ASSIGN_OR_RETURN(std::string subfolder, config.get_string("subfolder", ""));
  if (!subfolder.empty()) {
    auto norm = NormalizePath(subfolder);
    if (!norm) return norm.error().With(config.where("subfolder"));
    o.subfolder = *norm;
  }
  HFVFS_ASSIGN_OR_RETURN(o.endpoint, config.get_string("endpoint", ""));
  HFVFS_ASSIGN_OR_RETURN(o.token_file, config.get_path("token_file", ""));
  HFVFS_ASSIGN_OR_RETURN(int64_t retries, config.get_int("max_retries", 3));
  if (retries < 0 || retries > 20) {
    return Err(EINVAL, config.where("max_retries") + ": expected 0..20");
  }
  o.max_retries = static_cast<int>(retries);
  HFVFS_ASSIGN_OR_RETURN(o.max_retry_wait, config.get_duration("max_retry_wait", o.max_retry_wait));
  HFVFS_ASSIGN_OR_RETURN(o.stall_timeout, config.get_duration("stall_timeout", o.stall_timeout));
  HFVFS_ASSIGN_OR_RETURN(o.seek_window, config.get_size("seek_window", o.seek_window));
  return o;
}

// ---------------------------------------------------------------------------------------------
// TokenSource

std::string TokenSource::get() {
  if (file_.empty()) return fixed_;
  struct stat st {};
  std::lock_guard lock(mu_);
  if (::stat(file_.c_str(), &st) != 0) {
    mtime_ns_ = -1;
    cached_.clear();
    return fixed_;  // no file (yet): the environment's token, if any
  }
  int64_t mtime = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  if (mtime != mtime_ns_ || static_cast<uint64_t>(st.st_size) != size_ || st.st_ino != ino_) {
    std::ifstream in(file_);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string text = ss.str();
    size_t b = text.find_first_not_of(" \t\r\n");
    size_t e = text.find_last_not_of(" \t\r\n");
    cached_ = b == std::string::npos ? "" : text.substr(b, e - b + 1);
    mtime_ns_ = mtime;
    size_ = static_cast<uint64_t>(st.st_size);
    ino_ = st.st_ino;
  }
  return cached_.empty() ? fixed_ : cached_;
}

// ---------------------------------------------------------------------------------------------
// HubFile

namespace {

class HubFile : public File {
 public:
  HubFile(HubLayer* layer, std::string repo_path, std::string commit, Attr attr,
          uint64_t seek_window, std::chrono::milliseconds reorder_grace)
      : layer_(layer),
        repo_path_(std::move(repo_path)),
        commit_(std::move(commit)),
        attr_(std::move(attr)),
        seek_window_(seek_window),
        reorder_grace_(reorder_grace) {}

  Result<Attr> stat() override { return attr_; }

  // Releases the open stream now (its socket), not when the kernel destroys the handle.
  Status close() override {
    std::lock_guard lock(mu_);
    stream_.reset();
    return Ok();
  }

  Result<size_t> read(uint64_t offset, std::span<std::byte> buf) override {
    if (offset >= attr_.size || buf.empty()) return size_t{0};
    buf = buf.first(static_cast<size_t>(std::min<uint64_t>(buf.size(), attr_.size - offset)));
    if (take_saved(offset, buf)) return buf.size();
    std::unique_lock lock(mu_);
    auto me = inflight_.insert(offset);
    Result<size_t> n = read_locked(lock, offset, buf);
    if (!lock.owns_lock()) lock.lock();
    inflight_.erase(me);
    lock.unlock();
    turn_.notify_all();  // the stream moved, or a read that waiters counted on is gone
    return n;
  }

 private:
  // read() with mu_ held on entry; `lock` may be released (a ranged read runs without it).
  Result<size_t> read_locked(std::unique_lock<std::mutex>& lock, uint64_t offset,
                             std::span<std::byte> buf) {
    if (inflight_.size() > 1) concurrent_ = true;
    // Another reader may have skipped over these bytes while we waited.
    if (take_saved(offset, buf)) return buf.size();
    if (stream_ && concurrent_ && offset > stream_pos_ && offset - stream_pos_ <= seek_window_) {
      wait_for_turn(lock, offset);
      if (take_saved(offset, buf)) return buf.size();
    }
    // A read a little behind the stream is a late one of a concurrent sequential reader (its
    // bytes were skipped over and are gone): one ranged read, not a new stream that would
    // drop the one ahead.
    const bool straggler = stream_ && offset < stream_pos_ && stream_pos_ - offset <= seek_window_;
    bool use_stream = false;
    if (stream_ && offset >= stream_pos_ && offset - stream_pos_ <= seek_window_) {
      use_stream = true;
    } else if (offset == last_end_ && offset != 0 && !straggler) {
      use_stream = true;  // the second read in a row at the end of the last: sequential
      stream_.reset();
      stream_pos_ = offset;
    }
    if (use_stream) {
      Result<size_t> n = read_stream_locked(offset, buf);
      if (n) last_end_ = offset + *n;
      return n;
    }
    lock.unlock();
    Result<size_t> n = read_ranged(offset, buf);
    if (n) {
      lock.lock();
      last_end_ = offset + *n;
    }
    return n;
  }

  // The kernel's readahead sends several reads of one file at once, and worker threads take
  // them in any order. A read ahead of the stream waits (bounded) for the earlier ones to move
  // the stream to it, so the stream's bytes go straight into the reads that asked for them
  // instead of being skipped over, kept and copied again. It waits up to kWaitForEarlier while
  // a read between the stream and it is in flight, reorder_grace_ otherwise (an earlier read
  // may be about to arrive). Requires mu_ (through `lock`).
  void wait_for_turn(std::unique_lock<std::mutex>& lock, uint64_t offset) {
    const auto start = Clock::now();
    for (;;) {
      if (!stream_ || stream_pos_ >= offset) return;
      auto earlier = inflight_.lower_bound(stream_pos_);
      bool coming = earlier != inflight_.end() && *earlier < offset;
      auto deadline = start + (coming ? std::max<Clock::duration>(kWaitForEarlier, reorder_grace_)
                                      : Clock::duration(reorder_grace_));
      if (Clock::now() >= deadline) return;
      ++layer_->hub_counters().inorder_waits;
      turn_.wait_until(lock, deadline);
    }
  }

  // One bounded ranged request (continued where it broke).
  Result<size_t> read_ranged(uint64_t offset, std::span<std::byte> buf) {
    ++layer_->hub_counters().ranged;
    size_t done = 0;
    int failures = 0;
    while (done < buf.size()) {
      HFVFS_ASSIGN_OR_RETURN(
          std::unique_ptr<HttpStream> s,
          layer_->open_range(repo_path_, commit_, offset + done, offset + buf.size() - 1));
      if (!s) break;  // past the end
      Result<size_t> n = FillFromStream(*s, buf.subspan(done));
      if (n) {
        done += *n;
        if (done == buf.size()) {
          std::array<std::byte, 1> probe;  // lets the exchange end so its connection is reused
          (void)s->read(probe);
          break;
        }
      } else {
        done += s->received();
      }
      // The body ended or broke before the range did: continue from where it stopped.
      if (++failures > layer_->http().options().retry.max_retries) {
        return (n ? Err(EIO, "body ended early") : n.error())
            .With("hub: " + repo_path_ + " at byte " + std::to_string(offset + done));
      }
      ++layer_->hub_counters().resumed;
    }
    if (done < buf.size()) {
      return Err(EIO, "hub: " + repo_path_ + ": the server sent " + std::to_string(offset + done) +
                          " bytes of " + std::to_string(attr_.size));
    }
    return done;
  }

  // Reads from the open stream (opening it at stream_pos_ if needed), skipping forward to
  // `offset` first. Requires mu_.
  Result<size_t> read_stream_locked(uint64_t offset, std::span<std::byte> buf) {
    int failures = 0;
    size_t done = 0;
    while (done < buf.size()) {
      if (!stream_) {
        HFVFS_ASSIGN_OR_RETURN(stream_,
                               layer_->open_range(repo_path_, commit_, stream_pos_, std::nullopt));
        if (!stream_) break;
        ++layer_->hub_counters().streams;
      }
      Status step = Ok();
      uint64_t target = offset + done;
      while (stream_pos_ < target) {
        // Skipped bytes go straight into the piece that keeps them (one copy, not two).
        size_t want = static_cast<size_t>(std::min<uint64_t>(target - stream_pos_, kSkipPiece));
        std::vector<std::byte> piece(want);
        Result<size_t> n = stream_->read(piece);
        if (!n) {
          step = n.error();
          break;
        }
        if (*n == 0) {
          step = Err(EIO, "body ended early");
          break;
        }
        piece.resize(*n);
        save(stream_pos_, std::move(piece));
        stream_pos_ += *n;
        layer_->hub_counters().skipped_bytes += static_cast<int64_t>(*n);
      }
      if (step) {
        Result<size_t> n = stream_->read(buf.subspan(done));
        if (n && *n > 0) {
          done += *n;
          stream_pos_ += *n;
          failures = 0;
          continue;
        }
        step = n ? Err(EIO, "body ended early") : n.error();
      }
      // The stream broke or ended before the file did: reopen where it stopped.
      stream_.reset();
      if (++failures > layer_->http().options().retry.max_retries) {
        return step.error().With("hub: " + repo_path_ + " at byte " + std::to_string(stream_pos_));
      }
      ++layer_->hub_counters().resumed;
    }
    if (done < buf.size()) {
      return Err(EIO, "hub: " + repo_path_ + ": the server sent " + std::to_string(offset + done) +
                          " bytes of " + std::to_string(attr_.size));
    }
    return done;
  }

  // Keeps bytes the stream skipped over: the kernel's concurrent readahead often asks for a
  // later block before an earlier one, and the earlier one is then served from here.
  void save(uint64_t offset, std::vector<std::byte> bytes) {
    std::lock_guard lock(saved_mu_);
    saved_bytes_ += bytes.size();
    saved_.emplace(offset, std::move(bytes));
    while (saved_bytes_ > 2 * seek_window_ && !saved_.empty()) {
      saved_bytes_ -= saved_.begin()->second.size();
      saved_.erase(saved_.begin());
    }
  }

  // Copies [offset, offset + buf.size()) from saved pieces when they hold all of it, and drops
  // the pieces wholly consumed. False (nothing copied) otherwise.
  bool take_saved(uint64_t offset, std::span<std::byte> buf) {
    std::lock_guard lock(saved_mu_);
    if (saved_.empty()) return false;
    auto it = saved_.upper_bound(offset);
    if (it == saved_.begin()) return false;
    --it;
    // Check that contiguous pieces cover the range before copying anything.
    uint64_t end = offset + buf.size();
    uint64_t covered = it->first;
    for (auto j = it; j != saved_.end() && j->first == covered && covered < end; ++j) {
      covered += j->second.size();
    }
    if (covered < end) return false;
    size_t done = 0;
    while (done < buf.size()) {
      uint64_t at = offset + done;
      size_t skip = static_cast<size_t>(at - it->first);
      size_t take = std::min(buf.size() - done, it->second.size() - skip);
      std::memcpy(buf.data() + done, it->second.data() + skip, take);
      done += take;
      if (skip + take == it->second.size()) {
        saved_bytes_ -= it->second.size();
        it = saved_.erase(it);
      }
    }
    ++layer_->hub_counters().saved_hits;
    return true;
  }

  HubLayer* layer_;
  const std::string repo_path_;
  const std::string commit_;
  const Attr attr_;
  const uint64_t seek_window_;
  // Largest piece the stream skips over in one read (a FUSE read is at most 1 MiB).
  static constexpr size_t kSkipPiece = 1 << 20;

  static constexpr auto kWaitForEarlier = std::chrono::milliseconds(100);
  const std::chrono::milliseconds reorder_grace_;

  // Lock order: mu_, then saved_mu_.
  // mu_ guards stream_, stream_pos_, last_end_, inflight_ and concurrent_. Held across a stream
  // read (one sequential reader at a time); ranged reads and reads of saved bytes run without
  // it. turn_ (with mu_) wakes reads waiting for the stream to reach them.
  std::mutex mu_;
  std::condition_variable turn_;
  std::unique_ptr<HttpStream> stream_;
  uint64_t stream_pos_ = 0;
  uint64_t last_end_ = 0;
  std::multiset<uint64_t> inflight_;  // offsets of the reads inside read()
  bool concurrent_ = false;           // two reads of this handle have overlapped in time
  // saved_mu_ guards saved_ (offset -> bytes the stream skipped) and saved_bytes_ (at most
  // 2 * seek_window_).
  std::mutex saved_mu_;
  std::map<uint64_t, std::vector<std::byte>> saved_;
  uint64_t saved_bytes_ = 0;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// HubLayer

HubLayer::HubLayer(HubOptions options)
    : opt_(std::move(options)),
      token_(opt_.token_file,
             opt_.token ? *opt_.token : (std::getenv("HF_TOKEN") ? std::getenv("HF_TOKEN") : "")) {
  if (auto r = ParseRepo(opt_.repo)) {
    type_ = r->first;
    repo_id_ = r->second;
  }
  endpoint_ = opt_.endpoint;
  if (endpoint_.empty()) {
    const char* env = std::getenv("HF_ENDPOINT");
    endpoint_ = env && *env ? env : std::string(kDefaultEndpoint);
  }
  while (!endpoint_.empty() && endpoint_.back() == '/') endpoint_.pop_back();
  endpoint_origin_ = UrlOrigin(endpoint_);
  pinned_ = IsHexSha(opt_.revision);
  HttpClientOptions http;
  http.user_agent = "hfvfs-hub/0.1";
  http.stall_timeout = opt_.stall_timeout;
  http.retry.max_retries = opt_.max_retries;
  http.retry.max_delay = opt_.max_retry_wait;
  http.retry.base_delay = opt_.retry_base;
  http.resolve = opt_.resolve;
  http_ = std::make_unique<HttpClient>(http);
}

HubLayer::~HubLayer() = default;

Capabilities HubLayer::capabilities() const {
  Capabilities c;
  c.immutable = pinned_;
  c.changes = !pinned_;
  return c;
}

std::string HubLayer::commit() const {
  std::lock_guard lock(mu_);
  return commit_;
}

std::string HubLayer::api_base() const {
  return endpoint_ + "/api/" + TypePlural(type_) + "/" + repo_id_;
}

std::string HubLayer::resolve_url(const std::string& commit, const std::string& repo_path) const {
  return endpoint_ + "/" + ResolvePrefix(type_) + repo_id_ + "/resolve/" + PercentEncode(commit) +
         "/" + PercentEncode(repo_path, "/");
}

std::string HubLayer::repo_path(std::string_view path) const {
  return JoinPath(opt_.subfolder, path);
}

void HubLayer::authorize(HttpRequest& req, std::string_view url) {
  if (UrlOrigin(url) != endpoint_origin_) return;  // never to the CDN or any other host
  std::string token = token_.get();
  if (!token.empty()) req.headers.emplace_back("Authorization", "Bearer " + token);
}

Error HubLayer::describe(const Error& e) const {
  std::string hint;
  if (e.code() == EACCES) {
    hint = " (a private or gated repo needs a token: HF_TOKEN or token_file)";
  }
  return Err(e.code(), "hub: " + opt_.repo + "@" + opt_.revision + ": " + e.message() + hint);
}

Result<std::pair<std::string, int64_t>> HubLayer::fetch_revision() {
  std::string url = api_base() + "/revision/" + PercentEncode(opt_.revision);
  HttpRequest req{.url = url};
  authorize(req, url);
  HFVFS_ASSIGN_OR_RETURN(HttpResponse r, http_->send(req));
  if (r.status != 200) return describe(StatusError(r, "repo info"));
  json doc = json::parse(r.body, nullptr, false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("sha") || !doc["sha"].is_string()) {
    return Err(EIO, "hub: " + opt_.repo + ": repo info without a commit sha");
  }
  int64_t mtime = 0;
  if (doc.contains("lastModified") && doc["lastModified"].is_string()) {
    mtime = ParseRfc3339(doc["lastModified"].get<std::string>());
  }
  return std::pair{doc["sha"].get<std::string>(), mtime};
}

Status HubLayer::start() {
  if (auto r = ParseRepo(opt_.repo); !r) return r.error();
  HFVFS_RETURN_IF_ERROR(CheckRevision(opt_.revision));
  HFVFS_ASSIGN_OR_RETURN(auto rev, fetch_revision());
  {
    std::lock_guard lock(mu_);
    commit_ = rev.first;
    mtime_ns_ = rev.second;
    listings_.clear();
    urls_.clear();
  }
  if (!opt_.subfolder.empty()) {
    HFVFS_ASSIGN_OR_RETURN(auto parent, listing(std::string(ParentPath(opt_.subfolder))));
    auto it = parent->by_name.find(std::string(BaseName(opt_.subfolder)));
    if (it == parent->by_name.end()) {
      return Err(ENOENT, "hub: " + opt_.repo + "@" + opt_.revision + ": no folder '" +
                             opt_.subfolder + "' (subfolder)");
    }
    if (!parent->entries[it->second].attr.is_dir()) {
      return Err(ENOTDIR, "hub: " + opt_.repo + ": subfolder '" + opt_.subfolder + "' is a file");
    }
  }
  // The root listing now: the mount's first lookup then costs no round trip, so a first read
  // is two (resolve, CDN).
  HFVFS_ASSIGN_OR_RETURN(auto root, listing(opt_.subfolder));
  (void)root;
  return Ok();
}

Result<std::shared_ptr<const HubLayer::Listing>> HubLayer::fetch_listing(const std::string& commit,
                                                                         int64_t mtime_ns,
                                                                         const std::string& dir) {
  auto out = std::make_shared<Listing>();
  std::string url = api_base() + "/tree/" + PercentEncode(commit);
  if (!dir.empty()) url += "/" + PercentEncode(dir, "/");
  int pages = 0;
  while (!url.empty()) {
    if (++pages > 100000) return Err(EIO, "hub: " + dir + ": tree pagination does not end");
    HttpRequest req{.url = url};
    authorize(req, url);
    HFVFS_ASSIGN_OR_RETURN(HttpResponse r, http_->send(req));
    ++counters_.listings;
    if (r.status != 200) {
      Error e = StatusError(r, "list '" + dir + "'");
      if (r.status == 404 &&
          r.headers.get("X-Error-Code") == std::optional<std::string_view>("EntryNotFound")) {
        return Err(ENOENT, "hub: no such folder '" + dir + "' at " + commit.substr(0, 12));
      }
      return describe(e);
    }
    json doc = json::parse(r.body, nullptr, false);
    if (doc.is_discarded() || !doc.is_array()) {
      return Err(EIO, "hub: list '" + dir + "': the tree API did not answer a JSON array");
    }
    for (const json& item : doc) {
      if (!item.is_object() || !item.contains("path") || !item["path"].is_string()) continue;
      std::string path = item["path"].get<std::string>();
      // Only direct children of `dir`: a raw-prefix match may return neighbours.
      if (ParentPath(path) != dir || !IsUnder(path, dir) || path == dir) continue;
      std::string name(BaseName(path));
      if (!CheckName(name)) continue;
      DirEntry e;
      e.name = name;
      std::string kind = item.contains("type") && item["type"].is_string()
                             ? item["type"].get<std::string>()
                             : "file";
      std::string oid =
          item.contains("oid") && item["oid"].is_string() ? item["oid"].get<std::string>() : "";
      e.attr.mtime_ns = mtime_ns;
      e.attr.version = commit + ":" + oid;
      if (kind == "directory") {
        e.attr.type = FileType::kDirectory;
        e.attr.mode = 0555;
      } else {
        e.attr.type = FileType::kFile;
        e.attr.mode = 0444;
        uint64_t size = item.contains("size") && item["size"].is_number_unsigned()
                            ? item["size"].get<uint64_t>()
                            : 0;
        if (item.contains("lfs") && item["lfs"].is_object() && item["lfs"].contains("size") &&
            item["lfs"]["size"].is_number_unsigned()) {
          size = item["lfs"]["size"].get<uint64_t>();  // the real size, not the pointer's
        }
        e.attr.size = size;
      }
      if (out->by_name.count(e.name)) continue;
      out->by_name.emplace(e.name, out->entries.size());
      out->entries.push_back(std::move(e));
    }
    std::string next = LinkNext(r.headers);
    if (!next.empty()) {
      HFVFS_ASSIGN_OR_RETURN(next, ResolveUrl(url, next));
      if (UrlOrigin(next) != endpoint_origin_) {
        return Err(EIO, "hub: list '" + dir + "': the next page is on another host (" +
                            RedactUrl(next) + ")");
      }
    }
    url = next;
  }
  return std::shared_ptr<const Listing>(std::move(out));
}

Result<std::shared_ptr<const HubLayer::Listing>> HubLayer::listing(const std::string& dir) {
  using ListingResult = Result<std::shared_ptr<const Listing>>;
  std::string commit;
  int64_t mtime = 0;
  std::shared_ptr<std::promise<ListingResult>> mine;
  std::shared_future<ListingResult> theirs;
  {
    std::lock_guard lock(mu_);
    if (commit_.empty()) return Err(EIO, "hub: " + opt_.repo + ": not started");
    auto it = listings_.find(dir);
    if (it != listings_.end()) return it->second;
    commit = commit_;
    mtime = mtime_ns_;
    const std::string key = commit + "\n" + dir;
    auto pending = inflight_.find(key);
    if (pending != inflight_.end()) {
      theirs = pending->second;
    } else {
      mine = std::make_shared<std::promise<ListingResult>>();
      inflight_.emplace(key, mine->get_future().share());
    }
  }
  if (!mine) return theirs.get();  // another thread is fetching this folder: share its answer
  ListingResult l = CatchAll("hub: list '" + dir + "'",
                             [&]() -> ListingResult { return fetch_listing(commit, mtime, dir); });
  {
    std::lock_guard lock(mu_);
    if (l && commit == commit_) listings_.emplace(dir, *l);
    inflight_.erase(commit + "\n" + dir);
  }
  mine->set_value(l);
  return l;
}

Result<Attr> HubLayer::stat(std::string_view path) {
  if (path.empty()) {
    Attr a;
    a.type = FileType::kDirectory;
    a.mode = 0555;
    std::lock_guard lock(mu_);
    a.mtime_ns = mtime_ns_;
    a.version = commit_ + ":" + opt_.subfolder;
    return a;
  }
  std::string rp = repo_path(path);
  std::string parent(ParentPath(rp));
  auto l = listing(parent);
  if (l) {
    auto it = (*l)->by_name.find(std::string(BaseName(rp)));
    if (it != (*l)->by_name.end()) return (*l)->entries[it->second].attr;
  } else if (l.code() != ENOENT) {
    return l.error();
  }
  // Not found: below a file is ENOTDIR, below a missing folder ENOENT (as POSIX says).
  std::string_view layer_parent = ParentPath(path);
  if (!layer_parent.empty()) {
    HFVFS_ASSIGN_OR_RETURN(Attr up, stat(layer_parent));
    if (!up.is_dir()) {
      return Err(ENOTDIR, "hub: '" + std::string(layer_parent) + "' is a file, not a folder");
    }
  }
  return Err(ENOENT, "hub: no such file '" + std::string(path) + "'");
}

Result<std::vector<DirEntry>> HubLayer::list(std::string_view dir) {
  if (!dir.empty()) {
    HFVFS_ASSIGN_OR_RETURN(Attr a, stat(dir));
    if (!a.is_dir()) return Err(ENOTDIR, "hub: '" + std::string(dir) + "' is not a folder");
  }
  HFVFS_ASSIGN_OR_RETURN(auto l, listing(repo_path(dir)));
  return l->entries;
}

Result<std::unique_ptr<File>> HubLayer::open(std::string_view path, int flags) {
  if ((flags & O_ACCMODE) != O_RDONLY || (flags & (O_TRUNC | O_CREAT | O_APPEND))) {
    return Err(EROFS, "hub: '" + std::string(path) + "': the Hub source is read-only");
  }
  HFVFS_ASSIGN_OR_RETURN(Attr a, stat(path));
  if (a.is_dir()) return Err(EISDIR, "hub: '" + std::string(path) + "' is a folder");
  return std::unique_ptr<File>(std::make_unique<HubFile>(this, repo_path(path), commit(), a,
                                                         opt_.seek_window, opt_.reorder_grace));
}

Result<std::unique_ptr<HttpStream>> HubLayer::open_range(const std::string& rp,
                                                         const std::string& commit, uint64_t offset,
                                                         std::optional<uint64_t> last) {
  const std::string key = commit + ":" + rp;
  std::string url;
  bool from_cache = false;
  {
    std::lock_guard lock(mu_);
    auto it = urls_.find(key);
    if (it != urls_.end()) {
      if (Clock::now() < it->second.until) {
        url = it->second.url;
        from_cache = true;
      } else {
        urls_.erase(it);
      }
    }
  }
  if (from_cache) ++counters_.url_cache_hits;
  if (url.empty()) url = resolve_url(commit, rp);
  const std::string what = "read '" + rp + "'";
  for (int hops = 0; hops < 8; ++hops) {
    HttpRequest req{.url = url};
    req.range = {{offset, last}};
    authorize(req, url);
    bool to_hub = UrlOrigin(url) == endpoint_origin_;
    if (to_hub) ++counters_.resolves;
    HFVFS_ASSIGN_OR_RETURN(std::unique_ptr<HttpStream> s, http_->open(req));
    long status = s->status();
    if (status == 206 || (status == 200 && offset == 0)) return s;
    if (status == 200) {
      // Range ignored: skip to the offset (rare; a server without range support).
      std::array<std::byte, 64 * 1024> sink;
      uint64_t skip = offset;
      while (skip > 0) {
        HFVFS_ASSIGN_OR_RETURN(
            size_t n, s->read(std::span(sink).first(std::min<uint64_t>(skip, sink.size()))));
        if (n == 0) return std::unique_ptr<HttpStream>();
        skip -= n;
      }
      return s;
    }
    if (status == 416) return std::unique_ptr<HttpStream>();
    if (status >= 300 && status < 400) {
      auto loc = s->headers().get("Location");
      if (!loc) return Err(EIO, "hub: " + what + ": redirect without Location");
      HFVFS_ASSIGN_OR_RETURN(std::string next, ResolveUrl(url, *loc));
      (void)s->read_all(64 * 1024);  // lets the connection be reused
      if (UrlOrigin(next) != endpoint_origin_) {
        // A CDN URL: cache it until shortly before it expires.
        auto now_sys = std::chrono::system_clock::now();
        auto until = Clock::now() + std::chrono::minutes(5);
        if (auto exp = SignedUrlExpiry(next)) {
          auto left = std::chrono::system_clock::from_time_t(static_cast<time_t>(*exp)) - now_sys;
          auto margin = std::min<Clock::duration>(opt_.url_margin, left / 4);
          until = Clock::now() + (left - margin);
        }
        std::lock_guard lock(mu_);
        urls_[key] = SignedUrl{next, until};
      }
      url = next;
      continue;
    }
    if (!to_hub && (status == 403 || status == 401 || status == 410) && from_cache) {
      // The cached signed URL expired or was revoked: ask the Hub again, once.
      ++counters_.url_refreshes;
      {
        std::lock_guard lock(mu_);
        urls_.erase(key);
      }
      from_cache = false;
      url = resolve_url(commit, rp);
      continue;
    }
    HttpHeaders headers = s->headers();
    Result<std::string> body = s->read_all(4096);
    return describe(StatusError(status, headers, body ? *body : "", what));
  }
  return Err(EIO, "hub: " + what + ": too many redirects");
}

Result<Changes> HubLayer::changes() {
  HFVFS_ASSIGN_OR_RETURN(auto rev, fetch_revision());
  Changes c;
  c.token = rev.first;
  std::lock_guard lock(mu_);
  if (rev.first != commit_ && !pinned_) {
    commit_ = rev.first;
    mtime_ns_ = rev.second;
    listings_.clear();
    urls_.clear();
    c.rescan = true;
  }
  return c;
}

void HubLayer::counters(std::vector<std::pair<std::string, int64_t>>& out) const {
  const HttpCounters& h = http_->counters();
  out.emplace_back("requests", h.requests.load());
  out.emplace_back("retries", h.retries.load());
  out.emplace_back("bytes_fetched", h.bytes_received.load());
  out.emplace_back("connections", h.connects.load());
  out.emplace_back("http_errors", h.errors.load());
  out.emplace_back("tree_pages", counters_.listings.load());
  out.emplace_back("resolves", counters_.resolves.load());
  out.emplace_back("cdn_url_cache_hits", counters_.url_cache_hits.load());
  out.emplace_back("cdn_url_refreshes", counters_.url_refreshes.load());
  out.emplace_back("streams", counters_.streams.load());
  out.emplace_back("ranged_reads", counters_.ranged.load());
  out.emplace_back("skipped_bytes", counters_.skipped_bytes.load());
  out.emplace_back("skipped_reused", counters_.saved_hits.load());
  out.emplace_back("inorder_waits", counters_.inorder_waits.load());
  out.emplace_back("resumed", counters_.resumed.load() + h.resumed.load());
}

}  // namespace hfvfs::hub
