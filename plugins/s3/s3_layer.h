// File: s3_layer.h
//
// The `s3` source: one bucket (optionally a key prefix of it) as a read-write tree.
//
// Mapping: path "a/b" is key <prefix>"a/b". A directory is any CommonPrefix of a delimiter
// listing, or a "dir/" marker object; mkdir writes such a marker. Size, mtime and ETag of
// listed files come from the listing (no HEAD per entry). `version` is the ETag.
//
// Reads: If-Match on the ETag seen at open (an object replaced while open is ESTALE, never a
// mix of two versions). A handle read sequentially (from its start, or where its last read
// ended) is served by `read_streams` ranged GETs of `stream_segment` bytes in flight at once
// ahead of the reader (segment_reader.h), or with read_streams = 1 by one open-ended GET whose
// body goes straight into the readers' buffers; other reads are ranged GETs of exactly their
// bytes.
//
// Writes: create (or open with O_TRUNC) and sequential writes. Up to `part_size` bytes stay in
// memory and go up with one PUT at flush; beyond, a multipart upload starts and parts go up
// concurrently (at most `upload_concurrency` in flight: memory is bounded by
// (upload_concurrency + 1) * part_size per file) while the writer continues. flush() (every
// close(2)) returns only when the object is complete, and EIO if it is not; a failed
// multipart upload is aborted. A small file may be flushed and then appended to (`echo > f`
// closes a dup first); a multipart object, once complete, cannot (EOPNOTSUPP). Random writes,
// appends to existing objects and truncation to a size other than 0 or the current one are
// EOPNOTSUPP (stack the `sync` layer for them), and so are chmod and utimens (S3 keeps no
// mode or mtime of ours).
//
// Rename: a file is copied (UploadPartCopy above 5 GiB) then deleted; a directory is renamed
// key by key (copy all, then delete all). Neither is atomic: another client may see both names
// for a while, and a failure midway leaves both (nothing is lost).
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "hfvfs/layer.h"
#include "s3_client.h"
#include "segment_reader.h"

namespace hfvfs::s3 {

struct S3LayerOptions {
  std::string prefix;  // "" or ending with '/'
  uint64_t part_size = 8ull << 20;
  int upload_concurrency = 4;
  // A read at most this far ahead of a sequential reader's stream skips forward on it (the
  // skipped bytes are kept, at most twice this much, for the reads that asked for them later);
  // farther, it is a ranged GET of its own.
  uint64_t seek_window = 8ull << 20;
  // Ranged GETs in flight at once for one sequential reader (segment_reader.h): the object is
  // read in segments of `stream_segment` bytes, up to `read_streams` of them received at once
  // ahead of the reader; memory (read_streams + 1) * stream_segment per sequentially read
  // handle. 1 = one open-ended streaming GET per sequential reader (no read-ahead buffers).
  int read_streams = 4;
  uint64_t stream_segment = 8ull << 20;
  // The most all sequential readers of the mount hold in segment buffers at once: segments
  // ahead of a reader wait while it is spent (the one a reader is in always starts).
  uint64_t read_memory = 256ull << 20;
  uint64_t copy_part_size = 1ull << 30;  // UploadPartCopy part size for copies above 5 GiB
  uint64_t single_copy_limit = 5ull << 30;
  int list_page_size = 1000;  // max-keys of each ListObjectsV2 page
};

// What a file being written looks like to stat() and list() before its object exists.
struct PendingWrite {
  std::mutex mu;  // guards size, mtime_ns
  uint64_t size = 0;
  int64_t mtime_ns = 0;
};

// What open files share with their layer (files may outlive nothing, but they run uploads on
// other threads, so they hold it by shared_ptr rather than pointing into the layer).
class S3Core {
 public:
  S3Core(std::shared_ptr<S3Client> client, S3LayerOptions options)
      : client_(std::move(client)),
        options_(std::move(options)),
        read_budget_(std::make_shared<SegmentBudget>(options_.read_memory)) {}
  S3Client& client() const { return *client_; }
  const S3LayerOptions& options() const { return options_; }
  // Segment buffers of all sequential readers (options().read_memory).
  const std::shared_ptr<SegmentBudget>& read_budget() const { return read_budget_; }
  // The key of a path.
  std::string key(std::string_view path) const { return options_.prefix + std::string(path); }
  // Files being written, so that stat() and list() show them before their object exists.
  void register_pending(const std::string& path, std::shared_ptr<PendingWrite> p);
  void unregister_pending(const std::string& path, const PendingWrite* p);
  std::shared_ptr<PendingWrite> find_pending(std::string_view path) const;
  // A multipart upload whose abort failed (the server was unreachable): aborted again by
  // retry_aborts(), which the layer runs before each write operation and at shutdown, so no
  // orphan parts stay behind once the server answers again.
  void defer_abort(std::string key, std::string upload_id);
  Status retry_aborts();
  // (name, pending) for the files being written directly inside `dir`.
  std::vector<std::pair<std::string, std::shared_ptr<PendingWrite>>> pending_in(
      std::string_view dir) const;

