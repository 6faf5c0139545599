#include "daemon.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <pthread.h>
#include <signal.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include "fuse_adapter.h"
#include "inspect_commands.h"
#include "mount_host.h"
#include "mountinfo.h"
#include "stack.h"
#include "vfs.h"

namespace hfvfs::kernel {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

// After the stack's shutdown and the detach, how long the daemon waits for its FUSE loop to
// end before exiting anyway (a request stuck in a layer, or a file still open).
constexpr auto kExitGrace = std::chrono::seconds(3);
// `hfvfs stop` waits this much beyond the mount's stop_timeout before killing the daemon.
constexpr auto kStopSlack = std::chrono::seconds(10);

uint64_t Fnv1a(std::string_view text) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

std::string Absolute(const std::string& path) {
  std::error_code ec;
  fs::path abs = fs::absolute(path, ec);
  if (ec) abs = path;
  std::string out = abs.lexically_normal().string();
  if (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

// The canonical form when the folder can be resolved (not for a dead mount), else Absolute.
std::string Canonical(const std::string& path) {
  std::error_code ec;
  fs::path real = fs::canonical(path, ec);
  if (ec) return Absolute(path);
  return real.string();
}

bool WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Writes `text` to `path` atomically (temp file + rename), so readers never see half a file.
bool WriteFileAtomically(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) return false;
    out << text;
    if (!out.flush()) return false;
  }
  return std::rename(tmp.c_str(), path.c_str()) == 0;
}

bool ProcessAlive(pid_t pid) {
  if (pid <= 0 || kill(pid, 0) != 0) return errno == EPERM;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string content;
  std::getline(stat, content);
  // "pid (comm) S ...": a zombie has exited, it is only waiting to be reaped.
  size_t close = content.rfind(')');
  if (close != std::string::npos && close + 2 < content.size() && content[close + 2] == 'Z')
    return false;
  return true;
}

bool IsFuseMountpoint(const std::string& dir) {
  std::optional<std::string> type = MountTypeAt(dir);
  return type && type->rfind("fuse", 0) == 0;
}

// Lazy unmount: works while files are open; they fail once the daemon is gone.
bool DetachMount(const std::string& dir) {
  if (geteuid() == 0) return umount2(dir.c_str(), MNT_DETACH) == 0;
  pid_t pid = fork();
  if (pid == 0) {
    execlp("fusermount3", "fusermount3", "-u", "-z", "-q", dir.c_str(), nullptr);
    _exit(127);
  }
  if (pid < 0) return false;
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// Layers keep a descriptor per open file (local, cache, staging): the default soft limit of
// 1024 gives EMFILE under load (hf-mount #68). The soft limit goes up to the hard one.
void RaiseOpenFileLimit() {
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= limit.rlim_max) return;
  rlim_t before = limit.rlim_cur;
  limit.rlim_cur = limit.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &limit) == 0)
    spdlog::debug("open file limit raised from {} to {}", before, limit.rlim_cur);
}

// ---------------------------------------------------------------------------------------------
// Run files

struct RunRecord {
  pid_t pid = 0;
  std::string mountpoint;  // canonical
  std::string spec;
  std::string log;
  std::chrono::milliseconds stop_timeout{0};
  std::string pid_file;
  std::string status_file;
};

std::string RunDir() { return HfvfsHome() + "/run"; }
std::string LogDir() { return HfvfsHome() + "/logs"; }

std::string FormatRecord(const RunRecord& r) {
  return fmt::format("pid={}\nmountpoint={}\nspec={}\nlog={}\nstop_timeout_ms={}\n", r.pid,
                     r.mountpoint, r.spec, r.log, r.stop_timeout.count());
}

std::optional<RunRecord> ReadRecord(const std::string& pid_file) {
  std::ifstream in(pid_file);
  if (!in) return std::nullopt;
  RunRecord r;
  std::string line;
  while (std::getline(in, line)) {
    size_t eq = line.find('=');
    if (eq == std::string::npos) continue;
    std::string key = line.substr(0, eq), value = line.substr(eq + 1);
    if (key == "pid") r.pid = static_cast<pid_t>(std::atoi(value.c_str()));
    if (key == "mountpoint") r.mountpoint = value;
    if (key == "spec") r.spec = value;
    if (key == "log") r.log = value;
    if (key == "stop_timeout_ms")
      r.stop_timeout = std::chrono::milliseconds(std::atoll(value.c_str()));
  }
  if (r.pid <= 0 || r.mountpoint.empty()) return std::nullopt;
  r.pid_file = pid_file;
  r.status_file = pid_file.substr(0, pid_file.size() - 4) + ".status";
  return r;
}

