// File: overlay_layer.h
//
// The overlay layer: a local writable directory (the upper layer) over any read-only view (the
// lower layer). Local files win, new files land locally, and the lower layer is never written,
// whatever its capabilities.
//
// The merged view, path by path:
// - An entry in the upper directory wins over a lower entry of the same name, also when the
//   types differ. Directories present in both are merged, unless the upper one is opaque (it
//   holds a `.wh..wh..opq` file): then the lower one's children are hidden.
// - A whiteout, an empty file `.wh.<name>` in an upper directory, hides the lower entry <name>.
// - Names that start with `.wh.` are reserved: hidden from listings in both layers, ENOENT on
//   lookup, EINVAL on create. The work directory `.wh..wh..work` at the upper root holds the
//   temporaries of copy-up (same file system as the upper, so the final step is a rename).
// - Changing a file that exists only below (open for writing, truncate, chmod, utimens,
//   rename) first copies it up (temp file in the work directory, then rename into place) when
//   `copy_up` is on, and answers EPERM when it is off (strict mode). Deleting it records a
//   whiteout (strict: EPERM). Renaming a directory that has lower content answers EXDEV, so
//   mv(1) falls back to copy + delete.
// - Symlinks in the upper layer never lead outside it: symlink() refuses an absolute target or
//   one that climbs above the root, and readlink() refuses such a link found in the upper
//   directory (EPERM). Only leading ".." are accepted in a target ("../a/b", not "a/../b"),
//   which keeps the check exact even when links point through other links.
//
// Every access to the upper directory goes through a directory descriptor opened when the
// layer is created (so the upper may be the mountpoint's own folder, covered by the mount
// afterwards) and resolves paths with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS): the
// overlay itself never follows a symlink inside the upper directory.
#pragma once

#include <sys/stat.h>
#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hfvfs/layer.h"
#include "unique_fd.h"

namespace hfvfs::overlay {

struct OverlayOptions {
  // Copy lower files up on change (true), or refuse changes to them with EPERM (false).
  bool copy_up = true;
  // A change of the modification time alone (touch, utimens) on a lower-only file succeeds
  // without effect instead of copying the file up (or answering EPERM when copy_up is off).
  // For caches that touch entries on every hit (ccache's LRU), so hits do not fill the upper
  // layer; `make` would not see such a touch.
  bool ignore_lower_touch = false;
};

// Reserved names in the merged view.
inline constexpr std::string_view kWhiteoutPrefix = ".wh.";
inline constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";
inline constexpr std::string_view kWorkDirName = ".wh..wh..work";

// True when `name` (one component) is reserved by the overlay.
bool IsReservedName(std::string_view name);

// Whether a symlink at `link_path` (layer path) with `target` stays inside the layer's root:
// relative, with ".." only as leading components and no more of them than the link's depth.
// OK or EPERM naming the link and saying why.
Status CheckSymlinkContained(std::string_view link_path, std::string_view target);

class OverlayLayer final : public LayerWrapper {
 public:
  // `upper_root` is an open directory descriptor of the upper directory (O_PATH is enough).
  // `upper_label` names it in messages.
  OverlayLayer(std::shared_ptr<Layer> lower, UniqueFd upper_root, std::string upper_label,
               OverlayOptions options);
  // A layer whose upper directory could not be opened yet (a spec being checked): start()
  // fails with `why`.
  OverlayLayer(std::shared_ptr<Layer> lower, std::string why, OverlayOptions options);

  // Opens (and, unless `create_missing` is false, creates) `upper_dir` and builds the layer.
  static Result<std::unique_ptr<OverlayLayer>> Open(std::shared_ptr<Layer> lower,
                                                    const std::string& upper_dir,
                                                    OverlayOptions options,
                                                    bool create_missing = true);

  std::string_view type() const override { return "overlay"; }
  Capabilities capabilities() const override;
  // Starts the lower layer, creates the work directory and clears temporaries left by a crash.
  Status start() override;

  Result<Attr> stat(std::string_view path) override;
  Result<std::vector<DirEntry>> list(std::string_view dir) override;
  Result<std::unique_ptr<File>> open(std::string_view path, int flags) override;
  Result<std::unique_ptr<File>> create(std::string_view path, uint32_t mode, int flags) override;
  Status mkdir(std::string_view path, uint32_t mode) override;
  Status remove(std::string_view path) override;
  Status rmdir(std::string_view path) override;
  Status rename(std::string_view from, std::string_view to, bool noreplace) override;
  Status setattr(std::string_view path, const SetAttr& change) override;
  Status symlink(std::string_view target, std::string_view path) override;
  Result<std::string> readlink(std::string_view path) override;
  Result<FsStats> statfs() override;
  Result<Changes> changes() override;
  void counters(std::vector<std::pair<std::string, int64_t>>& out) const override;

