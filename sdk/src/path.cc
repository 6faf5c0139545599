#include "hfvfs/path.h"

#include <cerrno>
#include <string>

namespace hfvfs {

std::string JoinPath(std::string_view dir, std::string_view name) {
  if (dir.empty()) return std::string(name);
  if (name.empty()) return std::string(dir);
  std::string out;
  out.reserve(dir.size() + 1 + name.size());
  out.append(dir).append(1, '/').append(name);
  return out;
}

std::string_view ParentPath(std::string_view path) {
  size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? std::string_view() : path.substr(0, slash);
}

std::string_view BaseName(std::string_view path) {
  size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

std::vector<std::string_view> SplitPath(std::string_view path) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (start < path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) slash = path.size();
    if (slash > start) parts.push_back(path.substr(start, slash - start));
    start = slash + 1;
  }
  return parts;
}

bool IsUnder(std::string_view path, std::string_view dir) {
  if (dir.empty()) return true;
  if (path.size() < dir.size() || path.substr(0, dir.size()) != dir) return false;
  return path.size() == dir.size() || path[dir.size()] == '/';
}

Status CheckName(std::string_view name) {
  if (name.empty()) return Err(EINVAL, "empty path component");
  if (name == "." || name == "..")
    return Err(EINVAL, "path component '" + std::string(name) + "' is not allowed");
  if (name.find('/') != std::string_view::npos)
    return Err(EINVAL, "path component '" + std::string(name) + "' contains '/'");
  if (name.find('\0') != std::string_view::npos)
    return Err(EINVAL, "path component contains a NUL byte");
  return Ok();
}

Result<std::string> NormalizePath(std::string_view path) {
  std::string out;
  for (std::string_view part : SplitPath(path)) {
    if (part == ".") continue;
    if (part == "..") return Err(EINVAL, "path '" + std::string(path) + "': '..' is not allowed");
    if (part.find('\0') != std::string_view::npos) return Err(EINVAL, "path contains a NUL byte");
    if (!out.empty()) out.push_back('/');
    out.append(part);
  }
  return out;
}

}  // namespace hfvfs