std::vector<RunRecord> ReadRecords() {
  std::vector<RunRecord> records;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(RunDir(), ec)) {
    if (entry.path().extension() != ".pid") continue;
    if (auto r = ReadRecord(entry.path().string())) records.push_back(*r);
  }
  std::sort(records.begin(), records.end(),
            [](const RunRecord& a, const RunRecord& b) { return a.mountpoint < b.mountpoint; });
  return records;
}

void RemoveRunFiles(const RunRecord& r) {
  std::error_code ec;
  fs::remove(r.pid_file, ec);
  fs::remove(r.status_file, ec);
}

// ---------------------------------------------------------------------------------------------
// The running daemon

std::string FormatCounters(const std::vector<std::pair<std::string, int64_t>>& counters) {
  std::string out;
  for (const auto& [name, value] : counters) {
    if (!out.empty()) out += " ";
    out += fmt::format("{}={}", name, value);
  }
  return out.empty() ? "(none)" : out;
}

class Daemon {
 public:
  Daemon(const MountSpec& spec, const MountRequest& request, int ready_fd)
      : spec_(spec), request_(request), ready_fd_(ready_fd) {}

  int Serve();

 private:
  int Fail(const Error& error);
  void Ready();
  void StatusLoop();
  void SignalLoop(sigset_t set);
  // Ends the signal thread (waiting for a stop it is running) and joins it; idempotent.
  void EndSignalThread(std::thread& thread);
  // Runs the stack's shutdown within the stop bound. Only the first caller does the work.
  void ShutdownLayers(const char* why);
  // The whole stop: layers, detach, then wait (bounded) for the FUSE loop to end.
  void Stop(const char* why);
  std::string StatusText() const;

  const MountSpec& spec_;
  const MountRequest& request_;
  int ready_fd_;  // -1 in the foreground
  RunRecord record_;
  std::chrono::system_clock::time_point started_ = std::chrono::system_clock::now();

  std::unique_ptr<MountHost> host_;
  std::optional<Stack> stack_;
  std::unique_ptr<Vfs> vfs_;
  std::unique_ptr<FuseAdapter> adapter_;

  // Guards serving_, adapter_ and ready_fd_ until the mount is ready: a stop signal that
  // arrives earlier must see whether something is mounted and report to the parent once.
  std::mutex start_mutex_;
  bool serving_ = false;

  std::atomic<bool> layers_shut_down_{false};
  std::mutex mutex_;  // guards loop_done_, status_stop_
  std::condition_variable changed_;
  bool loop_done_ = false;
  bool status_stop_ = false;
};

int Daemon::Fail(const Error& error) {
  spdlog::error("mount failed: {}", error.message());
  if (ready_fd_ >= 0) {
    WriteAll(ready_fd_, fmt::format("ERR {}\n{}", error.code(), error.message()));
    close(ready_fd_);
    ready_fd_ = -1;
  } else {
    PrintErrorLines(std::cerr, error.message());
  }
  return 1;
}

void Daemon::Ready() {
  std::string types;
  for (const LayerSpec& layer : spec_.layers) types += (types.empty() ? "" : " -> ") + layer.type;
  std::string message = fmt::format("mounted {} on {} (pid {}; log {})", types, spec_.mountpoint,
                                    getpid(), record_.log);
  spdlog::info("{}", message);
  if (ready_fd_ >= 0) {
    WriteAll(ready_fd_, "OK\n" + message);
    close(ready_fd_);
    ready_fd_ = -1;
    if (chdir("/") != 0) spdlog::warn("chdir /: {}", std::strerror(errno));
    // A daemon keeps no terminal: stdio goes to /dev/null, the log has everything.
    int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) {
      dup2(devnull, 0);
      dup2(devnull, 1);
      dup2(devnull, 2);
      if (devnull > 2) close(devnull);
    }
  } else {
    std::cout << message << "\n" << std::flush;
  }
}

