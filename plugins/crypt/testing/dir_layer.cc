#include "dir_layer.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "hfvfs/path.h"

namespace hfvfs::crypt::testing {
namespace {

Error Sys(std::string_view what, const std::string& path) {
  int e = errno;
  return Err(e, "dir: " + std::string(what) + " '" + path + "': " + std::strerror(e));
}

Attr FromStat(const struct stat& st) {
  Attr a;
  a.type = S_ISDIR(st.st_mode)   ? FileType::kDirectory
           : S_ISLNK(st.st_mode) ? FileType::kSymlink
                                 : FileType::kFile;
  a.size = static_cast<uint64_t>(st.st_size);
  a.mtime_ns = int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  a.mode = st.st_mode & 07777;
  a.version = std::to_string(a.mtime_ns) + "-" + std::to_string(a.size);
  return a;
}

class DirFile final : public File {
 public:
  DirFile(int fd, const DirLayerOptions& options)
      : fd_(fd), random_write_(options.random_write), on_read_(options.on_read) {}
  ~DirFile() override {
    if (fd_ >= 0) ::close(fd_);
  }
  Result<size_t> read(uint64_t offset, std::span<std::byte> buf) override {
    if (on_read_) on_read_(offset, buf.size());
    return ReadFully(buf, [&](size_t done, std::span<std::byte> rest) -> Result<size_t> {
      ssize_t n = ::pread(fd_, rest.data(), rest.size(), off_t(offset + done));
      if (n < 0) return Sys("pread", "");
      return size_t(n);
    });
  }
  Result<size_t> write(uint64_t offset, std::span<const std::byte> data) override {
    if (!random_write_) {
      struct stat st {};
      ::fstat(fd_, &st);
      if (offset != uint64_t(st.st_size)) return Err(EOPNOTSUPP, "dir: append-only");
    }
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n = ::pwrite(fd_, data.data() + done, data.size() - done, off_t(offset + done));
      if (n < 0) return Sys("pwrite", "");
      done += size_t(n);
    }
    return done;
  }
  Status truncate(uint64_t size) override {
    if (!random_write_) return Err(EOPNOTSUPP, "dir: append-only");
    if (::ftruncate(fd_, off_t(size)) != 0) return Sys("ftruncate", "");
    return Ok();
  }
  Status fsync(bool) override {
    if (::fsync(fd_) != 0) return Sys("fsync", "");
    return Ok();
  }
  Status close() override {
    int fd = fd_;
    fd_ = -1;
    if (fd >= 0 && ::close(fd) != 0) return Sys("close", "");
    return Ok();
  }
  Result<Attr> stat() override {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) return Sys("fstat", "");
    return FromStat(st);
  }

 private:
  int fd_;
  bool random_write_;
  std::function<void(uint64_t, size_t)> on_read_;
};

class DirLayer final : public Layer {
 public:
  DirLayer(std::string root, DirLayerOptions options) : root_(std::move(root)), options_(options) {}
  std::string_view type() const override { return "dir"; }
  Capabilities capabilities() const override {
    Capabilities c;
    c.writable = true;
    c.random_write = options_.random_write;
    c.rename = c.rename_dirs = c.atomic_rename = true;
    c.symlinks = options_.symlinks;
    c.set_mode = c.set_mtime = true;
    return c;
  }
  std::string Full(std::string_view path) const {
    return path.empty() ? root_ : root_ + "/" + std::string(path);
  }
  Result<Attr> stat(std::string_view path) override {
    struct stat st {};
    if (::lstat(Full(path).c_str(), &st) != 0) return Sys("stat", Full(path));
    return FromStat(st);
  }
  Result<std::vector<DirEntry>> list(std::string_view dir) override {
    std::string full = Full(dir);
    DIR* d = ::opendir(full.c_str());
    if (!d) return Sys("opendir", full);
    std::vector<DirEntry> out;
    while (dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      Result<Attr> a = stat(JoinPath(dir, name));
      if (a) out.push_back({name, *a});
    }
    ::closedir(d);
    return out;
  }
  Result<std::unique_ptr<File>> open(std::string_view path, int flags) override {
    if (!options_.random_write && (flags & O_ACCMODE) != O_RDONLY && !(flags & O_TRUNC)) {
      return Err(EOPNOTSUPP, "dir: append-only store cannot modify a file");
    }
    int fd = ::open(Full(path).c_str(), (flags & ~O_CREAT) | O_CLOEXEC);
    if (fd < 0) return Sys("open", Full(path));
    return std::unique_ptr<File>(std::make_unique<DirFile>(fd, options_));
  }
  Result<std::unique_ptr<File>> create(std::string_view path, uint32_t mode, int flags) override {
    int fd = ::open(Full(path).c_str(), flags | O_CREAT | O_CLOEXEC, mode);
    if (fd < 0) return Sys("create", Full(path));
    return std::unique_ptr<File>(std::make_unique<DirFile>(fd, options_));
  }
  Status mkdir(std::string_view path, uint32_t mode) override {
    if (::mkdir(Full(path).c_str(), mode) != 0) return Sys("mkdir", Full(path));
    return Ok();
  }
  Status remove(std::string_view path) override {
    if (::unlink(Full(path).c_str()) != 0) return Sys("unlink", Full(path));
    return Ok();
  }
  Status rmdir(std::string_view path) override {
    if (::rmdir(Full(path).c_str()) != 0) return Sys("rmdir", Full(path));
    return Ok();
  }
  Status rename(std::string_view from, std::string_view to, bool noreplace) override {
    if (::renameat2(AT_FDCWD, Full(from).c_str(), AT_FDCWD, Full(to).c_str(),
                    noreplace ? RENAME_NOREPLACE : 0) != 0) {
      return Sys("rename", Full(from));
    }
    return Ok();
  }
  Status symlink(std::string_view target, std::string_view path) override {
    if (!options_.symlinks) return Err(EOPNOTSUPP, "dir: no symlinks");
    if (::symlink(std::string(target).c_str(), Full(path).c_str()) != 0) {
      return Sys("symlink", Full(path));
    }
    return Ok();
  }
  Result<std::string> readlink(std::string_view path) override {
    if (!options_.symlinks) return Err(EOPNOTSUPP, "dir: no symlinks");
    std::string buf(8192, '\0');
    ssize_t n = ::readlink(Full(path).c_str(), buf.data(), buf.size());
    if (n < 0) return Sys("readlink", Full(path));
    buf.resize(size_t(n));
    return buf;
  }
  Status setattr(std::string_view path, const SetAttr& change) override {
    std::string full = Full(path);
    if (change.set_size && ::truncate(full.c_str(), off_t(change.size)) != 0) {
      return Sys("truncate", full);
    }
    if (change.set_mode && ::chmod(full.c_str(), change.mode) != 0) return Sys("chmod", full);
    if (change.set_mtime) {
      struct timespec ts[2] = {{0, UTIME_OMIT},
                               {change.mtime_ns / 1000000000, change.mtime_ns % 1000000000}};
      if (::utimensat(AT_FDCWD, full.c_str(), ts, 0) != 0) return Sys("utimens", full);
    }
    return Ok();
  }

 private:
  std::string root_;
  DirLayerOptions options_;
};

}  // namespace

std::shared_ptr<Layer> MakeDirLayer(std::string root, DirLayerOptions options) {
  return std::make_shared<DirLayer>(std::move(root), options);
}

}  // namespace hfvfs::crypt::testing
