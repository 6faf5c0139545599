// The `hfvfs` command line: mount, stop, status, check, plugins, keygen.
#include <cstring>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "crypt_key.h"
#include "daemon.h"
#include "hfvfs/plugin.h"
#include "hfvfs/version.h"
#include "inspect_commands.h"

namespace {

constexpr char kUsage[] =
    R"(hfvfs: a FUSE file system whose layers are plugins stacked by a TOML spec

usage:
  hfvfs mount SPEC [--mountpoint DIR] [-f] [-v]
        mount the stack of SPEC; returns once the mount is ready (or has failed)
        -f, --foreground   stay in the foreground, log to stderr too; Ctrl-C stops
        -v, --verbose      debug logs
        --fuse-debug       libfuse's trace of every request (with -f)
  hfvfs stop DIR       flush within the spec's stop_timeout, unmount, end the daemon
  hfvfs status         live mounts, their stacks and counters
  hfvfs check SPEC [--mountpoint DIR] [-v]
                       validate a spec, its mountpoint and its plugins without mounting
  hfvfs plugins        the plugins found, their versions and options
  hfvfs keygen FILE    write a new random key for the crypt layer (64 hex characters, mode
                       0600); refuses to replace an existing file
  hfvfs --version | --help

files: logs and run files under ~/.hfvfs (or $HFVFS_HOME)
plugins: the spec's plugin_path, then $HFVFS_PLUGIN_PATH, then the installed plugin folder
)";

int Usage(const std::string& problem) {
  std::cerr << "error: " << problem << "\n\n" << kUsage;
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) return Usage("no command");

  // Flags common to every command; the rest are positional or command-specific.
  bool verbose = false, foreground = false, fuse_debug = false;
  std::optional<std::string> mountpoint;
  std::vector<std::string> positional;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      std::cout << kUsage;
      return 0;
    }
    if (a == "--version" || a == "-V") {
      std::cout << "hfvfs " << HFVFS_SDK_VERSION << " (plugin ABI " << hfvfs::kAbiMajor << "."
                << hfvfs::kAbiMinor << ", " << HFVFS_BUILD_TAG << ")\n";
      return 0;
    }
    if (a == "-v" || a == "--verbose") {
      verbose = true;
    } else if (a == "-f" || a == "--foreground") {
      foreground = true;
    } else if (a == "--fuse-debug") {
      fuse_debug = true;
    } else if (a == "--mountpoint" || a == "-m") {
      if (i + 1 >= args.size()) return Usage(a + " needs a folder");
      mountpoint = args[++i];
    } else if (a.rfind("--mountpoint=", 0) == 0) {
      mountpoint = a.substr(std::strlen("--mountpoint="));
    } else if (a.size() > 1 && a[0] == '-') {
      return Usage("unknown option " + a);
    } else {
      positional.push_back(a);
    }
  }
  if (positional.empty()) return Usage("no command");
  const std::string command = positional[0];
  auto expect = [&](size_t arguments) { return positional.size() == arguments + 1; };

  using namespace hfvfs::kernel;
  if (command == "mount") {
    if (!expect(1)) return Usage("mount takes one SPEC file");
    MountRequest request;
    request.spec_path = positional[1];
    request.mountpoint = mountpoint;
    request.foreground = foreground;
    request.verbose = verbose;
    request.fuse_debug = fuse_debug;
    return RunMount(request);
  }
  if (command == "stop") {
    if (!expect(1)) return Usage("stop takes one mountpoint folder");
    return RunStop(positional[1], std::cout, std::cerr);
  }
  if (command == "status") {
    if (!expect(0)) return Usage("status takes no argument");
    return RunStatus(std::cout);
  }
  if (command == "check") {
    if (!expect(1)) return Usage("check takes one SPEC file");
    return RunCheck(positional[1], mountpoint, verbose);
  }
  if (command == "plugins") {
    if (!expect(0)) return Usage("plugins takes no argument");
    return RunPlugins();
  }
  if (command == "keygen") {
    if (!expect(1)) return Usage("keygen takes one FILE");
    hfvfs::Status written = hfvfs::crypt::GenerateKeyFile(positional[1]);
    if (!written) {
      std::cerr << "error: " << written.error().message() << "\n";
      return 1;
    }
    std::cout << "wrote a new key to " << positional[1]
              << " (mode 0600); keep a copy: without it the files cannot be read\n";
    return 0;
  }
  return Usage("unknown command '" + command + "'");
}
