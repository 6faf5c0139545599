#!/usr/bin/python3
"""Write-path benchmark of the sync layer (issue 8), against the loopback S3 server.

    bench/sync.sh [--build build] [--out bench/results] [--file-mib 256] [--writes 4096]

Contenders, each mounted on the same bucket of the same server:
  hfvfs-sync    hfvfs: s3 -> sync (flush_debounce 100ms)
  rclone-writes rclone mount --vfs-cache-mode writes
  s3fs          s3fs

Cases
  rand4k_write   random 4 KiB pwrites into a file of --file-mib MiB (--writes of them), writes/s
  rand4k_close   close() of that file, ms (s3fs uploads the whole object here)
  rand4k_visible time from close() returning to the object's full size showing in boto3, ms
  create1000     create 1,000 files of 1 KiB (open, write, close), files/s
  create_visible time from the last close() to all 1,000 listed by boto3, ms
  small_visible  a 1 MiB file: close() returning to boto3 head seeing it, ms

Servers bind 127.0.0.1 and are stopped by PID. Reuses bench/run's Servers and Mount.
"""
import argparse
import importlib.machinery
import importlib.util
import json
import os
import random
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_loader = importlib.machinery.SourceFileLoader("bench_run", os.path.join(ROOT, "bench", "run"))
_spec = importlib.util.spec_from_loader("bench_run", _loader)
bench_run = importlib.util.module_from_spec(_spec)
_loader.exec_module(bench_run)
log = bench_run.log


def wait_until(pred, timeout=120.0, step=0.01):
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if pred():
            return (time.perf_counter() - t0) * 1000.0
        time.sleep(step)
    raise RuntimeError("not visible within %.0f s" % timeout)


def cases(mnt, s3, bucket, prefix, file_mib, writes):
    out = {}
    size = file_mib << 20
    path = os.path.join(mnt, prefix + "big.bin")
    key = prefix + "big.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    os.ftruncate(fd, size)
    rng = random.Random(1)
    block = b"w" * 4096
    t0 = time.perf_counter()
    for _ in range(writes):
        os.pwrite(fd, block, rng.randrange(size // 4096) * 4096)
    out["rand4k_write"] = writes / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    os.close(fd)
    out["rand4k_close"] = (time.perf_counter() - t0) * 1000.0

    def big_visible():
        try:
            return s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == size
        except Exception:
            return False

    out["rand4k_visible"] = wait_until(big_visible)

    d = os.path.join(mnt, prefix + "many")
    os.makedirs(d, exist_ok=True)
    t0 = time.perf_counter()
    for i in range(1000):
        with open(os.path.join(d, f"f{i:04d}"), "wb") as f:
            f.write(b"x" * 1024)
    out["create1000"] = 1000 / (time.perf_counter() - t0)

    def all_listed():
        n = 0
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                 Prefix=prefix + "many/"):
            n += page.get("KeyCount", 0)
        return n >= 1000

    out["create_visible"] = wait_until(all_listed, step=0.05)

    small = prefix + "small.bin"
    with open(os.path.join(mnt, small), "wb") as f:
        f.write(b"s" * (1 << 20))

    def small_visible():
        try:
            return s3.head_object(Bucket=bucket, Key=small)["ContentLength"] == 1 << 20
        except Exception:
            return False

    out["small_visible"] = wait_until(small_visible)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    ap.add_argument("--file-mib", type=int, default=256)
    ap.add_argument("--writes", type=int, default=4096)
    args = ap.parse_args()
    import boto3
    from botocore.config import Config

    work = tempfile.mkdtemp(prefix="hfvfs-sync-bench-")
    servers = bench_run.Servers(args.build, work)
    results = {}
    try:
        info = servers.start_s3()
        if info is None:
            sys.exit("the S3 server did not start")
        endpoint, key, secret = info["endpoint"], info["access_key"], info["secret_key"]
        env = dict(os.environ, AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret)
        env.pop("AWS_CA_BUNDLE", None)
        s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key,
                          aws_secret_access_key=secret, region_name="us-east-1",
                          config=Config(s3={"addressing_style": "path"}))
        contenders = []
        binary = bench_run.hfvfs_binary(args.build)
        if binary and os.path.exists(os.path.join(args.build, "plugins", "libhfvfs-sync.so")):
            def hfvfs(bucket):
                mnt = os.path.join(work, "mnt-hfvfs")
                stack = (f'[[layer]]\ntype = "s3"\nbucket = "{bucket}"\n'
                         f'endpoint = "{endpoint}"\nregion = "us-east-1"\naddressing = "path"\n\n'
                         f'[[layer]]\ntype = "sync"\nstaging_dir = "{work}/staging"\n'
                         f'flush_debounce = "100ms"\npoll_interval = "0"\n')
                m = bench_run.hfvfs_mount(args.build, "sync", stack, mnt)
                m.env.update(AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret)
                return m
            contenders.append(("hfvfs-sync", hfvfs))
        if shutil.which("rclone"):
            def rclone(bucket):
                mnt = os.path.join(work, "mnt-rclone")
                renv = dict(env, RCLONE_CONFIG_BENCH_TYPE="s3",
                            RCLONE_CONFIG_BENCH_PROVIDER="Other",
                            RCLONE_CONFIG_BENCH_ENDPOINT=endpoint,
                            RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=key,
                            RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=secret,
                            RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE="true")
                argv = ["rclone", "mount", f"bench:{bucket}", mnt, "--vfs-cache-mode", "writes",
                        "--cache-dir", os.path.join(work, "rclone-cache")]
                return bench_run.Mount("rclone-writes", argv, mnt, env=renv)
            contenders.append(("rclone-writes", rclone))
        if shutil.which("s3fs"):
            # The server's access key holds a ':' (Swift account:user), which a passwd file
            # cannot carry: s3fs reads the keys from its environment instead.
            senv = dict(env, AWSACCESSKEYID=key, AWSSECRETACCESSKEY=secret)

            def s3fs(bucket):
                mnt = os.path.join(work, "mnt-s3fs")
                argv = ["s3fs", bucket, mnt, "-f", "-o", f"url={endpoint}", "-o",
                        "use_path_request_style"]
                return bench_run.Mount("s3fs", argv, mnt, env=senv)
            contenders.append(("s3fs", s3fs))
        for name, make in contenders:
            bucket = "sync-" + name.replace("_", "-")
            s3.create_bucket(Bucket=bucket)
            log(f"{name}: running")
            try:
                with make(bucket) as m:
                    results[name] = cases(m.mountpoint, s3, bucket, "", args.file_mib,
                                          args.writes)
            except Exception as e:  # one contender failing does not stop the others
                log(f"{name}: failed: {e}")
    finally:
        servers.stop()
        shutil.rmtree(work, ignore_errors=True)
    cols = ["rand4k_write", "rand4k_close", "rand4k_visible", "create1000", "create_visible",
            "small_visible"]
    units = ["writes/s", "ms", "ms", "files/s", "ms", "ms"]
    print("| contender | " + " | ".join(f"{c} ({u})" for c, u in zip(cols, units)) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for name, r in results.items():
        print(f"| {name} | " + " | ".join(f"{r[c]:.0f}" if c in r else "-" for c in cols) + " |")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"sync-{int(time.time())}.json"), "w") as f:
        json.dump({"file_mib": args.file_mib, "writes": args.writes, "results": results}, f,
                  indent=1)


if __name__ == "__main__":
    import page_reporting  # beside this script: memory the host took back skews the figures

    with page_reporting.held_off():
        main()
