#include "crypt_key.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace hfvfs::crypt {
namespace {

// Reads at most `limit` bytes of `fd`; a key file is tiny, anything longer is not a key.
Result<std::string> ReadSmall(int fd, size_t limit, const std::string& path) {
  std::string data;
  char buf[256];
  while (data.size() <= limit) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Err(errno, "crypt: cannot read key file '" + path + "': " + std::strerror(errno));
    }
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
  }
  return data;
}

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

}  // namespace

Result<Key> ParseHexKey(std::string_view text, std::string_view where) {
  while (!text.empty() && IsSpace(text.front())) text.remove_prefix(1);
  while (!text.empty() && IsSpace(text.back())) text.remove_suffix(1);
  Key key{};
  size_t bin_len = 0;
  const char* end = nullptr;
  if (text.size() != 2 * kKeyBytes ||
      sodium_hex2bin(key.data(), key.size(), text.data(), text.size(), nullptr, &bin_len, &end) !=
          0 ||
      bin_len != kKeyBytes || end != text.data() + text.size()) {
    sodium_memzero(key.data(), key.size());
    return Err(EINVAL, "crypt: " + std::string(where) + " holds " + std::to_string(text.size()) +
                           " characters that are not a key; expected 32 raw bytes or 64 hex "
                           "characters (`hfvfs keygen FILE` makes one)");
  }
  return key;
}

Result<Key> LoadKeyFile(const std::string& path, std::string& warning) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    return Err(e, "crypt: cannot open key file '" + path + "': " + std::strerror(e));
  }
  struct stat st {};
  if (::fstat(fd, &st) == 0 && (st.st_mode & 077) != 0) {
    warning = "crypt: key file '" + path +
              "' is readable or writable by group or others; run `chmod 600 " + path + "`";
  }
  Result<std::string> data = ReadSmall(fd, 4096, path);
  ::close(fd);
  if (!data) return data.error();
  std::string& bytes = *data;
  if (bytes.size() == kKeyBytes) {
    Key key{};
    std::memcpy(key.data(), bytes.data(), kKeyBytes);
    sodium_memzero(bytes.data(), bytes.size());
    return key;
  }
  Result<Key> key = ParseHexKey(bytes, "key file '" + path + "'");
  sodium_memzero(bytes.data(), bytes.size());
  if (!key) {
    return Err(EINVAL, "crypt: key file '" + path + "' holds " + std::to_string(bytes.size()) +
                           " bytes that are not a key; expected 32 raw bytes or 64 hex "
                           "characters (`hfvfs keygen FILE` makes one)");
  }
  return key;
}

Status GenerateKeyFile(const std::string& path) {
  if (!SodiumReady()) return Err(EIO, "crypt: libsodium failed to initialise");
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    int e = errno;
    if (e == EEXIST) {
      return Err(EEXIST, "keygen: '" + path + "' exists; refusing to replace a key");
    }
    return Err(e, "keygen: cannot create '" + path + "': " + std::strerror(e));
  }
  // The mode is 0600 whatever the umask said.
  ::fchmod(fd, 0600);
  Key key{};
  randombytes_buf(key.data(), key.size());
  char hex[2 * kKeyBytes + 2];
  sodium_bin2hex(hex, sizeof hex, key.data(), key.size());
  sodium_memzero(key.data(), key.size());
  hex[2 * kKeyBytes] = '\n';
  size_t done = 0;
  const size_t total = 2 * kKeyBytes + 1;
  Status status = Ok();
  while (done < total) {
    ssize_t n = ::write(fd, hex + done, total - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      status = Err(errno, "keygen: cannot write '" + path + "': " + std::strerror(errno));
      break;
    }
    done += static_cast<size_t>(n);
  }
  sodium_memzero(hex, sizeof hex);
  if (status && ::fsync(fd) != 0) {
    status = Err(errno, "keygen: cannot sync '" + path + "': " + std::strerror(errno));
  }
  ::close(fd);
  if (!status) ::unlink(path.c_str());
  return status;
}

}  // namespace hfvfs::crypt