std::string Daemon::StatusText() const {
  std::string out;
  auto started = std::chrono::system_clock::to_time_t(started_);
  char when[64];
  std::strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", std::gmtime(&started));
  out += fmt::format("{}\n  pid {}, started {}\n  spec {}\n  log {}\n", spec_.mountpoint, getpid(),
                     when, spec_.path, record_.log);
  out += "  stack (bottom to top):\n";
  for (size_t i = 0; i < stack_->layers.size(); ++i) {
    const PluginDescriptor& d = *stack_->plugins[i];
    std::vector<std::pair<std::string, int64_t>> counters;
    stack_->layers[i]->counters(counters);
    out += fmt::format("    {}. {} {} ({})\n       {}\n", i + 1, d.name, d.plugin_version,
                       stack_->plugin_files[i], FormatCounters(counters));
    std::vector<std::string> notes;
    stack_->layers[i]->status_notes(notes);
    for (const std::string& note : notes) out += fmt::format("       {}\n", note);
  }
  const VfsCounters& c = vfs_->counters();
  auto v = [](const std::atomic<int64_t>& a) { return a.load(std::memory_order_relaxed); };
  InodeTable::Stats inodes = vfs_->inode_stats();
  MountHost::Stats inval = host_->stats();
  out += fmt::format(
      "  kernel: lookups={} attr_cache_hits={} listings={} opens={} reads={} bytes_read={} "
      "writes={} bytes_written={} errors={}\n",
      v(c.lookups), v(c.attr_cache_hits), v(c.listings), v(c.opens), v(c.reads), v(c.bytes_read),
      v(c.writes), v(c.bytes_written), v(c.errors));
  out += fmt::format(
      "  inodes={} forgotten={} orphans={} evicted={} open_files={} invalidations "
      "queued={} delivered={} dropped={}\n",
      inodes.inodes, inodes.forgotten, inodes.orphans, inodes.evicted, vfs_->open_handles(),
      inval.queued, inval.delivered, inval.dropped);
  return out;
}

void Daemon::StatusLoop() {
  adapter_->RaiseReadahead();
  std::unique_lock lock(mutex_);
  while (!status_stop_) {
    lock.unlock();
    WriteFileAtomically(record_.status_file, StatusText());
    lock.lock();
    changed_.wait_for(lock, std::chrono::seconds(1), [&] { return status_stop_; });
  }
}

void Daemon::ShutdownLayers(const char* why) {
  if (layers_shut_down_.exchange(true)) return;
  host_->BeginShutdown();
  const auto timeout = spec_.options.stop_timeout;
  spdlog::info("stopping ({}): flushing the stack, at most {} ms", why, timeout.count());
  const auto deadline = Clock::now() + timeout;
  // The shutdown runs on its own thread so that a layer ignoring its deadline cannot hold
  // the stop beyond the bound; it shares ownership of what it touches.
  struct Outcome {
    std::mutex mutex;
    std::condition_variable done_cv;
    bool done = false;
    Status status;
  };
  auto outcome = std::make_shared<Outcome>();
  std::shared_ptr<Layer> top = stack_->layers.back();
  std::thread([outcome, top, deadline] {
    Status s = CatchAll("shutdown", [&] { return top->shutdown(deadline); });
    std::lock_guard lock(outcome->mutex);
    outcome->status = s;
    outcome->done = true;
    outcome->done_cv.notify_all();
  }).detach();
  std::unique_lock lock(outcome->mutex);
  if (!outcome->done_cv.wait_until(lock, deadline + std::chrono::seconds(1),
                                   [&] { return outcome->done; })) {
    spdlog::error("the stack did not finish its shutdown within {} ms; going on with the stop",
                  timeout.count());
  } else if (!outcome->status) {
    spdlog::error("shutdown: {}", outcome->status.error().message());
  } else {
    spdlog::info("the stack has shut down");
  }
}

void Daemon::Stop(const char* why) {
  ShutdownLayers(why);
  if (Status s = adapter_->Detach(); !s) spdlog::warn("detach: {}", s.error().message());
  std::unique_lock lock(mutex_);
  if (changed_.wait_for(lock, kExitGrace, [&] { return loop_done_; })) return;
  spdlog::warn("a request is still running or a file is still open on {}; exiting anyway",
               spec_.mountpoint);
  RemoveRunFiles(record_);
  spdlog::shutdown();
  _exit(0);
}