  // Objects a HEAD (stat) saw moments ago, so that the open following the kernel's lookup
  // needs no HEAD of its own: an entry serves opens for kHeadFresh after its HEAD, and the
  // layer's own writes, removes and renames drop the entries they touch first. A reader opened
  // from one still reads under If-Match with its ETag, so an object replaced by another client
  // in between answers ESTALE, never bytes of two versions.
  void remember_head(std::string_view path, const ObjectInfo& info);
  std::optional<ObjectInfo> recent_head(std::string_view path);
  void forget_head(std::string_view path);
  void forget_heads_under(std::string_view dir);

 private:
  std::shared_ptr<S3Client> client_;
  S3LayerOptions options_;
  std::shared_ptr<SegmentBudget> read_budget_;
  mutable std::mutex pending_mu_;  // guards pending_; never held while taking another lock
  std::map<std::string, std::shared_ptr<PendingWrite>, std::less<>> pending_;
  std::mutex aborts_mu_;  // guards aborts_; never held during a request
  std::vector<std::pair<std::string, std::string>> aborts_;  // (key, upload id)
  struct RecentHead {
    ObjectInfo info;
    std::chrono::steady_clock::time_point seen;
  };
  std::mutex heads_mu_;  // guards heads_; never held during a request or with another lock
  std::map<std::string, RecentHead, std::less<>> heads_;
};

class S3Layer : public Layer {
 public:
  S3Layer(std::shared_ptr<S3Client> client, S3LayerOptions options);

  std::string_view type() const override { return "s3"; }
  Capabilities capabilities() const override;
  Status start() override;
  Status shutdown(std::chrono::steady_clock::time_point deadline) override;

  Result<Attr> stat(std::string_view path) override;
  Result<std::vector<DirEntry>> list(std::string_view dir) override;
  Result<std::unique_ptr<File>> open(std::string_view path, int flags) override;
  Result<std::unique_ptr<File>> create(std::string_view path, uint32_t mode, int flags) override;
  Status mkdir(std::string_view path, uint32_t mode) override;
  Status remove(std::string_view path) override;
  Status rmdir(std::string_view path) override;
  Status rename(std::string_view from, std::string_view to, bool noreplace) override;
  Status setattr(std::string_view path, const SetAttr& change) override;
  void counters(std::vector<std::pair<std::string, int64_t>>& out) const override;

  S3Client& client() const { return *client_; }
  const S3LayerOptions& options() const { return options_; }

 private:
  // The "dir/" prefix under which a directory's children live ("" at the root of the bucket).
  std::string dir_prefix(std::string_view path) const;
  // True when something lives under the directory prefix of `path` (a marker or children).
  Result<bool> dir_exists(std::string_view path);
  Result<std::unique_ptr<File>> open_writer(std::string_view path);
  Status copy_object(const std::string& from_key, const std::string& to_key, uint64_t size);
  Attr dir_attr() const;
  std::string key(std::string_view path) const { return core_->key(path); }
  // ENOENT when the parent folder of `path` does not exist, ENOTDIR when it is a file.
  Status check_parent(std::string_view path);
  // The error for a path found neither as an object nor as a folder: ENOTDIR when its parent
  // is a file ("hello.txt/x"), else ENOENT.
  Error not_found(std::string_view path);
  // Folders seen to exist recently (a short memory that spares creates in the same folder a
  // lookup each); forgotten after kKnownDirTtl, and at once by rmdir and rename.
  bool known_dir(std::string_view path);
  void remember_dir(std::string_view path);
  void forget_dirs_under(std::string_view path);

  // Names of folders listed (or created) recently, so that the lookup of a name that does not
  // exist (the kernel's lookup before every create) costs no request: a name missing from a
  // listing younger than kListingFresh is ENOENT at once. The layer's own creates, mkdirs,
  // removes and renames are applied to the listings it keeps (a name is only ever erased when
  // this layer removed it, so an extra name merely sends the lookup to the server). A listing
  // that has gone stale but fits one page is listed again (one request) on the next miss, up to
  // kListingKept after it was taken; larger folders are not kept.
  struct RecentListing {
    std::chrono::steady_clock::time_point listed;
    std::set<std::string, std::less<>> names;
  };
  enum class Listed { kUnknown, kPresent, kAbsent };
  // What a fresh listing of the parent of `path` says about it; kUnknown when there is none
  // (a stale one of one page is refreshed first, with a request).
  Listed listed(std::string_view path);
  void remember_listing(std::string_view dir, std::set<std::string, std::less<>> names);
  void listing_add(std::string_view path);
  void listing_erase(std::string_view path);
  void forget_listings_under(std::string_view path);

  std::shared_ptr<S3Client> client_;
  S3LayerOptions options_;
  std::shared_ptr<S3Core> core_;
  int64_t mount_time_ns_;
  std::mutex dirs_mu_;  // guards known_dirs_; never held during a request
  std::map<std::string, std::chrono::steady_clock::time_point, std::less<>> known_dirs_;
  std::mutex listings_mu_;  // guards listings_; never held during a request
  std::map<std::string, RecentListing, std::less<>> listings_;
};

}  // namespace hfvfs::s3
