#include "journal.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <spdlog/spdlog.h>

namespace hfvfs::sync {
namespace {

Error SysErr(const std::string& what) {
  int e = errno;
  return Err(e ? e : EIO, "sync journal: " + what + ": " + std::strerror(e));
}

Status WriteAll(int fd, const std::string& data, const std::string& where) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return SysErr("write " + where);
    }
    done += static_cast<size_t>(n);
  }
  return Ok();
}

Status FsyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return SysErr("open " + dir);
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return SysErr("fsync " + dir);
  return Ok();
}

std::string FormatRecord(const JournalRecord& r) {
  std::string line;
  if (r.op == JournalRecord::Op::kStaged) {
    line = "S " + std::to_string(r.seq) + " " + std::to_string(r.id) + " " +
           std::to_string(r.mode) + " " + (r.base_exists ? "1" : "0") + " " +
           Journal::Encode(r.base_version) + " " + Journal::Encode(r.path);
    if (r.has_content) line += " " + Journal::Encode(r.content);
  } else {
    line = "X " + std::to_string(r.seq) + " " + Journal::Encode(r.path);
  }
  return line + "\n";
}

}  // namespace

std::string Journal::Encode(const std::string& s) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out = "=";
  for (unsigned char c : s) {
    if (c <= 0x20 || c == '%' || c >= 0x7f) {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

bool Journal::Decode(std::string_view in, std::string& out) {
  if (in.empty() || in[0] != '=') return false;
  out.clear();
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 1; i < in.size(); ++i) {
    if (in[i] != '%') {
      out += in[i];
      continue;
    }
    if (i + 2 >= in.size()) return false;
    int hi = hex(in[i + 1]), lo = hex(in[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return true;
}

Result<std::unique_ptr<Journal>> Journal::Open(const std::string& dir) {
  std::unique_ptr<Journal> j(new Journal(dir));
  HFVFS_RETURN_IF_ERROR(j->Load());
  std::lock_guard lock(j->mu_);
  HFVFS_RETURN_IF_ERROR(j->Rewrite());
  return j;
}

Journal::~Journal() {
  if (fd_ >= 0) ::close(fd_);
}

Status Journal::Load() {
  std::string path = dir_ + "/journal";
  std::ifstream in(path, std::ios::binary);
  if (!in) return Ok();  // a first mount: no journal yet
  std::stringstream buf;
  buf << in.rdbuf();
  std::string text = buf.str();
  size_t pos = 0, lineno = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) {
      spdlog::warn("sync journal {}: ignoring a torn last line ({} bytes)", path,
                   text.size() - pos);
      break;
    }
    std::string line = text.substr(pos, nl - pos);
    pos = nl + 1;
    ++lineno;
    std::istringstream fields(line);
    std::string op;
    uint64_t seq = 0;
    fields >> op >> seq;
    bool ok = !fields.fail() && seq > 0;
    if (ok && op == "C") {
      live_.erase(seq);
    } else if (ok && (op == "S" || op == "X")) {
      JournalRecord r;
      r.seq = seq;
      std::string enc_path;
      if (op == "S") {
        r.op = JournalRecord::Op::kStaged;
        int exists = 0;
        std::string enc_version;
        fields >> r.id >> r.mode >> exists >> enc_version >> enc_path;
        r.base_exists = exists != 0;
        ok = !fields.fail() && Decode(enc_version, r.base_version);
        std::string enc_content;
        if (ok && fields >> enc_content) {
          r.has_content = true;
          ok = Decode(enc_content, r.content);
        }
      } else {
        r.op = JournalRecord::Op::kRemove;
        fields >> enc_path;
        ok = !fields.fail();
      }
      ok = ok && Decode(enc_path, r.path) && !r.path.empty();
      if (ok) live_[seq] = std::move(r);
    } else {
      ok = false;
    }
    if (!ok) spdlog::warn("sync journal {}:{}: ignoring a malformed record", path, lineno);
    if (seq >= next_seq_) next_seq_ = seq + 1;
  }
  return Ok();
}

Status Journal::Rewrite() {
  // Requires mu_, and no group fdatasync running on the old descriptor.
  std::string tmp = dir_ + "/journal.tmp";
  std::string path = dir_ + "/journal";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return SysErr("create " + tmp);
  std::string text;
  for (const auto& [seq, r] : live_) text += FormatRecord(r);
  Status st = WriteAll(fd, text, tmp);
  if (st && ::fsync(fd) != 0) st = SysErr("fsync " + tmp);
  ::close(fd);
  HFVFS_RETURN_IF_ERROR(st);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return SysErr("rename " + tmp);
  HFVFS_RETURN_IF_ERROR(FsyncDir(dir_));
  int newfd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (newfd < 0) return SysErr("open " + path);
  if (fd_ >= 0) ::close(fd_);
  fd_ = newfd;
  retired_since_rewrite_ = 0;
  synced_ = writes_;  // the rewritten file is durable
  synced_cv_.notify_all();
  return Ok();
}

std::vector<JournalRecord> Journal::Live() const {
  std::lock_guard lock(mu_);
  std::vector<JournalRecord> out;
  for (const auto& [seq, r] : live_) out.push_back(r);
  return out;
}

Status Journal::Commit(std::vector<JournalRecord*> add, const std::vector<uint64_t>& retire,
                       bool durable) {
  std::unique_lock lock(mu_);
  std::string text;
  uint64_t seq = next_seq_;
  for (JournalRecord* r : add) {
    r->seq = seq++;
    text += FormatRecord(*r);
  }
  for (uint64_t s : retire) text += "C " + std::to_string(s) + "\n";
  if (text.empty()) return Ok();
  HFVFS_RETURN_IF_ERROR(WriteAll(fd_, text, dir_ + "/journal"));
  next_seq_ = seq;
  for (JournalRecord* r : add) live_[r->seq] = *r;
  for (uint64_t s : retire) live_.erase(s);
  retired_since_rewrite_ += retire.size();
  const uint64_t mine = ++writes_;
  if (!durable) return Ok();
  // Group commit: the first waiter becomes the leader and syncs everything written so far;
  // the others wait for a sync that started after their write.
  while (synced_ < mine) {
    if (syncing_) {
      synced_cv_.wait(lock);
      continue;
    }
    syncing_ = true;
    const uint64_t upto = writes_;
    const int fd = fd_;
    lock.unlock();
    int rc = ::fdatasync(fd);
    int err = errno;
    lock.lock();
    syncing_ = false;
    ++sync_calls_;
    synced_cv_.notify_all();
    if (rc != 0) {
      errno = err;
      return SysErr("fdatasync " + dir_ + "/journal");
    }
    synced_ = std::max(synced_, upto);
  }
  return Ok();
}

std::optional<std::string> Journal::Content(uint64_t seq) const {
  std::lock_guard lock(mu_);
  auto it = live_.find(seq);
  if (it == live_.end() || !it->second.has_content) return std::nullopt;
  return it->second.content;
}

uint64_t Journal::syncs() const {
  std::lock_guard lock(mu_);
  return sync_calls_;
}

Status Journal::MaybeCompact() {
  std::unique_lock lock(mu_);
  if (retired_since_rewrite_ < 4096 || retired_since_rewrite_ < 4 * live_.size()) return Ok();
  synced_cv_.wait(lock, [&] { return !syncing_; });
  return Rewrite();
}

}  // namespace hfvfs::sync