void Daemon::EndSignalThread(std::thread& thread) {
  if (!thread.joinable()) return;
  {
    std::lock_guard lock(mutex_);
    loop_done_ = true;
  }
  changed_.notify_all();
  kill(getpid(), SIGUSR1);  // wakes sigwait; a stop in progress finishes first
  thread.join();
}

void Daemon::SignalLoop(sigset_t set) {
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    if (sig == SIGUSR1) {
      std::lock_guard lock(mutex_);
      if (loop_done_) return;
      continue;
    }
    spdlog::info("received {}", strsignal(sig));
    {
      std::lock_guard lock(start_mutex_);
      if (!serving_) {
        // Still building or starting the stack: nothing to flush, nothing else to wait for.
        if (adapter_) (void)adapter_->Detach();
        std::string message =
            fmt::format("interrupted by {} before the mount was ready", strsignal(sig));
        spdlog::error("{}", message);
        if (ready_fd_ >= 0) WriteAll(ready_fd_, fmt::format("ERR {}\n{}", EINTR, message));
        spdlog::shutdown();
        _exit(1);
      }
    }
    Stop(strsignal(sig));
    return;
  }
}

int Daemon::Serve() {
  // Signals are taken by one thread with sigwait; every thread created from here inherits
  // the mask, so no handler ever runs inside a FUSE worker.
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGUSR1}) sigaddset(&set, sig);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  const std::string name = RunName(spec_.mountpoint);
  record_.pid = getpid();
  record_.mountpoint = Canonical(spec_.mountpoint);
  record_.spec = spec_.path;
  record_.log = LogDir() + "/" + name + ".log";
  record_.stop_timeout = spec_.options.stop_timeout;
  record_.pid_file = RunDir() + "/" + name + ".pid";
  record_.status_file = RunDir() + "/" + name + ".status";

  try {
    std::vector<spdlog::sink_ptr> sinks;
    sinks.push_back(std::make_shared<spdlog::sinks::basic_file_sink_mt>(record_.log));
    if (ready_fd_ < 0) sinks.push_back(std::make_shared<spdlog::sinks::stderr_sink_mt>());
    auto logger = std::make_shared<spdlog::logger>("hfvfs", sinks.begin(), sinks.end());
    logger->set_level(request_.verbose ? spdlog::level::debug : spdlog::level::info);
    logger->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%l] [%t] %v");
    logger->flush_on(spdlog::level::info);
    spdlog::set_default_logger(logger);
  } catch (const std::exception& e) {
    return Fail(Err(EIO, fmt::format("cannot open the log file {}: {}", record_.log, e.what())));
  }
  spdlog::info("hfvfs {} mounting {} on {} (pid {})", HFVFS_SDK_VERSION, spec_.path,
               spec_.mountpoint, getpid());

  // The signal thread runs from here, so that a stop during a slow start (resolving a
  // revision, replaying a journal) is honoured; it ends on every return path.
  std::thread signals(&Daemon::SignalLoop, this, set);
  struct SignalThreadEnd {
    Daemon& daemon;
    std::thread& thread;
    ~SignalThreadEnd() { daemon.EndSignalThread(thread); }
  } signal_thread_end{*this, signals};
  for (const std::string& warning : spec_.warnings) spdlog::warn("{}", warning);
  RaiseOpenFileLimit();

  std::string id_source = spec_.path;
  for (const LayerSpec& layer : spec_.layers) id_source += "|" + layer.type;
  host_ = std::make_unique<MountHost>(fmt::format("{:016x}", Fnv1a(id_source)));

  Result<Stack> stack = BuildStack(spec_, *host_, /*mounting=*/true);
  if (!stack) return Fail(stack.error());
  stack_ = std::move(*stack);
  if (Status s = CatchAll("start", [&] { return stack_->top().start(); }); !s)
    return Fail(s.error().With("starting the stack"));

  VfsOptions vfs_options;
  vfs_options.attr_ttl = spec_.options.attr_ttl;
  vfs_options.negative_ttl = spec_.options.negative_ttl;
  vfs_options.max_inodes = spec_.options.max_inodes;
  vfs_options.read_only = spec_.options.read_only;
  vfs_options.uid = spec_.options.uid.value_or(getuid());
  vfs_options.gid = spec_.options.gid.value_or(getgid());
  vfs_ = std::make_unique<Vfs>(stack_->layers.back(), vfs_options);

  FuseConfig fuse;
  fuse.mountpoint = spec_.mountpoint;
  fuse.fsname = "hfvfs:" + std::string(stack_->top().type());
  fuse.allow_other = spec_.options.allow_other;
  fuse.read_only = spec_.options.read_only;
  fuse.read_ahead_kib = static_cast<unsigned>(spec_.options.read_ahead / 1024);
  fuse.max_threads = static_cast<int>(spec_.options.max_threads);
  fuse.debug = request_.fuse_debug;
  {
    std::unique_lock lock(start_mutex_);
    adapter_ = std::make_unique<FuseAdapter>(*vfs_, fuse);
    if (Status s = adapter_->Mount(); !s) {
      lock.unlock();
      ShutdownLayers("the mount failed");
      return Fail(s.error());
    }
  }
  host_->Attach(vfs_.get(), adapter_.get());

  std::error_code ec;
  fs::create_directories(RunDir(), ec);
  if (!WriteFileAtomically(record_.pid_file, FormatRecord(record_)))
    spdlog::warn("cannot write {}: `hfvfs stop` and `hfvfs status` will not find this mount",
                 record_.pid_file);
  WriteFileAtomically(record_.status_file, StatusText());

  std::thread status(&Daemon::StatusLoop, this);
  {
    std::lock_guard lock(start_mutex_);
    serving_ = true;
    Ready();
  }

  int rc = adapter_->Loop();
  if (rc != 0) spdlog::warn("the FUSE loop ended with {}", std::strerror(rc));
  spdlog::info("the FUSE loop has ended");
  // Unmounted from outside (fusermount3 -u): the stack still gets its shutdown.
  ShutdownLayers("unmounted");
  {
    std::lock_guard lock(mutex_);
    loop_done_ = true;
    status_stop_ = true;
  }
  changed_.notify_all();
  status.join();
  EndSignalThread(signals);  // before anything it may use goes away
  RemoveRunFiles(record_);
  if (!host_->WaitStopped(std::chrono::seconds(2))) {
    // A notification is stuck in the kernel and still refers to the VFS: do not free it.
    spdlog::warn("an invalidation is stuck in the kernel; exiting without cleanup");
    spdlog::shutdown();
    _exit(0);
  }
  adapter_.reset();
  vfs_.reset();
  spdlog::info("stopped");
  return 0;
}

}  // namespace

