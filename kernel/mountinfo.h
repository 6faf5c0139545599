// File: mountinfo.h
//
// The mount table of this process (/proc/self/mountinfo), decoded.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace hfvfs::kernel {

struct MountInfoEntry {
  std::string mountpoint;  // decoded (octal escapes of space, tab, newline, backslash undone)
  std::string fstype;      // "fuse.hfvfs", "ext4", ...
};

std::vector<MountInfoEntry> ReadMountinfo();

// The file system type mounted on `dir` (the last mount there), if `dir` is a mount point.
std::optional<std::string> MountTypeAt(const std::string& dir);

}  // namespace hfvfs::kernel
