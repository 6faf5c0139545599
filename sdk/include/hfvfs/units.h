// File: units.h
//
// Parsers for the units used in mount specs and on the command line. Each returns EINVAL with a
// message that shows the accepted forms.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "hfvfs/result.h"

namespace hfvfs {

// "10GiB", "512MiB", "64KiB", "1.5GB", "100MB", "4096", "4096B", "10G" (= GiB), case-insensitive.
Result<uint64_t> ParseSize(std::string_view text);

// "30s", "500ms", "2m", "1h", "1d", "1.5s", "0"; a bare number is seconds.
Result<std::chrono::milliseconds> ParseDuration(std::string_view text);

// "1.5 GiB" style, for logs and status.
std::string FormatSize(uint64_t bytes);

// Expands a leading `~` or `~/` (from $HOME) and `$HOME`; makes a relative path absolute
// against `base_dir` when it is not empty.
std::string ExpandPath(std::string_view path, std::string_view base_dir = {});

}  // namespace hfvfs