 private:
  // What the upper directory says about one path.
  struct Lookup {
    enum class Upper : uint8_t { kAbsent, kPresent, kWhiteout };
    Upper upper = Upper::kAbsent;
    struct stat st {};  // valid when kPresent
    // The lower layer's entry at this path may show (no whiteout, no opaque or non-directory
    // upper ancestor).
    bool lower_here = true;
    // The lower layer's children of this path may show (lower_here, and the upper directory
    // here, if any, is not opaque).
    bool lower_below = true;
    // The upper directory holds the parent (so a lower ENOTDIR below it means "no entry").
    bool upper_parent = false;

    bool present() const { return upper == Upper::kPresent; }
  };

  // The merged entry: from the upper directory or from the lower layer.
  struct Merged {
    Lookup lookup;
    std::optional<Attr> lower_attr;  // set when the entry comes from the lower layer
    Attr attr;
    bool from_upper() const { return lookup.present(); }
  };

  Result<Lookup> Resolve(std::string_view path) const;
  // The merged entry at `path`, or ENOENT / ENOTDIR.
  Result<Merged> ResolveMerged(std::string_view path);
  // The lower layer's entry when the lookup lets it show; nullopt when it has none there.
  Result<std::optional<Attr>> LowerEntry(std::string_view path, const Lookup& lookup);
  // The lower layer's entry at a path, asked before taking change_mutex_: the lower layer may
  // be remote, and its answers must not hold up every other change. `asked` is false when the
  // upper layer hid the path then (or held it, with skip_if_upper): LowerAfterPeek then asks.
  struct LowerPeek {
    bool asked = false;
    std::optional<Attr> attr;
  };
  Result<LowerPeek> PeekLower(std::string_view path, bool skip_if_upper);
  // The lower entry as the upper layer lets it show now (under change_mutex_).
  Result<std::optional<Attr>> LowerAfterPeek(std::string_view path, const Lookup& lookup,
                                             const LowerPeek& peek);
  // EEXIST / EINVAL / ENOENT unless `path` may name a new entry: a valid name, not reserved,
  // under no reserved folder.
  Status CheckNewName(std::string_view path) const;
  Result<std::vector<DirEntry>> ListMerged(std::string_view dir, const Lookup& lookup);

  // Opens the upper directory `dir` (O_PATH, or O_RDONLY to list it), resolving beneath the
  // root without symlinks.
  Result<UniqueFd> OpenUpperDir(std::string_view dir, bool for_listing = false) const;
  // Makes the merged directory `dir` exist in the upper layer (copying directory modes from
  // below) and returns its descriptor. Caller holds change_mutex_.
  Result<UniqueFd> EnsureUpperDir(std::string_view dir);
  // Copies a lower-only entry into the upper layer: a file (its first `max_bytes` bytes),
  // a directory or a symlink. Takes change_mutex_ for the final rename only; an entry that
  // appeared meanwhile wins and the copy is dropped.
  Status CopyUp(std::string_view path, const Attr& lower_attr, uint64_t max_bytes);
  Status CopyUpFile(std::string_view path, const Attr& lower_attr, uint64_t max_bytes);
  Status WriteWhiteout(int parent_fd, std::string_view name, std::string_view path);
  Status RemoveWhiteout(int parent_fd, std::string_view name, std::string_view path);
  // Removes the overlay's bookkeeping files (whiteouts, opaque marker) inside an upper dir.
  Status ClearBookkeeping(int dir_fd, std::string_view path);
  Result<std::unique_ptr<File>> OpenUpperFile(std::string_view path, int flags);
  Error Strict(std::string_view what, std::string_view path) const;
  Status CheckUsable() const;

  std::string upper_label_;
  UniqueFd upper_root_;   // O_PATH directory descriptor of the upper root
  UniqueFd work_dir_;     // O_PATH descriptor of <upper>/.wh..wh..work, after start()
  std::string unusable_;  // why the layer cannot serve (no upper directory); empty = usable
  // The upper root holds an opaque marker (put there by hand): the lower layer shows nothing.
  // Read once by start().
  bool root_opaque_ = false;
  OverlayOptions options_;

  // Serialises namespace changes of the upper directory (create, mkdir, remove, rmdir,
  // rename, symlink, whiteouts, the final rename of a copy-up), so that each one's checks and
  // its change are one step as seen by the others. Lookups and file I/O take no lock. Never
  // held while copying file data; the lower layer is asked before it is taken where the
  // answer can be (PeekLower), except for folders the upper layer lacks (EnsureUpperDir) and
  // rmdir's emptiness check.
  std::mutex change_mutex_;

  std::atomic<uint64_t> temp_counter_{0};
  std::atomic<int64_t> copy_ups_{0};
  std::atomic<int64_t> copy_up_bytes_{0};
  std::atomic<int64_t> whiteouts_written_{0};
};

}  // namespace hfvfs::overlay
