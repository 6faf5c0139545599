// File: path.h
//
// Layer paths: "" is the root, components joined by '/', no leading or trailing slash, never
// "." or "..". These helpers are the only place that joins and splits them.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "hfvfs/result.h"

namespace hfvfs {

// "a/b" + "c" = "a/b/c"; "" + "c" = "c".
std::string JoinPath(std::string_view dir, std::string_view name);

// "a/b/c" -> "a/b"; "c" -> "".
std::string_view ParentPath(std::string_view path);

// "a/b/c" -> "c"; "" -> "".
std::string_view BaseName(std::string_view path);

// "a/b/c" -> {"a", "b", "c"}; "" -> {}.
std::vector<std::string_view> SplitPath(std::string_view path);

// True when `path` is `dir` itself or lies below it ("a/b" is under "a", "ab" is not).
bool IsUnder(std::string_view path, std::string_view dir);

// Turns a user-given path ("/a//b/", "./a") into layer form; ".." and empty or NUL-holding
// components are EINVAL naming the path.
Result<std::string> NormalizePath(std::string_view path);

// EINVAL unless `name` is one valid component (no '/', not "." or "..", not empty, no NUL).
Status CheckName(std::string_view name);

}  // namespace hfvfs
