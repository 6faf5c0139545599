#include "sync_layer.h"

#include <cstdlib>

#include "hfvfs/config.h"
#include "hfvfs/path.h"
#include "sync_core.h"

namespace hfvfs::sync {

Result<SyncOptions> ReadSyncOptions(ConfigView& config) {
  SyncOptions o;
  HFVFS_ASSIGN_OR_RETURN(o.poll_interval, config.get_duration("poll_interval", o.poll_interval));
  HFVFS_ASSIGN_OR_RETURN(o.metadata_ttl, config.get_duration("metadata_ttl", o.metadata_ttl));
  HFVFS_ASSIGN_OR_RETURN(o.staging_dir, config.get_path("staging_dir", "~/.cache/hfvfs/staging"));
  HFVFS_ASSIGN_OR_RETURN(o.staging_name, config.get_string("staging_name", ""));
  if (!o.staging_name.empty() && !CheckName(o.staging_name).ok()) {
    return Err(EINVAL, config.where("staging_name") + ": must be one folder name (no '/')");
  }
  HFVFS_ASSIGN_OR_RETURN(o.flush_debounce, config.get_duration("flush_debounce", o.flush_debounce));
  HFVFS_ASSIGN_OR_RETURN(o.flush_max_window,
                         config.get_duration("flush_max_window", o.flush_max_window));
  HFVFS_ASSIGN_OR_RETURN(o.shutdown_timeout,
                         config.get_duration("shutdown_timeout", o.shutdown_timeout));
  HFVFS_ASSIGN_OR_RETURN(o.max_staging_size,
                         config.get_size("max_staging_size", o.max_staging_size));
  HFVFS_ASSIGN_OR_RETURN(std::string conflict,
                         config.get_enum("conflict", "local-wins", {"local-wins", "keep-both"}));
  o.conflict = conflict == "keep-both" ? ConflictPolicy::kKeepBoth : ConflictPolicy::kLocalWins;
  if (o.flush_max_window < o.flush_debounce) {
    return Err(EINVAL,
               config.where("flush_max_window") + ": must not be shorter than flush_debounce");
  }
  return o;
}

SyncLayer::SyncLayer(std::shared_ptr<Layer> lower, Host& host, SyncOptions options)
    : LayerWrapper(lower), core_(std::make_shared<SyncCore>(lower, host, std::move(options))) {}

SyncLayer::~SyncLayer() { core_->StopWorkers(); }

Capabilities SyncLayer::capabilities() const { return core_->capabilities(); }
Status SyncLayer::start() { return core_->Start(); }
Status SyncLayer::shutdown(std::chrono::steady_clock::time_point deadline) {
  return core_->Shutdown(deadline);
}
Result<Attr> SyncLayer::stat(std::string_view path) { return core_->Stat(std::string(path)); }
Result<std::vector<DirEntry>> SyncLayer::list(std::string_view dir) {
  return core_->List(std::string(dir));
}
Result<std::unique_ptr<File>> SyncLayer::open(std::string_view path, int flags) {
  return core_->Open(std::string(path), flags);
}
Result<std::unique_ptr<File>> SyncLayer::create(std::string_view path, uint32_t mode, int flags) {
  return core_->Create(std::string(path), mode, flags);
}
Status SyncLayer::mkdir(std::string_view path, uint32_t mode) {
  return core_->Mkdir(std::string(path), mode);
}
Status SyncLayer::remove(std::string_view path) { return core_->Remove(std::string(path)); }
Status SyncLayer::rmdir(std::string_view path) { return core_->Rmdir(std::string(path)); }
Status SyncLayer::rename(std::string_view from, std::string_view to, bool noreplace) {
  return core_->Rename(std::string(from), std::string(to), noreplace);
}
Status SyncLayer::setattr(std::string_view path, const SetAttr& change) {
  return core_->Setattr(std::string(path), change);
}
Status SyncLayer::symlink(std::string_view target, std::string_view path) {
  return core_->Symlink(std::string(target), std::string(path));
}
Result<Changes> SyncLayer::changes() { return core_->TakeChanges(); }
void SyncLayer::counters(std::vector<std::pair<std::string, int64_t>>& out) const {
  core_->Counters(out);
}
void SyncLayer::status_notes(std::vector<std::string>& out) const { core_->StatusNotes(out); }
Status SyncLayer::PollNow() { return core_->PollOnce(); }
Status SyncLayer::FlushAllNow() {
  return core_->FlushAll(std::chrono::steady_clock::now() + std::chrono::minutes(5));
}

}  // namespace hfvfs::sync
