#include "mountinfo.h"

#include <fstream>
#include <sstream>

namespace hfvfs::kernel {

namespace {

// Field 5 of a mountinfo line is the mount point, with space, tab, newline and backslash
// written as octal escapes.
std::string Decode(const std::string& field) {
  std::string decoded;
  auto octal = [&](size_t at) { return field[at] >= '0' && field[at] <= '7'; };
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size() && octal(i + 1) && octal(i + 2) && octal(i + 3)) {
      decoded += static_cast<char>((field[i + 1] - '0') * 64 + (field[i + 2] - '0') * 8 +
                                   (field[i + 3] - '0'));
      i += 3;
    } else {
      decoded += field[i];
    }
  }
  return decoded;
}

}  // namespace

std::vector<MountInfoEntry> ReadMountinfo() {
  std::vector<MountInfoEntry> entries;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, devno, root, point;
    if (!(fields >> id >> parent >> devno >> root >> point)) continue;
    MountInfoEntry entry;
    entry.mountpoint = Decode(point);
    // Optional fields end at " - "; the file system type follows.
    if (size_t dash = line.find(" - "); dash != std::string::npos) {
      std::istringstream rest(line.substr(dash + 3));
      rest >> entry.fstype;
    }
    entries.push_back(std::move(entry));
  }
  return entries;
}

std::optional<std::string> MountTypeAt(const std::string& dir) {
  std::optional<std::string> type;
  for (const MountInfoEntry& entry : ReadMountinfo())
    if (entry.mountpoint == dir) type = entry.fstype;
  return type;
}

}  // namespace hfvfs::kernel
