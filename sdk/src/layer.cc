#include "hfvfs/layer.h"

#include <cerrno>
#include <string>

namespace hfvfs {

// Default answers of the optional operations. Writes on a layer that did not override them are
// refused as a read-only file system would refuse them.

Status File::read_lent(uint64_t offset, std::span<std::byte> buf, const Deliver& deliver) {
  HFVFS_ASSIGN_OR_RETURN(size_t n, read(offset, buf));
  const std::span<const std::byte> piece(buf.data(), n);
  deliver(LentPieces(&piece, 1));
  return Ok();
}

Result<size_t> File::write(uint64_t, std::span<const std::byte>) {
  return Err(EROFS, "this file is read-only");
}
Status File::truncate(uint64_t) { return Err(EROFS, "this file is read-only"); }
Status File::flush() { return Ok(); }
Status File::fsync(bool) { return Ok(); }
Status File::close() { return Ok(); }

Status Layer::start() { return Ok(); }
Status Layer::shutdown(std::chrono::steady_clock::time_point) { return Ok(); }

static Error ReadOnly(std::string_view type, std::string_view what, std::string_view path) {
  return Err(EROFS, std::string(type) + ": " + std::string(what) + " '" + std::string(path) +
                        "': this layer is read-only");
}

Result<std::unique_ptr<File>> Layer::create(std::string_view path, uint32_t, int) {
  return ReadOnly(type(), "create", path);
}
Status Layer::mkdir(std::string_view path, uint32_t) { return ReadOnly(type(), "mkdir", path); }
Status Layer::remove(std::string_view path) { return ReadOnly(type(), "unlink", path); }
Status Layer::rmdir(std::string_view path) { return ReadOnly(type(), "rmdir", path); }
Status Layer::rename(std::string_view from, std::string_view, bool) {
  return ReadOnly(type(), "rename", from);
}
Status Layer::setattr(std::string_view path, const SetAttr&) {
  return ReadOnly(type(), "setattr", path);
}
Status Layer::symlink(std::string_view, std::string_view path) {
  return ReadOnly(type(), "symlink", path);
}
Result<std::string> Layer::readlink(std::string_view path) {
  return Err(EINVAL, std::string(type()) + ": '" + std::string(path) + "' is not a symlink");
}
Result<FsStats> Layer::statfs() { return FsStats{}; }
Result<Changes> Layer::changes() {
  return Err(ENOSYS, std::string(type()) + ": cannot report changes");
}
void Layer::counters(std::vector<std::pair<std::string, int64_t>>&) const {}
void Layer::status_notes(std::vector<std::string>&) const {}

}  // namespace hfvfs
