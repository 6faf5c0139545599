// File: inspect_commands.h
//
// The CLI commands that look at specs and plugins without mounting anything:
//   hfvfs check SPEC [--mountpoint DIR] [-v]   validate a spec, its mountpoint and its stack
//   hfvfs plugins                              list the plugins found, or why they are refused
// Each returns the process exit status.
#pragma once

#include <optional>
#include <ostream>
#include <string>

namespace hfvfs::kernel {

class PluginLoader;

// Loads the spec, checks the mountpoint, loads every plugin and builds the stack with a no-op
// Host, without mounting or starting any layer. Prints every error (file, line, hint) to
// stderr, or "spec OK: <types bottom → top>" and the warnings to stdout. 0 when OK, else 1.
int RunCheck(const std::string& spec, std::optional<std::string> mountpoint, bool verbose);
int RunCheck(const std::string& spec, std::optional<std::string> mountpoint, bool verbose,
             std::ostream& out, std::ostream& err);

// Lists every plugin found in the default search path: name, version, kind, summary, file and
// options; refused files with the reason. 0 when none is refused, else 1.
int RunPlugins();
// The same over `loader`'s search path (tests).
int RunPlugins(PluginLoader& loader, std::ostream& out);

// Prints an Error's message, which may hold several errors one per line: "error: " before
// each, indented lines continue the one above.
void PrintErrorLines(std::ostream& err, const std::string& message);

}  // namespace hfvfs::kernel
