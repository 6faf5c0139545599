#!/usr/bin/python3
"""Checks that the Hub emulator is not a bottleneck: one curl stream of the 1 GiB fixture file.

    /usr/bin/python3 tests/support/emulator_throughput.py --fixtures DIR [--min-gbps 1.5] [--runs 3]

Generates the --big fixtures if missing, starts the emulator, warms the page cache, then runs
`curl -L -o /dev/null` on the resolve URL (302 to the CDN port, like a client) --runs times and
prints each speed. Exits 1 when the best run is below --min-gbps (GB/s, 10^9 bytes per second).
"""

import argparse
import json
import os
import signal
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", required=True)
    ap.add_argument("--min-gbps", type=float, default=1.5)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    subprocess.run(["/usr/bin/python3", os.path.join(HERE, "make_hub_fixtures.py"), "--out",
                    args.fixtures, "--big"], check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(args.fixtures, "manifest.json")) as f:
        manifest = json.load(f)
    big = os.path.join(manifest["repos"]["model/hfvfs-test/big-file"]["files_dir"]["main"],
                       "big.dat")
    with open(big, "rb") as f:  # warm the page cache: measure the server, not the disk
        while f.read(16 << 20):
            pass
    proc = subprocess.Popen(["/usr/bin/python3", os.path.join(HERE, "hub_emulator.py"),
                             "--fixtures", args.fixtures], stdout=subprocess.PIPE)
    ready = json.loads(proc.stdout.readline())
    url = "http://127.0.0.1:%d/hfvfs-test/big-file/resolve/main/big.dat" % ready["port"]
    best = 0.0
    try:
        for i in range(args.runs):
            out = subprocess.run(["curl", "-sSfL", "-o", "/dev/null", "-w",
                                  "%{size_download} %{speed_download} %{time_total}", url],
                                 check=True, capture_output=True, text=True).stdout.split()
            size, speed, secs = int(out[0]), float(out[1]), float(out[2])
            if size != 1 << 30:
                sys.exit("run %d: got %d bytes, want %d" % (i + 1, size, 1 << 30))
            print("run %d: 1 GiB in %.3f s = %.2f GB/s" % (i + 1, secs, speed / 1e9))
            best = max(best, speed / 1e9)
    finally:
        os.kill(ready["pid"], signal.SIGTERM)
        proc.wait(timeout=10)
    print("best: %.2f GB/s (needs > %.2f)" % (best, args.min_gbps))
    return 0 if best > args.min_gbps else 1


if __name__ == "__main__":
    sys.exit(main())
