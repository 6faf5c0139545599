// File: config.h
//
// A plugin reads its options from its `[[layer]]` table of the mount spec through a
// ConfigView: typed getters with defaults, units for sizes and durations, `~` in paths. Every
// error names the spec file, the line and the key, and says what was expected:
//
//   spec.toml:12: layer 2 (cache): key 'max_size': expected a size like "10GiB", got "ten"
//
// Each getter marks its key as used; after the plugin's create() returns, the kernel reports
// every key that no getter asked for as an error ("unknown key"), so a typo never passes
// silently. The view reads the table only; it never throws.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hfvfs/result.h"

namespace hfvfs {

class ConfigView {
 public:
  // Parses `toml_text` and views its root table. `file` names it in messages.
  static Result<std::unique_ptr<ConfigView>> FromToml(std::string_view toml_text,
                                                      std::string file = "<inline>");
  // Reads and parses a spec file; relative paths in it are taken from its folder.
  static Result<std::unique_ptr<ConfigView>> FromFile(const std::string& path);

  virtual ~ConfigView() = default;

  // Names this view in messages ("layer 2 (cache)").
  virtual void set_label(std::string label) = 0;
  // The spec file this view was read from.
  virtual const std::string& file() const = 0;

  // Where this view sits, for messages: "spec.toml: layer 2 (cache)".
  virtual std::string where() const = 0;
  // Where a key is: "spec.toml:12: layer 2 (cache): key 'max_size'".
  virtual std::string where(std::string_view key) const = 0;

  virtual bool has(std::string_view key) const = 0;

  // Each getter: the key's value, or `fallback` when absent, or EINVAL naming the place and
  // the expected form when present with the wrong type or form.
  virtual Result<std::string> get_string(std::string_view key, std::string fallback) = 0;
  virtual Result<std::string> require_string(std::string_view key) = 0;  // absent = EINVAL
  virtual Result<bool> get_bool(std::string_view key, bool fallback) = 0;
  virtual Result<int64_t> get_int(std::string_view key, int64_t fallback) = 0;
  // "10GiB", "512MiB", "1.5GB", "4096" (bytes) or an integer.
  virtual Result<uint64_t> get_size(std::string_view key, uint64_t fallback) = 0;
  // "30s", "500ms", "2m", "1h", "0" or an integer number of seconds.
  virtual Result<std::chrono::milliseconds> get_duration(std::string_view key,
                                                         std::chrono::milliseconds fallback) = 0;
  // A path with `~` and `$HOME` expanded; relative paths are taken from the spec's folder.
  virtual Result<std::string> get_path(std::string_view key, std::string fallback) = 0;
  // A path or an array of paths, each expanded like get_path; absent = empty.
  virtual Result<std::vector<std::string>> get_path_list(std::string_view key) = 0;
  // One of `choices`; anything else is EINVAL listing them.
  virtual Result<std::string> get_enum(std::string_view key, std::string fallback,
                                       const std::vector<std::string>& choices) = 0;

  // A sub-table (`[layer.options]`) as its own view; absent = an empty view.
  virtual Result<std::unique_ptr<ConfigView>> table(std::string_view key) = 0;

  // An array of tables (`[[layer]]`) as views, in order; absent = empty.
  virtual Result<std::vector<std::unique_ptr<ConfigView>>> tables(std::string_view key) = 0;
  // The names of every key in the table, in file order.
  virtual std::vector<std::string> keys() const = 0;

  // Keys present in the table that no getter asked for.
  virtual std::vector<std::string> unused_keys() const = 0;
  // EINVAL listing every unused key with its line, or Ok.
  virtual Status check_unused() const = 0;
};

}  // namespace hfvfs
