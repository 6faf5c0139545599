#!/usr/bin/python3
"""A loopback S3 server for tests and benchmarks: OpenStack Swift with its s3api middleware.

Swift (Debian 12: swift, swift-proxy, swift-object, swift-container, swift-account, memcached)
is a real S3 implementation: it verifies SigV4 signatures, gives multipart ETags of the "-N"
form, serves suffix ranges and honours If-Match. This launcher runs a one-replica cluster in a
folder of its own, on free 127.0.0.1 ports, under one supervisor process:

    swift_s3.py start --dir DIR [--fresh] [--json] [--watch-pid PID]   # prints ENDPOINT/ACCESS_KEY/SECRET_KEY/REGION/PID
    swift_s3.py stop --dir DIR             # stops the supervisor by its PID (children follow)
    swift_s3.py proxy-stop --dir DIR       # fault injection: the S3 endpoint goes away...
    swift_s3.py proxy-start --dir DIR      # ...and comes back on the same port, same data
    swift_s3.py status --dir DIR           # exit 0 when the endpoint answers

DIR/state.json holds what `start` printed. The supervisor owns memcached, the account,
container and object servers and the proxy; they die with it (PR_SET_PDEATHSIG), so a killed
supervisor leaves nothing behind. It also receives Swift's syslog datagrams (DIR/run/swift.log),
so nothing is sent to UDP 514. A second `start` on the same DIR reuses its ports and data.
Credentials are test ones: access key "test:tester", secret "testing"; "test2:other"/"other" is
a second account. Virtual-host addressing: <bucket>.s3.localhost:<port> (clients must map the
name to 127.0.0.1 themselves; glibc does not resolve *.localhost).
"""

import argparse
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

ACCESS_KEY = "test:tester"
SECRET_KEY = "testing"
REGION = "us-east-1"
STORAGE_DOMAIN = "s3.localhost"
SERVICES = ("account", "container", "object")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(base, ports):
    etc = os.path.join(base, "etc")
    srv = os.path.join(base, "srv", "d1")
    run = os.path.join(base, "run")
    for d in (etc, srv, run):
        os.makedirs(d, exist_ok=True)
    log_sock = os.path.join(run, "log.sock")
    with open(os.path.join(etc, "swift.conf"), "w") as f:
        f.write("[swift-hash]\nswift_hash_path_suffix = hfvfs-test\n"
                "swift_hash_path_prefix = hfvfs\n"
                "[storage-policy:0]\nname = gold\ndefault = yes\n"
                "[swift-constraints]\nmax_file_size = 5368709122\n")
    common = (f"[DEFAULT]\nmount_check = false\nbind_ip = 127.0.0.1\nworkers = 0\n"
              f"swift_dir = {etc}\nlog_address = {log_sock}\nlog_level = WARNING\n")
    for name in SERVICES:
        with open(os.path.join(etc, f"{name}-server.conf"), "w") as f:
            f.write(common + f"devices = {os.path.join(base, 'srv')}\n"
                    f"bind_port = {ports[name]}\n"
                    f"[pipeline:main]\npipeline = {name}-server\n"
                    f"[app:{name}-server]\nuse = egg:swift#{name}\n")
        builder_path = os.path.join(etc, f"{name}.builder")
        if not os.path.exists(os.path.join(etc, f"{name}.ring.gz")):
            from swift.common.ring import RingBuilder
            builder = RingBuilder(8, 1, 1)
            builder.add_dev({"region": 1, "zone": 1, "ip": "127.0.0.1", "port": ports[name],
                             "device": "d1", "weight": 100})
            builder.rebalance()
            builder.save(builder_path)
            builder.get_ring().save(os.path.join(etc, f"{name}.ring.gz"))
    pipeline = ("catch_errors gatekeeper healthcheck proxy-logging cache listing_formats s3api "
                "tempauth copy slo dlo proxy-logging proxy-server")
    with open(os.path.join(etc, "proxy-server.conf"), "w") as f:
        f.write(common + f"bind_port = {ports['proxy']}\n"
                f"[pipeline:main]\npipeline = {pipeline}\n"
                "[app:proxy-server]\nuse = egg:swift#proxy\naccount_autocreate = true\n"
                f"[filter:s3api]\nuse = egg:swift#s3api\nlocation = {REGION}\n"
                f"min_segment_size = 5242880\nstorage_domain = {STORAGE_DOMAIN}\n"
                "[filter:tempauth]\nuse = egg:swift#tempauth\n"
                "user_test_tester = testing .admin\nuser_test2_other = other .admin\n"
                "[filter:cache]\nuse = egg:swift#memcache\n"
                f"memcache_servers = 127.0.0.1:{ports['memcached']}\n"
                + "".join(f"[filter:{n}]\nuse = egg:swift#{n}\n" for n in (
                    "catch_errors", "gatekeeper", "healthcheck", "proxy_logging",
                    "listing_formats", "copy", "slo", "dlo")).replace(
                        "[filter:proxy_logging]", "[filter:proxy-logging]"))


