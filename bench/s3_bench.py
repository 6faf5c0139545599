#!/usr/bin/python3
"""S3 benchmark: every case of the s3 issue's "Measure" section, one run, one Swift server.

    bench/s3.sh [--rounds N] [--cases ...] [--contenders ...] [--alt LABEL=PLUGIN_DIR] ...

(bench/s3.sh runs this file; see --help.) One loopback OpenStack Swift + s3api server
(tests/support/swift_s3.py) holds the same objects for every contender: big.dat (1 GiB of
random bytes, put by boto3) and tree/ (10,000 objects of ~30 bytes in 110 folders: 10 folders
of 10 folders of 100 files).

Contenders
  limit           the client-side limit: curl GET of a presigned URL (reads), boto3
                  upload_file with 8 MiB parts and 4 threads (writes), boto3 puts and
                  ListObjectsV2 (small files, listing); local disk for the warm cases
  limit-par       the server's parallel limit for reads (seq_cold only): 4 curl processes at
                  once, each GETting every 4th 8 MiB range on one kept-alive connection
  s3fs            s3fs -o use_path_request_style (no local cache)
  rclone-off      rclone mount --vfs-cache-mode off
  rclone-full     rclone mount --vfs-cache-mode full
  hfvfs-s3        hfvfs mount of [s3]
  hfvfs-s3+cache  hfvfs mount of [s3] + [cache]
  --alt LABEL=DIR adds hfvfs-s3@LABEL and hfvfs-s3+cache@LABEL, whose plugins come from DIR
                  (HFVFS_PLUGIN_PATH): A/B of two builds of a plugin in the same run.
                  LABEL=DIR,key=value,... also sets those keys in the s3 layer's spec
                  (e.g. r2=build/plugins,read_streams=2), and cache.key=value in the cache
                  layer's, options.key=value in the mount's [options] (e.g.
                  ra4=build/plugins,options.read_ahead="4MiB"): A/B of settings of one build.

Cases (cold = fresh mount, empty contender cache, page cache dropped)
  create1000  1,000 new files of 100 bytes written one after the other into a new folder,
              until all are listed by the server (rclone full uploads after close), s
  seq_write   a 1 GiB file copied in with 1 MiB writes, until the server has it whole, MB/s
  ls_cold     `ls -lR` of the 10,000-object tree on a fresh mount, s
  ls_warm     the same again on the same mount (page cache dropped), s
  seq_cold    sequential read of big.dat with 1 MiB reads, MB/s
  seq_warm    the same again on the same mount (page cache dropped; contender caches warm)
  rand4k      fio 4 KiB random reads of big.dat, 1 job, fresh mount, empty caches, IOPS
  rss         peak RSS of the mount process after seq_warm, MiB

With --rounds N every contender runs every case N times, in an order that alternates between
rounds (A B, B A, A B...); the table shows medians, and every value is written to the JSON.
Run as root (the page cache is dropped through /proc/sys/vm/drop_caches). The server binds
127.0.0.1 and is stopped by its PID at the end; mounts are unmounted by us.
"""
import argparse
import concurrent.futures
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = "/usr/bin/python3"
MIB = 1 << 20
BUCKET = "bench"
ALL_CONTENDERS = ["limit", "limit-par", "s3fs", "rclone-off", "rclone-full", "hfvfs-s3",
                  "hfvfs-s3+cache"]
CASE_GROUPS = {"create": ["create1000"], "write": ["seq_write"], "ls": ["ls_cold", "ls_warm"],
               "seq": ["seq_cold", "seq_warm", "rss"], "rand": ["rand4k"]}
# case -> (unit, higher is better)
UNITS = {"create1000": ("s", False), "seq_write": ("MB/s", True), "ls_cold": ("s", False),
         "ls_warm": ("s", False), "seq_cold": ("MB/s", True), "seq_warm": ("MB/s", True),
         "rand4k": ("IOPS", True), "rss": ("MiB", False)}


