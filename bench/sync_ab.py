#!/usr/bin/python3
"""Interleaved A/B of creating small files through `s3` + `sync` (bench/sync_bench.py's
create1000 case): two builds of libhfvfs-sync.so, given as plugin folders A and B (each spec
names its folder in plugin_path), and rclone --vfs-cache-mode writes, on one loopback S3
server, in rounds A, B, rclone, A, B, rclone, ... Prints each figure and the medians.

    bench/sync_ab.py --a /tmp/pluginsA --b /tmp/pluginsB [--rounds 3] [--files 1000]
"""
import argparse
import importlib.machinery
import importlib.util
import os
import shutil
import statistics
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_loader = importlib.machinery.SourceFileLoader("bench_run", os.path.join(ROOT, "bench", "run"))
_spec = importlib.util.spec_from_loader("bench_run", _loader)
bench_run = importlib.util.module_from_spec(_spec)
_loader.exec_module(bench_run)
log = bench_run.log


def create_files(mnt, prefix, n):
    d = os.path.join(mnt, prefix)
    os.makedirs(d, exist_ok=True)
    t0 = time.perf_counter()
    for i in range(n):
        with open(os.path.join(d, f"f{i:04d}"), "wb") as f:
            f.write(b"x" * 1024)
    return n / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--a", required=True, help="plugin folder holding the A libhfvfs-sync.so")
    ap.add_argument("--b", required=True, help="plugin folder holding the B libhfvfs-sync.so")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--files", type=int, default=1000)
    args = ap.parse_args()
    import boto3
    from botocore.config import Config

    work = tempfile.mkdtemp(prefix="hfvfs-sync-ab-")
    servers = bench_run.Servers(args.build, work)
    results = {}
    try:
        info = servers.start_s3()
        if info is None:
            raise SystemExit("the S3 server did not start")
        endpoint, key, secret = info["endpoint"], info["access_key"], info["secret_key"]
        env = dict(os.environ, AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret)
        env.pop("AWS_CA_BUNDLE", None)
        s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key,
                          aws_secret_access_key=secret, region_name="us-east-1",
                          config=Config(s3={"addressing_style": "path"}))

        def hfvfs(name, plugins):
            def make(bucket):
                mnt = os.path.join(work, "mnt-" + name)
                stack = (f'plugin_path = "{os.path.abspath(plugins)}"\n\n'
                         f'[[layer]]\ntype = "s3"\nbucket = "{bucket}"\n'
                         f'endpoint = "{endpoint}"\nregion = "us-east-1"\naddressing = "path"\n\n'
                         f'[[layer]]\ntype = "sync"\nstaging_dir = "{work}/staging-{bucket}"\n'
                         f'flush_debounce = "100ms"\npoll_interval = "0"\n')
                m = bench_run.hfvfs_mount(args.build, name, stack, mnt)
                m.env.update(AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret)
                return m
            return make

        contenders = [("A", hfvfs("A", args.a)), ("B", hfvfs("B", args.b))]
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
                        "--cache-dir", os.path.join(work, "rclone-cache-" + bucket)]
                return bench_run.Mount("rclone-writes", argv, mnt, env=renv)
            contenders.append(("rclone", rclone))
        for r in range(args.rounds):
            for name, make in contenders:
                bucket = f"ab-{name.lower()}-{r}"
                s3.create_bucket(Bucket=bucket)
                with make(bucket) as m:
                    rate = create_files(m.mountpoint, "many", args.files)
                results.setdefault(name, []).append(rate)
                log(f"round {r} {name}: {rate:.0f} files/s")
    finally:
        servers.stop()
        shutil.rmtree(work, ignore_errors=True)
    print("| contender | files/s (each round) | median |")
    print("|---|---|---|")
    for name, rates in results.items():
        print(f"| {name} | {' '.join(f'{x:.0f}' for x in rates)} | "
              f"{statistics.median(rates):.0f} |")


if __name__ == "__main__":
    import page_reporting  # beside this script: memory the host took back skews the figures

    with page_reporting.held_off():
        main()