def die_with_parent():
    # Runs in the child between fork and exec: SIGKILL it when the supervisor dies.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def http_ok(url, timeout=1.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status < 500
    except urllib.error.HTTPError as e:
        return e.code < 500
    except Exception:
        return False


class Supervisor:
    """Runs in the daemonized process: owns the children and the syslog sink."""

    def __init__(self, base, ports, watch_pid=0):
        self.watch_pid = watch_pid
        self.base = base
        self.ports = ports
        self.run = os.path.join(base, "run")
        self.children = {}  # name -> Popen
        self.stopping = False

    def spawn(self, name, argv):
        out = open(os.path.join(self.run, f"{name}.out"), "ab")
        self.children[name] = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                               stdin=subprocess.DEVNULL,
                                               preexec_fn=die_with_parent, close_fds=True)
        out.close()

    def start_proxy(self):
        self.spawn("proxy", ["swift-proxy-server",
                             os.path.join(self.base, "etc", "proxy-server.conf")])

    def stop_child(self, name):
        proc = self.children.pop(name, None)
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def ready(self):
        p = self.ports
        return (http_ok(f"http://127.0.0.1:{p['proxy']}/healthcheck") and
                all(http_ok(f"http://127.0.0.1:{p[n]}/") for n in SERVICES))

    def main(self, ready_fd):
        log_path = os.path.join(self.run, "log.sock")
        try:
            os.unlink(log_path)
        except FileNotFoundError:
            pass
        sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sink.bind(log_path)
        sink.settimeout(0.2)
        log = open(os.path.join(self.run, "swift.log"), "ab", buffering=0)

        wanted = {"proxy": True}

        def on_term(*_):
            self.stopping = True

        def on_usr1(*_):
            wanted["proxy"] = False

        def on_usr2(*_):
            wanted["proxy"] = True

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        signal.signal(signal.SIGUSR1, on_usr1)
        signal.signal(signal.SIGUSR2, on_usr2)

        self.spawn("memcached", ["memcached", "-l", "127.0.0.1", "-p",
                                 str(self.ports["memcached"]), "-U", "0", "-m", "64", "-u",
                                 "root" if os.geteuid() == 0 else str(os.geteuid())])
        for n in SERVICES:
            self.spawn(n, [f"swift-{n}-server",
                           os.path.join(self.base, "etc", f"{n}-server.conf")])
        self.start_proxy()
        deadline = time.time() + 60
        while not self.ready():
            dead = [n for n, p in self.children.items() if p.poll() is not None]
            if dead or time.time() > deadline or self.stopping:
                os.write(ready_fd, f"failed: {','.join(dead) or 'timeout'} (see {self.run})"
                         .encode())
                self.shutdown()
                return 1
            time.sleep(0.05)
        os.write(ready_fd, b"ok")
        os.close(ready_fd)

        while not self.stopping:
            try:
                log.write(sink.recv(65536) + b"\n")
            except (socket.timeout, InterruptedError):
                pass
            if self.watch_pid and not pid_alive(self.watch_pid):
                break  # the test process that owned this server is gone
            if not wanted["proxy"] and "proxy" in self.children:
                self.stop_child("proxy")
                open(os.path.join(self.run, "proxy.state"), "w").write("stopped")
            elif wanted["proxy"] and "proxy" not in self.children:
                self.start_proxy()
                while not self.stopping and not http_ok(
                        f"http://127.0.0.1:{self.ports['proxy']}/healthcheck"):
                    time.sleep(0.05)
                open(os.path.join(self.run, "proxy.state"), "w").write("running")
        self.shutdown()
        return 0

    def shutdown(self):
        for n in ("proxy", "object", "container", "account", "memcached"):
            self.stop_child(n)


def state_path(base):
    return os.path.join(base, "state.json")


def read_state(base):
    with open(state_path(base)) as f:
        return json.load(f)


def pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def cmd_start(args):
    base = os.path.abspath(args.dir)
    if args.fresh and os.path.exists(state_path(base)):
        cmd_stop(args)
    if args.fresh:
        import shutil
        shutil.rmtree(base, ignore_errors=True)
    os.makedirs(base, exist_ok=True)
    old = None
    if os.path.exists(state_path(base)):
        old = read_state(base)
        if pid_alive(old["pid"]) and http_ok(old["endpoint"] + "/healthcheck"):
            sys.exit(f"swift_s3: already running in {base} (pid {old['pid']})")
    ports = old["ports"] if old else {n: free_port() for n in
                                      ("proxy", "memcached") + SERVICES}
    write_config(base, ports)
    endpoint = f"http://127.0.0.1:{ports['proxy']}"
    read_fd, write_fd = os.pipe()
    t0 = time.time()
    pid = os.fork()
    if pid == 0:  # the supervisor: detach from the caller's session and terminal
        os.close(read_fd)
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        code = 1
        try:
            code = Supervisor(base, ports, args.watch_pid).main(write_fd)
        finally:
            os._exit(code)
    os.close(write_fd)
    msg = b""
    while True:
        chunk = os.read(read_fd, 4096)
        if not chunk:
            break
        msg += chunk
        if msg.startswith(b"ok") or msg.startswith(b"failed"):
            break
    if not msg.startswith(b"ok"):
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        sys.exit(f"swift_s3: start failed: {msg.decode() or 'supervisor died'}")
    state = {"endpoint": endpoint, "access_key": ACCESS_KEY, "secret_key": SECRET_KEY,
             "region": REGION, "storage_domain": STORAGE_DOMAIN, "pid": pid, "ports": ports,
             "dir": base, "alt_access_key": "test2:other", "alt_secret_key": "other"}
    with open(state_path(base) + ".tmp", "w") as f:
        json.dump(state, f, indent=1)
    os.replace(state_path(base) + ".tmp", state_path(base))
    if args.json:
        print(json.dumps(state))
    else:
        print(f"ENDPOINT={endpoint}\nACCESS_KEY={ACCESS_KEY}\nSECRET_KEY={SECRET_KEY}\n"
              f"REGION={REGION}\nPID={pid}\nSTATE={state_path(base)}\n"
              f"# ready in {int((time.time() - t0) * 1000)} ms; stop: {sys.argv[0]} stop "
              f"--dir {base}")


def cmd_stop(args):
    base = os.path.abspath(args.dir)
    try:
        state = read_state(base)
    except FileNotFoundError:
        print(f"swift_s3: nothing to stop in {base}")
        return
    pid = state["pid"]
    if pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
        for _ in range(200):
            if not pid_alive(pid):
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
    print(f"swift_s3: stopped {pid}")


def cmd_proxy(args, sig, want):
    base = os.path.abspath(args.dir)
    state = read_state(base)
    os.kill(state["pid"], sig)
    path = os.path.join(base, "run", "proxy.state")
    for _ in range(400):
        try:
            if open(path).read() == want:
                return
        except FileNotFoundError:
            pass
        time.sleep(0.025)
    sys.exit(f"swift_s3: proxy did not become {want}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["start", "stop", "proxy-stop", "proxy-start",
                                            "status"])
    parser.add_argument("--dir", required=True, help="folder for config, data and logs")
    parser.add_argument("--json", action="store_true", help="print the state as JSON")
    parser.add_argument("--watch-pid", type=int, default=0,
                        help="start: stop the server when this process is gone")
    parser.add_argument("--fresh", action="store_true",
                        help="start: stop what runs in DIR (by its PID) and empty DIR first")
    args = parser.parse_args()
    if args.command == "start":
        cmd_start(args)
    elif args.command == "stop":
        cmd_stop(args)
    elif args.command == "proxy-stop":
        try:
            os.unlink(os.path.join(os.path.abspath(args.dir), "run", "proxy.state"))
        except FileNotFoundError:
            pass
        cmd_proxy(args, signal.SIGUSR1, "stopped")
    elif args.command == "proxy-start":
        try:
            os.unlink(os.path.join(os.path.abspath(args.dir), "run", "proxy.state"))
        except FileNotFoundError:
            pass
        cmd_proxy(args, signal.SIGUSR2, "running")
    else:
        state = read_state(os.path.abspath(args.dir))
        ok = pid_alive(state["pid"]) and http_ok(state["endpoint"] + "/healthcheck")
        print("running" if ok else "not running")
        sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