std::string HfvfsHome() {
  if (const char* home = getenv("HFVFS_HOME"); home && *home) return Absolute(home);
  const char* user_home = getenv("HOME");
  return std::string(user_home && *user_home ? user_home : "/tmp") + "/.hfvfs";
}

std::string RunName(const std::string& mountpoint) {
  std::string readable;
  for (char c : mountpoint) {
    bool plain = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-';
    if (plain)
      readable += c;
    else if (!readable.empty() && readable.back() != '_')
      readable += '_';
  }
  while (!readable.empty() && readable.back() == '_') readable.pop_back();
  if (readable.size() > 48) readable = readable.substr(readable.size() - 48);
  if (readable.empty()) readable = "root";
  return fmt::format("{}-{:08x}", readable, Fnv1a(mountpoint) & 0xffffffffu);
}

int RunMount(const MountRequest& request) {
  Result<MountSpec> spec = LoadSpec(request.spec_path, request.mountpoint);
  if (!spec) {
    PrintErrorLines(std::cerr, spec.error().message());
    return 1;
  }
  if (Status s = CheckMountpoint(*spec); !s) {
    PrintErrorLines(std::cerr, s.error().message());
    return 1;
  }
  for (const std::string& warning : spec->warnings) std::cerr << "warning: " << warning << "\n";
  std::error_code ec;
  for (const std::string& dir : {RunDir(), LogDir()}) {
    fs::create_directories(dir, ec);
    if (ec) {
      std::cerr << fmt::format(
          "error: cannot create {}: {} (set HFVFS_HOME to a writable "
          "folder)\n",
          dir, ec.message());
      return 1;
    }
  }

  if (request.foreground) return Daemon(*spec, request, -1).Serve();

  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    std::cerr << "error: pipe: " << std::strerror(errno) << "\n";
    return 1;
  }
  std::cout.flush();
  std::cerr.flush();
  pid_t pid = fork();
  if (pid < 0) {
    std::cerr << "error: fork: " << std::strerror(errno) << "\n";
    return 1;
  }
  if (pid == 0) {
    close(pipe_fds[0]);
    setsid();
    return Daemon(*spec, request, pipe_fds[1]).Serve();
  }
  close(pipe_fds[1]);
  std::string reply;
  char buf[4096];
  for (;;) {
    ssize_t n = read(pipe_fds[0], buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    reply.append(buf, static_cast<size_t>(n));
  }
  close(pipe_fds[0]);
  if (reply.rfind("OK\n", 0) == 0) {
    std::cout << reply.substr(3) << "\n";
    return 0;
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (reply.rfind("ERR ", 0) == 0) {
    size_t nl = reply.find('\n');
    PrintErrorLines(std::cerr, nl == std::string::npos ? reply : reply.substr(nl + 1));
    std::cerr << "nothing was mounted\n";
    return 1;
  }
  std::string how = WIFSIGNALED(status) ? fmt::format("killed by {}", strsignal(WTERMSIG(status)))
                                        : fmt::format("exit status {}", WEXITSTATUS(status));
  std::cerr << fmt::format(
      "error: the mount daemon died before the mount was ready ({}); see "
      "{}/logs/{}.log\n",
      how, HfvfsHome(), RunName(spec->mountpoint));
  return 1;
}

int RunStop(const std::string& dir, std::ostream& out, std::ostream& err) {
  const std::string wanted = Canonical(dir);
  std::optional<RunRecord> found;
  for (const RunRecord& r : ReadRecords())
    if (r.mountpoint == wanted || r.mountpoint == Absolute(dir)) found = r;
  if (!found) {
    if (IsFuseMountpoint(wanted) || IsFuseMountpoint(Absolute(dir))) {
      bool ok = DetachMount(Absolute(dir));
      if (ok) {
        out << fmt::format("{}: no hfvfs daemon is recorded for it; detached the mount\n", dir);
        return 0;
      }
      err << fmt::format("error: {}: cannot unmount it (try `fusermount3 -u -z {}`)\n", dir, dir);
      return 1;
    }
    err << fmt::format("error: {}: no hfvfs mount there (`hfvfs status` lists them)\n", dir);
    return 1;
  }
  const RunRecord& r = *found;
  if (!ProcessAlive(r.pid)) {
    RemoveRunFiles(r);
    if (IsFuseMountpoint(r.mountpoint)) DetachMount(r.mountpoint);
    out << fmt::format("{}: its daemon (pid {}) was already gone; cleaned up\n", dir, r.pid);
    return 0;
  }
  if (kill(r.pid, SIGTERM) != 0) {
    err << fmt::format("error: cannot signal pid {}: {}\n", r.pid, std::strerror(errno));
    return 1;
  }
  const auto bound = r.stop_timeout + kStopSlack;
  const auto deadline = Clock::now() + bound;
  while (ProcessAlive(r.pid) && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (ProcessAlive(r.pid)) {
    kill(r.pid, SIGKILL);
    DetachMount(r.mountpoint);
    RemoveRunFiles(r);
    err << fmt::format(
        "error: {}: the daemon (pid {}) did not stop within {} s; killed it "
        "(see {})\n",
        dir, r.pid, std::chrono::duration_cast<std::chrono::seconds>(bound).count(), r.log);
    return 1;
  }
  out << fmt::format("stopped {}\n", r.mountpoint);
  return 0;
}

int RunStatus(std::ostream& out) {
  int live = 0;
  for (const RunRecord& r : ReadRecords()) {
    if (!ProcessAlive(r.pid)) {
      out << fmt::format("{}: stale (pid {} is gone); removed its run files\n", r.mountpoint,
                         r.pid);
      RemoveRunFiles(r);
      continue;
    }
    ++live;
    std::ifstream in(r.status_file);
    std::stringstream text;
    text << in.rdbuf();
    if (text.str().empty())
      out << fmt::format("{}\n  pid {} (no status yet)\n", r.mountpoint, r.pid);
    else
      out << text.str();
  }
  if (live == 0) out << "no hfvfs mounts\n";
  return 0;
}

}  // namespace hfvfs::kernel