def log(msg):
    print(f"[s3bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def drop_caches():
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError as e:
        log(f"cannot drop the page cache ({e}); cold figures will be optimistic")


def is_mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def peak_rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


class Mount:
    """One mounted contender: a foreground mount process, unmounted (and waited for) on exit."""

    def __init__(self, name, argv, mountpoint, env, stop_cmd=None):
        self.name, self.argv, self.mountpoint, self.env = name, argv, mountpoint, env
        self.stop_cmd = stop_cmd
        self.proc = None
        self.log_path = None

    def __enter__(self):
        os.makedirs(self.mountpoint, exist_ok=True)
        fd, self.log_path = tempfile.mkstemp(prefix=f"s3bench-{self.name}-", suffix=".log")
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=fd, stderr=fd)
        os.close(fd)
        deadline = time.time() + 60
        while not is_mounted(self.mountpoint):
            if self.proc.poll() is not None or time.time() > deadline:
                tail = open(self.log_path, errors="replace").read()[-1500:]
                self.__exit__()
                raise RuntimeError(f"{self.name} did not mount: {tail}")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        if self.stop_cmd:
            subprocess.run(self.stop_cmd, env=self.env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=180)
        if is_mounted(self.mountpoint):
            subprocess.run(["fusermount3", "-u", self.mountpoint], stderr=subprocess.DEVNULL)
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=30)
        if is_mounted(self.mountpoint):
            subprocess.run(["fusermount3", "-u", "-z", self.mountpoint], stderr=subprocess.DEVNULL)
        with contextlib.suppress(OSError):
            os.unlink(self.log_path)
        return False


# ---- what the cases do through a mount ----

def read_seq(path, size):
    buf = bytearray(MIB)
    view = memoryview(buf)
    done = 0
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(view)
            if not n:
                break
            done += n
    dt = time.perf_counter() - t0
    if done != size:
        raise RuntimeError(f"{path}: read {done} bytes, expected {size}")
    return size / dt / 1e6


def ls_tree(path, files):
    t0 = time.perf_counter()
    out = subprocess.run(["ls", "-lR", path], capture_output=True, text=True, timeout=900)
    dt = time.perf_counter() - t0
    n = sum(1 for line in out.stdout.splitlines() if line.startswith("-"))
    if out.returncode != 0 or n != files:
        raise RuntimeError(f"ls -lR saw {n} files of {files} (rc {out.returncode}: "
                           f"{out.stderr.strip()[:200]})")
    return dt


def fio_iops(path, seconds):
    cmd = ["fio", "--name=rand4k", f"--filename={path}", "--rw=randread", "--bs=4k",
           "--numjobs=1", "--ioengine=psync", "--time_based", f"--runtime={seconds}",
           "--output-format=json", "--readonly", "--invalidate=1"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 180)
    if out.returncode != 0:
        raise RuntimeError(f"fio failed: {out.stderr.strip()[:300]}")
    return json.loads(out.stdout[out.stdout.index("{"):])["jobs"][0]["read"]["iops"]


