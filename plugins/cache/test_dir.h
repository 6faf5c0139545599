// File: test_dir.h
//
// A temporary folder removed at the end of a test, and `du`'s count of a folder.
#pragma once

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace hfvfs::cache::testing {

class TestDir {
 public:
  TestDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "hfvfs-cache-test-XXXXXX").string();
    path_ = ::mkdtemp(pattern.data());
  }
  ~TestDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TestDir(const TestDir&) = delete;
  TestDir& operator=(const TestDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Bytes of disk used by a folder and everything in it, as `du -s -B1` counts them.
inline uint64_t DiskUsage(const std::string& dir) {
  uint64_t total = 0;
  struct stat st {};
  if (::lstat(dir.c_str(), &st) == 0) total += static_cast<uint64_t>(st.st_blocks) * 512;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (::lstat(it->path().c_str(), &st) == 0) total += static_cast<uint64_t>(st.st_blocks) * 512;
  }
  return total;
}

}  // namespace hfvfs::cache::testing
