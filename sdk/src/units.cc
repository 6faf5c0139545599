#include "hfvfs/units.h"

#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <string>

#include <fmt/format.h>

namespace hfvfs {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// Splits "1.5GiB" into 1.5 and "gib". False when there is no leading number.
bool SplitNumber(std::string_view text, double& number, std::string& unit) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'))
    ++i;
  if (i == 0) return false;
  std::string digits(text.substr(0, i));
  char* end = nullptr;
  number = std::strtod(digits.c_str(), &end);
  if (end != digits.c_str() + digits.size()) return false;
  unit = Lower(Trim(text.substr(i)));
  return true;
}

}  // namespace

Result<uint64_t> ParseSize(std::string_view text) {
  text = Trim(text);
  double number = 0;
  std::string unit;
  auto bad = [&] {
    return Err(EINVAL, fmt::format("expected a size like \"10GiB\", \"512MiB\", \"100MB\" or a "
                                   "number of bytes, got \"{}\"",
                                   text));
  };
  if (!SplitNumber(text, number, unit)) return bad();
  double mult;
  if (unit.empty() || unit == "b") {
    mult = 1;
  } else if (unit == "k" || unit == "kib") {
    mult = 1024.0;
  } else if (unit == "m" || unit == "mib") {
    mult = 1024.0 * 1024;
  } else if (unit == "g" || unit == "gib") {
    mult = 1024.0 * 1024 * 1024;
  } else if (unit == "t" || unit == "tib") {
    mult = 1024.0 * 1024 * 1024 * 1024;
  } else if (unit == "kb") {
    mult = 1e3;
  } else if (unit == "mb") {
    mult = 1e6;
  } else if (unit == "gb") {
    mult = 1e9;
  } else if (unit == "tb") {
    mult = 1e12;
  } else {
    return bad();
  }
  double bytes = number * mult;
  if (!std::isfinite(bytes) || bytes >= 1.8e19) return bad();
  return static_cast<uint64_t>(std::llround(bytes));
}

Result<std::chrono::milliseconds> ParseDuration(std::string_view text) {
  text = Trim(text);
  double number = 0;
  std::string unit;
  auto bad = [&] {
    return Err(EINVAL, fmt::format("expected a duration like \"30s\", \"500ms\", \"2m\" or \"1h\", "
                                   "got \"{}\"",
                                   text));
  };
  if (!SplitNumber(text, number, unit)) return bad();
  double ms;
  if (unit.empty() || unit == "s") {
    ms = number * 1000;
  } else if (unit == "ms") {
    ms = number;
  } else if (unit == "m" || unit == "min") {
    ms = number * 60'000;
  } else if (unit == "h") {
    ms = number * 3'600'000;
  } else if (unit == "d") {
    ms = number * 86'400'000;
  } else {
    return bad();
  }
  if (!std::isfinite(ms) || ms > 1e15) return bad();
  return std::chrono::milliseconds(static_cast<int64_t>(std::llround(ms)));
}

std::string FormatSize(uint64_t bytes) {
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 5) {
    v /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.1f} {}", v, kUnits[u]);
}

std::string ExpandPath(std::string_view path, std::string_view base_dir) {
  std::string out(path);
  const char* home = std::getenv("HOME");
  std::string h = home ? home : "";
  if (out == "~" || out.rfind("~/", 0) == 0) {
    out = h + out.substr(1);
  } else if (out.rfind("$HOME", 0) == 0 && (out.size() == 5 || out[5] == '/')) {
    out = h + out.substr(5);
  }
  if (!out.empty() && out[0] != '/' && !base_dir.empty()) {
    out = std::string(base_dir) + "/" + out;
  }
  return out;
}

}  // namespace hfvfs