class Bench:
    def __init__(self, args):
        self.args = args
        self.build = os.path.abspath(args.build)
        self.work = tempfile.mkdtemp(prefix="hfvfs-s3bench-")
        self.data = os.path.abspath(args.data) if args.data else os.path.join(self.work, "data")
        self.results = {}  # case -> contender -> [values]
        self.notes = []
        self.s3 = None
        self.server_dir = os.path.join(self.data, "swift")

    # ---- server and objects ----
    def start(self):
        os.makedirs(self.data, exist_ok=True)
        out = subprocess.run([PY, os.path.join(ROOT, "tests/support/swift_s3.py"), "start",
                              "--dir", self.server_dir, "--json"],
                             capture_output=True, text=True, timeout=300)
        if out.returncode != 0:
            raise RuntimeError(f"the S3 server did not start: {out.stderr.strip()[-500:]}")
        st = json.loads(out.stdout)
        self.endpoint, self.key, self.secret = st["endpoint"], st["access_key"], st["secret_key"]
        self.env = dict(os.environ, AWS_ACCESS_KEY_ID=self.key, AWS_SECRET_ACCESS_KEY=self.secret)
        self.env.pop("AWS_CA_BUNDLE", None)  # rclone refuses an empty/foreign bundle
        import boto3
        from botocore.config import Config
        self.s3 = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                               aws_access_key_id=self.key, aws_secret_access_key=self.secret,
                               config=Config(s3={"addressing_style": "path"},
                                             max_pool_connections=32,
                                             retries={"max_attempts": 5}))

    def stop(self):
        subprocess.run([PY, os.path.join(ROOT, "tests/support/swift_s3.py"), "stop", "--dir",
                        self.server_dir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(self.work, ignore_errors=True)

    def keys_under(self, prefix):
        keys = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET,
                                                                      Prefix=prefix):
            keys += [o["Key"] for o in page.get("Contents", [])]
        return keys

    def delete_prefix(self, prefix):
        keys = self.keys_under(prefix)
        for i in range(0, len(keys), 1000):
            self.s3.delete_objects(Bucket=BUCKET, Delete={
                "Objects": [{"Key": k} for k in keys[i:i + 1000]], "Quiet": True})

    def seed(self):
        from boto3.s3.transfer import TransferConfig
        a = self.args
        self.size = a.size_mib * MIB
        self.big_local = os.path.join(self.data, f"big-{a.size_mib}.dat")
        if not os.path.exists(self.big_local) or os.path.getsize(self.big_local) != self.size:
            log(f"writing {a.size_mib} MiB of random bytes to {self.big_local}")
            with open(self.big_local + ".tmp", "wb") as f:
                for _ in range(a.size_mib):
                    f.write(os.urandom(MIB))
            os.rename(self.big_local + ".tmp", self.big_local)
        with contextlib.suppress(Exception):
            self.s3.create_bucket(Bucket=BUCKET)
        try:
            have = self.s3.head_object(Bucket=BUCKET, Key="big.dat")["ContentLength"]
        except Exception:
            have = -1
        if have != self.size:
            log("uploading big.dat")
            self.s3.upload_file(self.big_local, BUCKET, "big.dat", Config=TransferConfig(
                multipart_chunksize=64 * MIB, multipart_threshold=64 * MIB, max_concurrency=4))
        # 10 x 10 folders of files/100 files each: 10,000 files in 110 folders by default.
        self.files = a.files
        per_leaf = max(1, a.files // 100)
        want = [f"tree/d{i // (10 * per_leaf)}/e{(i // per_leaf) % 10}/f{i:05d}.txt"
                for i in range(a.files)]
        present = set(self.keys_under("tree/"))
        todo = [k for k in want if k not in present]
        if todo:
            log(f"putting {len(todo)} tree objects (kept for the next run with --data)")
            with concurrent.futures.ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda k: self.s3.put_object(Bucket=BUCKET, Key=k,
                                                           Body=k.encode()), todo))
        extra = present - set(want)
        if extra:
            raise RuntimeError(f"tree/ holds {len(extra)} unexpected objects; use a fresh --data")
        for prefix in ("w-", "create-"):  # left by an interrupted run
            self.delete_prefix(prefix)

    # ---- recording ----
    def record(self, case, contender, fn):
        try:
            v = fn()
        except Exception as e:  # a contender failing a case is reported, not fatal
            self.notes.append(f"{case}/{contender}: {str(e)[:300]}")
            log(f"{case} {contender}: FAILED {str(e)[:300]}")
            return
        if v is None:
            return
        self.results.setdefault(case, {}).setdefault(contender, []).append(v)
        log(f"{case} {contender}: {v:.2f}")

    def wanted(self, case):
        return any(case in CASE_GROUPS[g] for g in self.args.cases.split(","))

    def wait_visible(self, prefix, count, size=None, timeout=600):
        """Until `count` objects are listed under prefix (and the first has `size` bytes)."""
        deadline = time.time() + timeout
        while True:
            if size is not None:
                try:
                    if self.s3.head_object(Bucket=BUCKET, Key=prefix)["ContentLength"] == size:
                        return
                except Exception:
                    pass
            elif len(self.keys_under(prefix)) >= count:
                return
            if time.time() > deadline:
                raise RuntimeError(f"{prefix} not complete on the server after {timeout}s")
            time.sleep(0.1)

    # ---- the limit ----
    def run_limit(self):
        from boto3.s3.transfer import TransferConfig
        name = "limit"
        if self.wanted("create1000"):
            def create():
                t0 = time.perf_counter()
                for i in range(1000):
                    self.s3.put_object(Bucket=BUCKET, Key=f"create-limit/f{i:04d}", Body=b"x" * 100)
                return time.perf_counter() - t0
            self.record("create1000", name, create)
            self.delete_prefix("create-limit/")
        if self.wanted("seq_write"):
            read_seq(self.big_local, self.size)  # the source in the page cache, as for mounts

            def write():
                t0 = time.perf_counter()
                self.s3.upload_file(self.big_local, BUCKET, "w-limit.bin", Config=TransferConfig(
                    multipart_chunksize=8 * MIB, multipart_threshold=8 * MIB, max_concurrency=4))
                return self.size / (time.perf_counter() - t0) / 1e6
            self.record("seq_write", name, write)
            self.delete_prefix("w-limit.bin")
        if self.wanted("ls_cold"):
            def ls():
                t0 = time.perf_counter()
                n = len(self.keys_under("tree/"))
                if n != self.files:
                    raise RuntimeError(f"listed {n} keys")
                return time.perf_counter() - t0
            self.record("ls_cold", name, ls)
            self.record("ls_warm", name, ls)
        if self.wanted("seq_cold"):
            url = self.s3.generate_presigned_url("get_object", Params={
                "Bucket": BUCKET, "Key": "big.dat"}, ExpiresIn=3600)

            def curl():
                drop_caches()
                t0 = time.perf_counter()
                out = subprocess.run(["curl", "-sSf", "-o", "/dev/null", "-w",
                                      "%{size_download}", url], capture_output=True, text=True,
                                     check=True, timeout=600)
                dt = time.perf_counter() - t0
                if int(out.stdout) != self.size:
                    raise RuntimeError(f"curl got {out.stdout} bytes")
                return self.size / dt / 1e6
            self.record("seq_cold", name, curl)
            self.record("seq_warm", name,
                        lambda: (drop_caches(), read_seq(self.big_local, self.size))[1])
        if self.wanted("rand4k"):
            self.record("rand4k", name,
                        lambda: (drop_caches(), fio_iops(self.big_local, self.args.fio_seconds))[1])

    def run_limit_par(self):
        """The raw parallel limit of the server: 4 curl processes, each GETting every 4th
        8 MiB range of big.dat on one kept-alive connection (curl --next), at once."""
        if not self.wanted("seq_cold"):
            return
        url = self.s3.generate_presigned_url("get_object", Params={
            "Bucket": BUCKET, "Key": "big.dat"}, ExpiresIn=3600)
        streams, seg = 4, 8 * MIB

        def curl_par():
            drop_caches()
            procs = []
            t0 = time.perf_counter()
            for w in range(streams):
                argv = ["curl"]
                for i, a in enumerate(range(w * seg, self.size, streams * seg)):
                    if i:
                        argv.append("--next")  # resets the per-URL options below
                    argv += ["-sSf", "-w", "%{size_download}\n", "-o", "/dev/null", "-r",
                             f"{a}-{min(a + seg, self.size) - 1}", url]
                procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, text=True))
            got = 0
            for p in procs:
                out, _ = p.communicate(timeout=600)
                if p.returncode != 0:
                    raise RuntimeError(f"curl exited with {p.returncode}")
                got += sum(int(x) for x in out.split())
            dt = time.perf_counter() - t0
            if got != self.size:
                raise RuntimeError(f"curl got {got} bytes")
            return self.size / dt / 1e6
        self.record("seq_cold", "limit-par", curl_par)

    # ---- mounted contenders ----
    def contender_mount(self, name):
        """(factory of a Mount context, cache dir or None)."""
        mnt = os.path.join(self.work, "mnt-" + name.replace("+", "-").replace("@", "-"))
        cache = os.path.join(self.work, "cache-" + name.replace("+", "-").replace("@", "-"))
        base, _, label = name.partition("@")
        if base.startswith("hfvfs"):
            binary = os.path.join(self.build, "kernel", "hfvfs")
            layers = (f'[[layer]]\ntype = "s3"\nbucket = "{BUCKET}"\nendpoint = "{self.endpoint}"'
                      f'\nregion = "us-east-1"\naddressing = "path"\n')
            keys = self.alt_keys.get(label, [])
            layers += "".join(f"{k} = {v}\n" for k, v in keys
                              if not k.startswith(("cache.", "options.")))
            if base == "hfvfs-s3+cache":
                layers += f'\n[[layer]]\ntype = "cache"\ndir = "{cache}"\nmax_size = "4GiB"\n'
                layers += "".join(f"{k[6:]} = {v}\n" for k, v in keys if k.startswith("cache."))
            spec = mnt + ".toml"
            with open(spec, "w") as f:
                options = "".join(f"{k[8:]} = {v}\n" for k, v in keys if k.startswith("options."))
                f.write(f'mountpoint = "{mnt}"\n\n[options]\n{options}\n{layers}')
            env = dict(self.env, HFVFS_HOME=mnt + "-home")
            if label:
                env["HFVFS_PLUGIN_PATH"] = self.alts[label]
            return (lambda: Mount(name, [binary, "mount", spec, "-f"], mnt, env,
                                  stop_cmd=[binary, "stop", mnt]),
                    cache if "cache" in base else None)
        if base == "s3fs":
            env = dict(self.env, AWSACCESSKEYID=self.key, AWSSECRETACCESSKEY=self.secret)
            argv = ["s3fs", BUCKET, mnt, "-f", "-o", f"url={self.endpoint}", "-o",
                    "use_path_request_style"]
            return lambda: Mount(name, argv, mnt, env), None
        mode = base.split("-")[1]
        env = dict(self.env, RCLONE_CONFIG_BENCH_TYPE="s3", RCLONE_CONFIG_BENCH_PROVIDER="Other",
                   RCLONE_CONFIG_BENCH_ENDPOINT=self.endpoint,
                   RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=self.key,
                   RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=self.secret,
                   RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE="true")
        argv = ["rclone", "mount", f"bench:{BUCKET}", mnt, "--vfs-cache-mode", mode,
                "--cache-dir", cache]
        return lambda: Mount(name, argv, mnt, env), cache

    def run_mounted(self, name):
        make, cache = self.contender_mount(name)
        tag = name.replace("+", "-").replace("@", "-")

        def reset():
            if cache:
                shutil.rmtree(cache, ignore_errors=True)

        if self.wanted("create1000") or self.wanted("seq_write"):
            reset()
            with make() as m:
                if self.wanted("create1000"):
                    def create():
                        d = os.path.join(m.mountpoint, f"create-{tag}")
                        t0 = time.perf_counter()
                        os.mkdir(d)
                        for i in range(1000):
                            with open(os.path.join(d, f"f{i:04d}"), "wb") as f:
                                f.write(b"x" * 100)
                        self.wait_visible(f"create-{tag}/f", 1000)
                        return time.perf_counter() - t0
                    self.record("create1000", name, create)
                if self.wanted("seq_write"):
                    read_seq(self.big_local, self.size)  # the source in the page cache

                    def write():
                        dst = os.path.join(m.mountpoint, f"w-{tag}.bin")
                        t0 = time.perf_counter()
                        with open(self.big_local, "rb", buffering=0) as src, \
                                open(dst, "wb", buffering=0) as out:
                            buf = bytearray(MIB)
                            view = memoryview(buf)
                            while True:
                                n = src.readinto(view)
                                if not n:
                                    break
                                out.write(view[:n])
                        self.wait_visible(f"w-{tag}.bin", 1, size=self.size)
                        return self.size / (time.perf_counter() - t0) / 1e6
                    self.record("seq_write", name, write)
            self.delete_prefix(f"create-{tag}/")
            self.delete_prefix(f"w-{tag}.bin")
        if self.wanted("ls_cold") or self.wanted("seq_cold"):
            reset()
            drop_caches()
            with make() as m:
                big = os.path.join(m.mountpoint, "big.dat")
                tree = os.path.join(m.mountpoint, "tree")
                if self.wanted("ls_cold"):
                    self.record("ls_cold", name, lambda: ls_tree(tree, self.files))
                    drop_caches()
                    self.record("ls_warm", name, lambda: ls_tree(tree, self.files))
                if self.wanted("seq_cold"):
                    drop_caches()
                    self.record("seq_cold", name, lambda: read_seq(big, self.size))
                    drop_caches()
                    self.record("seq_warm", name, lambda: read_seq(big, self.size))
                    self.record("rss", name, lambda: peak_rss_mib(m.proc.pid))
        if self.wanted("rand4k"):
            reset()
            drop_caches()
            with make() as m:
                self.record("rand4k", name, lambda: fio_iops(os.path.join(m.mountpoint, "big.dat"),
                                                             self.args.fio_seconds))

    def run(self):
        a = self.args
        self.alts = {}
        names = list(ALL_CONTENDERS)
        self.alt_keys = {}
        for alt in a.alt:
            label, _, d = alt.partition("=")
            d, *keys = d.split(",")
            self.alts[label] = os.path.abspath(d)
            self.alt_keys[label] = [k.split("=", 1) for k in keys]
            for k, v in self.alt_keys[label]:
                if not v.strip().lstrip("-").isdigit() and not v.strip().startswith('"'):
                    raise SystemExit(f"--alt {label}: {k}={v}: give a number or a quoted string")
            names += [f"hfvfs-s3@{label}", f"hfvfs-s3+cache@{label}"]
        if a.contenders:
            wanted = a.contenders.split(",")
            unknown = [n for n in wanted if n not in names]
            if unknown:
                raise SystemExit(f"unknown contenders {unknown}; known: {names}")
            names = wanted
        missing = [n for n, tool in (("s3fs", "s3fs"), ("rclone-off", "rclone"),
                                     ("rclone-full", "rclone"), ("limit", "curl"),
                                     ("limit-par", "curl"))
                   if n in names and not shutil.which(tool)]
        for n in missing:
            self.notes.append(f"{n}: not installed, skipped")
        names = [n for n in names if n not in missing]
        if any(n.startswith("hfvfs") for n in names) and not os.path.exists(
                os.path.join(self.build, "kernel", "hfvfs")):
            raise SystemExit(f"no hfvfs binary in {self.build}/kernel (build it, or --build)")
        self.names = names
        t_start = time.time()
        self.start()
        try:
            self.seed()
            for r in range(a.rounds):
                order = names if r % 2 == 0 else list(reversed(names))
                for n in order:
                    log(f"round {r + 1}/{a.rounds}: {n}")
                    if n == "limit":
                        self.run_limit()
                    elif n == "limit-par":
                        self.run_limit_par()
                    else:
                        self.run_mounted(n)
        finally:
            self.stop()
        self.elapsed = time.time() - t_start

    # ---- the table ----
    def table(self):
        a = self.args
        peers = [n for n in self.names if n.split("@")[0] in ("s3fs", "rclone-off", "rclone-full")]
        ours = [n for n in self.names if n.startswith("hfvfs")]
        cols = self.names
        head = "| case | unit | " + " | ".join(cols) + " |"
        if peers and ours:
            head += "".join(f" {o} / best peer |" for o in ours)
        lines = [head, "|---|---|" + "---|" * (len(cols) + (len(ours) if peers else 0))]
        cases = [c for g in a.cases.split(",") for c in CASE_GROUPS[g]]
        for case in cases:
            vals = {n: statistics.median(v) for n, v in self.results.get(case, {}).items()}
            if not vals:
                continue
            unit, higher = UNITS[case]
            limit = vals.get("limit")
            cells = []
            for n in cols:
                v = vals.get(n)
                if v is None:
                    cells.append("n/a")
                    continue
                cell = f"{v:,.2f}" if v < 10 else (f"{v:,.1f}" if v < 100 else f"{v:,.0f}")
                if limit and n != "limit" and case != "rss":
                    cell += f" ({(v / limit if higher else limit / v):.2f}x)"
                cells.append(cell)
            line = f"| {case} | {unit} | " + " | ".join(cells) + " |"
            if peers and ours:
                pv = [vals[p] for p in peers if p in vals]
                best = (max(pv) if higher else min(pv)) if pv else None
                for o in ours:
                    v = vals.get(o)
                    line += (f" {(v / best if higher else best / v):.2f}x |"
                             if v and best else " |")
            lines.append(line)
        lines.append("")
        lines.append(f"Medians of {a.rounds} round(s), contender order alternating between "
                     f"rounds; (Nx) = against the limit, above 1 is better (time cases "
                     f"inverted). limit = curl of a presigned URL (seq_cold), local disk "
                     f"(seq_warm, rand4k), boto3 upload_file 8 MiB x 4 (seq_write), boto3 puts "
                     f"and ListObjectsV2 (create1000, ls). Load average at the end: "
                     f"{os.getloadavg()[0]:.1f}; run took {self.elapsed:.0f} s.")
        for n in self.notes:
            lines.append(f"- note: {n}")
        return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.split("\n")[5:]))
    ap.add_argument("--build", default=os.environ.get("HFVFS_BUILD_DIR",
                                                      os.path.join(ROOT, "build")))
    ap.add_argument("--data", default="",
                    help="folder for the server and the 1 GiB file, kept between runs so the "
                         "objects are put once (default: a temporary folder)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--cases", default=",".join(CASE_GROUPS),
                    help="groups among " + ",".join(CASE_GROUPS))
    ap.add_argument("--contenders", default="", help="comma list (default: all)")
    ap.add_argument("--alt", action="append", default=[], metavar="LABEL=PLUGIN_DIR")
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--files", type=int, default=10000, help="a multiple of 100")
    ap.add_argument("--fio-seconds", type=int, default=10)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    args = ap.parse_args()
    for g in args.cases.split(","):
        if g not in CASE_GROUPS:
            raise SystemExit(f"unknown case group {g}; known: {','.join(CASE_GROUPS)}")
    if os.geteuid() != 0:
        log("not root: the page cache cannot be dropped, cold figures will be optimistic")
    bench = Bench(args)
    bench.run()
    text = bench.table()
    print(text)
    os.makedirs(args.out, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    with open(os.path.join(args.out, f"s3-{stamp}.json"), "w") as f:
        json.dump({"results": bench.results, "notes": bench.notes, "args": vars(args),
                   "load": os.getloadavg()}, f, indent=1)
    with open(os.path.join(args.out, f"s3-{stamp}.md"), "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    import page_reporting  # beside this script: memory the host took back skews the figures

    with page_reporting.held_off():
        main()
