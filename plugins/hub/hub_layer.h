// File: hub_layer.h
//
// The `hub` source: a Hugging Face model, dataset or space at a revision, read-only and lazy.
//
// Contract:
// - start() resolves the revision to a commit; every listing and read is of that commit (a
//   stable view). `Attr::version` is "<commit>:<oid>". A revision given as a full commit sha is
//   pinned, so the layer claims `immutable`. changes() probes the revision's head (repo info
//   `sha`); when a branch moved it switches the view to the new commit and reports `rescan`.
// - list() is one tree-API level, following `Link: <...>; rel="next"` verbatim; LFS sizes are
//   the real sizes (`lfs.size`); entries outside the requested folder are dropped.
// - Reads use the resolve URL. A redirect (LFS to the CDN) is followed by the layer, its target
//   cached until shortly before it expires; the token is sent only to the endpoint's origin.
//   A sequential reader consumes one open streaming response; a seek within `seek_window`
//   ahead skips forward in it; anything else is one ranged request. Concurrent reads of one
//   handle (the kernel's readahead) that arrive out of order wait briefly for the earlier ones,
//   so the stream is consumed in order without keeping skipped bytes.
// - Token: `token_file` (re-read when it changes), else HF_TOKEN. Never logged.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "hfvfs/http.h"
#include "hfvfs/layer.h"

namespace hfvfs {

class ConfigView;

namespace hub {

enum class RepoType { kModel, kDataset, kSpace };

struct HubOptions {
  std::string repo;  // "org/name", "datasets/org/name", "spaces/org/name"
  std::string revision = "main";
  std::string subfolder;             // layer form ("" = the whole repo)
  std::string endpoint;              // "" = $HF_ENDPOINT or https://huggingface.co
  std::string token_file;            // "" = $HF_TOKEN
  std::optional<std::string> token;  // explicit token (tests); wins over the environment
  int max_retries = 3;
  std::chrono::milliseconds max_retry_wait{30000};
  std::chrono::milliseconds retry_base{500};
  std::chrono::milliseconds stall_timeout{30000};
  // Skip forward in an open stream up to this many bytes; the skipped bytes are kept (up to
  // twice this) for the reads that asked for them out of order.
  uint64_t seek_window = 8 << 20;
  // A read ahead of the stream, concurrent with others of its handle, waits this long for an
  // earlier read to arrive (and up to 100 ms for one already in flight) before skipping.
  std::chrono::milliseconds reorder_grace{3};
  std::chrono::milliseconds url_margin{60000};  // drop a signed URL this long before it expires
  std::vector<std::string> resolve;             // CURLOPT_RESOLVE entries (tests)
};

// Reads the options of a `[[layer]] type = "hub"` table; EINVAL names the key on bad input.
Result<HubOptions> ParseOptions(ConfigView& config);

// "datasets/org/name" -> {kDataset, "org/name"}; EINVAL when malformed.
Result<std::pair<RepoType, std::string>> ParseRepo(std::string_view repo);
// A git ref or commit: [A-Za-z0-9._/-]+, no "..", no leading '/'.
Status CheckRevision(std::string_view revision);
// The Unix time of a signed URL's expiry (CloudFront `Expires=`, S3 `X-Amz-Date` +
// `X-Amz-Expires`), or nullopt.
std::optional<int64_t> SignedUrlExpiry(std::string_view url);

// The token from a file (re-read when its mtime, size or inode change) or a fixed value.
class TokenSource {
 public:
  TokenSource(std::string file, std::string fixed)
      : file_(std::move(file)), fixed_(std::move(fixed)) {}
  // The current token, "" when none.
  std::string get();

 private:
  const std::string file_;
  const std::string fixed_;
  // mu_ guards the cached file identity and token.
  std::mutex mu_;
  int64_t mtime_ns_ = -1;
  uint64_t size_ = 0, ino_ = 0;
  std::string cached_;
};

class HubLayer : public Layer {
 public:
  explicit HubLayer(HubOptions options);
  ~HubLayer() override;

