#include "inspect_commands.h"

#include <fmt/format.h>
#include <fmt/ostream.h>

#include <iostream>
#include <sstream>
#include <vector>

#include "plugin_loader.h"
#include "stack.h"

namespace hfvfs::kernel {
namespace {

// `hfvfs check` builds layers but never mounts or starts them: nothing calls back.
class NoopHost final : public Host {
 public:
  void invalidate(std::string_view, Invalidation) override {}
  std::string_view mount_id() const override { return "check"; }
  bool shutting_down() const override { return false; }
};

const char* KindName(LayerKind kind) {
  return kind == LayerKind::kSource ? "source" : kind == LayerKind::kWrapper ? "wrapper" : "?";
}

}  // namespace

void PrintErrorLines(std::ostream& err, const std::string& message) {
  std::istringstream lines(message);
  std::string line;
  while (std::getline(lines, line)) {
    if (!line.empty() && line[0] != ' ')
      err << "error: " << line << "\n";
    else
      err << line << "\n";
  }
}

int RunCheck(const std::string& spec_path, std::optional<std::string> mountpoint, bool verbose) {
  return RunCheck(spec_path, std::move(mountpoint), verbose, std::cout, std::cerr);
}

int RunCheck(const std::string& spec_path, std::optional<std::string> mountpoint, bool verbose,
             std::ostream& out, std::ostream& err) {
  Result<MountSpec> spec = LoadSpec(spec_path, mountpoint);
  if (!spec) {
    PrintErrorLines(err, spec.error().message());
    return 1;
  }
  int errors = 0;
  if (Status s = CheckMountpoint(*spec); !s) {
    PrintErrorLines(err, s.error().message());
    ++errors;
  }
  PluginLoader loader(spec->plugin_path);
  NoopHost host;
  Result<Stack> stack = BuildStack(*spec, host, loader);
  if (!stack) {
    PrintErrorLines(err, stack.error().message());
    ++errors;
  }
  for (const std::string& warning : spec->warnings) err << "warning: " << warning << "\n";
  if (errors > 0) {
    err << fmt::format("{}: {} error{}; nothing was mounted\n", spec_path, errors,
                       errors == 1 ? "" : "s");
    return 1;
  }

  std::vector<std::string> types;
  for (const LayerSpec& layer : spec->layers) types.push_back(layer.type);
  out << fmt::format("spec OK: {} (bottom to top)\n", fmt::join(types, " -> "));
  if (verbose) {
    out << fmt::format("  mountpoint: {} (from {})\n", spec->mountpoint, spec->mountpoint_origin);
    out << fmt::format("  plugin search path: {}\n", fmt::join(loader.search_path(), ":"));
    for (size_t i = 0; i < stack->layers.size(); ++i) {
      const PluginDescriptor& d = *stack->plugins[i];
      out << fmt::format("  layer {}: {} {} ({}) from {}\n", i + 1, d.name, d.plugin_version,
                         KindName(d.kind), stack->plugin_files[i]);
    }
  }
  return 0;
}

int RunPlugins() {
  PluginLoader loader;
  return RunPlugins(loader, std::cout);
}

int RunPlugins(PluginLoader& loader, std::ostream& out) {
  std::vector<FoundPlugin> found = loader.Discover();
  out << fmt::format("plugin search path: {}\n",
                     loader.search_path().empty()
                         ? std::string("(none)")
                         : fmt::format("{}", fmt::join(loader.search_path(), ":")));
  if (found.empty()) {
    out << "no plugins found (files named libhfvfs-<type>.so); add a folder to "
           "HFVFS_PLUGIN_PATH\n";
    return 1;
  }
  int refused = 0;
  for (const FoundPlugin& p : found) {
    out << "\n";
    if (!p.descriptor) {
      ++refused;
      out << fmt::format("{}: REFUSED\n  {}\n", p.type, p.refusal);
      continue;
    }
    const PluginDescriptor& d = *p.descriptor;
    out << fmt::format("{} {} ({}): {}\n", d.name, d.plugin_version, KindName(d.kind),
                       d.summary ? d.summary : "");
    out << fmt::format("  file: {}\n", p.path);
    if (!p.shadowed_by.empty())
      out << fmt::format("  not used: {} comes first in the search path\n", p.shadowed_by);
    if (d.option_count == 0) {
      out << "  options: none\n";
      continue;
    }
    out << "  options:\n";
    for (uint32_t i = 0; i < d.option_count; ++i) {
      const OptionInfo& o = d.options[i];
      std::string fallback = o.fallback && *o.fallback ? fmt::format("default {}", o.fallback)
                                                       : std::string("no default");
      out << fmt::format("    {} ({}, {}): {}\n", o.key ? o.key : "?", o.type ? o.type : "?",
                         fallback, o.help ? o.help : "");
    }
  }
  return refused == 0 ? 0 : 1;
}

}  // namespace hfvfs::kernel
