// File: daemon.h
//
// The commands that run or control mounts:
//   hfvfs mount SPEC [--mountpoint DIR] [-f] [-v]
//   hfvfs stop DIR
//   hfvfs status
//
// Files under the hfvfs home (~/.hfvfs, or $HFVFS_HOME):
//   logs/<name>.log      the daemon's log (spdlog), appended across mounts
//   run/<name>.pid       pid, mountpoint, spec, log file and stop bound of a live mount
//   run/<name>.status    rewritten every second: stack, per-layer and kernel counters
// where <name> is derived from the mountpoint (RunName).
//
// Stopping (SIGTERM, SIGINT, SIGHUP or `hfvfs stop`): kernel notifications stop, the stack's
// shutdown flushes within options.stop_timeout, the mount is detached, and the process exits
// at most a few seconds later even if a request is stuck in a layer or a file is still open
// (the kernel then fails those requests with ENOTCONN).
#pragma once

#include <optional>
#include <ostream>
#include <string>

namespace hfvfs::kernel {

struct MountRequest {
  std::string spec_path;
  std::optional<std::string> mountpoint;  // --mountpoint
  bool foreground = false;                // -f: no fork, logs also on stderr
  bool verbose = false;                   // -v: debug logs
  bool fuse_debug = false;                // --fuse-debug: libfuse's request trace
};

// Mounts and serves until stopped. Without -f, returns in the parent once the mount is ready
// (0) or has failed (1, with the daemon's message on stderr); the daemon itself returns from
// this call when it stops.
int RunMount(const MountRequest& request);

// Stops the mount on `dir` and waits for its daemon to exit (bounded). 0 when stopped.
int RunStop(const std::string& dir, std::ostream& out, std::ostream& err);

// Lists live mounts with their stacks and counters; removes the files of dead ones.
int RunStatus(std::ostream& out);

// ~/.hfvfs, or $HFVFS_HOME when set.
std::string HfvfsHome();

// The file name stem for a mountpoint: readable and unique ("mnt_gpt2-1f0c2a9d").
std::string RunName(const std::string& mountpoint);

}  // namespace hfvfs::kernel