  std::string_view type() const override { return "hub"; }
  Capabilities capabilities() const override;
  Status start() override;
  Result<Attr> stat(std::string_view path) override;
  Result<std::vector<DirEntry>> list(std::string_view dir) override;
  Result<std::unique_ptr<File>> open(std::string_view path, int flags) override;
  Result<Changes> changes() override;
  void counters(std::vector<std::pair<std::string, int64_t>>& out) const override;

  // The commit the view serves (after start()).
  std::string commit() const;
  HttpClient& http() { return *http_; }

  // Used by HubFile: opens a body stream of `repo_path` at [offset, last] (last = nullopt: to
  // the end), following redirects and refreshing an expired signed URL. A null stream means
  // the offset is at or past the end.
  Result<std::unique_ptr<HttpStream>> open_range(const std::string& repo_path,
                                                 const std::string& commit, uint64_t offset,
                                                 std::optional<uint64_t> last);

  struct Counters {
    std::atomic<int64_t> listings{0};        // tree API pages fetched
    std::atomic<int64_t> resolves{0};        // requests to the resolve URL
    std::atomic<int64_t> url_cache_hits{0};  // reads that reused a cached CDN URL
    std::atomic<int64_t> url_refreshes{0};   // cached CDN URLs refused (expired) and re-resolved
    std::atomic<int64_t> streams{0};         // streaming responses opened
    std::atomic<int64_t> ranged{0};          // one-shot ranged reads
    std::atomic<int64_t> skipped_bytes{0};   // bytes read past to skip forward (kept a while)
    std::atomic<int64_t> saved_hits{0};      // reads served from bytes the stream skipped
    std::atomic<int64_t> resumed{0};         // bodies continued after being cut short
    std::atomic<int64_t> inorder_waits{0};   // reads that waited for an earlier one
  };
  Counters& hub_counters() { return counters_; }

 private:
  struct Listing {
    std::vector<DirEntry> entries;
    std::unordered_map<std::string, size_t> by_name;
  };
  struct SignedUrl {
    std::string url;
    std::chrono::steady_clock::time_point until;
  };

  std::string repo_path(std::string_view path) const;
  std::string api_base() const;  // {ep}/api/{type}s/{repo}
  std::string resolve_url(const std::string& commit, const std::string& repo_path) const;
  // Adds the token when `url` is on the endpoint's origin.
  void authorize(HttpRequest& req, std::string_view url);
  Result<std::pair<std::string, int64_t>> fetch_revision();  // (sha, mtime_ns)
  Result<std::shared_ptr<const Listing>> listing(const std::string& dir);
  Result<std::shared_ptr<const Listing>> fetch_listing(const std::string& commit, int64_t mtime_ns,
                                                       const std::string& dir);
  Error describe(const Error& e) const;

  const HubOptions opt_;
  RepoType type_ = RepoType::kModel;
  std::string repo_id_;
  std::string endpoint_;
  std::string endpoint_origin_;
  bool pinned_ = false;
  std::unique_ptr<HttpClient> http_;
  TokenSource token_;
  Counters counters_;

  // mu_ guards commit_, mtime_ns_, listings_, inflight_ and urls_. Never held across a
  // request.
  mutable std::mutex mu_;
  std::string commit_;
  int64_t mtime_ns_ = 0;
  std::map<std::string, std::shared_ptr<const Listing>> listings_;  // repo dir -> listing
  // commit + "\n" + repo dir -> the answer of the one fetch in flight for it (concurrent cold
  // lookups in one folder wait for it instead of listing again).
  std::map<std::string, std::shared_future<Result<std::shared_ptr<const Listing>>>> inflight_;
  std::unordered_map<std::string, SignedUrl> urls_;  // commit + ":" + repo path -> CDN URL
};

}  // namespace hub
}  // namespace hfvfs
