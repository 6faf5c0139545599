#!/usr/bin/python3
"""How fast can the local disk give back 1 GiB stored as chunk files, by layout and access?

    bench/chunk_layout.py [--dir D] [--mib 1024] [--rounds 3]

Writes the same bytes three ways under D (default /tmp, the file system of the default cache):
one big file, 1 MiB chunk files and 4 MiB chunk files (each with a 4 KiB header, written in
order by one thread, as the cache's writer does), then reads each back with the page cache
dropped, in several ways, rounds interleaved, and prints the median MB/s of each. Needs root
(drop_caches). A measurement aid for choosing the cache's layout, not a test.
"""
import argparse
import mmap
import os
import statistics
import sys
import threading
import time

HEADER = 4096
MIB = 1 << 20


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def write_layouts(root, mib):
    block = os.urandom(MIB)
    big = os.path.join(root, "big.dat")
    if not os.path.exists(big):
        with open(big, "wb") as f:
            for _ in range(mib):
                f.write(block)
    layouts = {"big": [(big, 0, mib * MIB)]}
    for chunk_mib in (1, 4):
        d = os.path.join(root, f"c{chunk_mib}")
        files = []
        os.makedirs(d, exist_ok=True)
        for i in range(mib // chunk_mib):
            p = os.path.join(d, f"chunk.{i}")
            if not os.path.exists(p):
                with open(p + ".tmp", "wb") as f:
                    f.write(b"\0" * HEADER)
                    for _ in range(chunk_mib):
                        f.write(block)
                os.rename(p + ".tmp", p)
            files.append((p, HEADER, chunk_mib * MIB))
        layouts[f"c{chunk_mib}"] = files
    os.sync()
    return layouts


def read_files(files, threads, request, direct, willneed_ahead):
    """Reads every file's data range; `threads` workers take files in order."""
    lock = threading.Lock()
    next_file = [0]
    flags = os.O_RDONLY | (os.O_DIRECT if direct else 0)
    fds = [None] * len(files)

    def advise_upto(k):
        for j in range(k, min(len(files), k + willneed_ahead)):
            if fds[j] is None:
                fds[j] = os.open(files[j][0], flags)
                os.posix_fadvise(fds[j], 0, 0, os.POSIX_FADV_WILLNEED)

    def worker():
        buf = mmap.mmap(-1, request)
        while True:
            with lock:
                i = next_file[0]
                next_file[0] += 1
                if i < len(files) and willneed_ahead:
                    advise_upto(i)
            if i >= len(files):
                return
            path, start, length = files[i]
            fd = fds[i] if fds[i] is not None else os.open(path, flags)
            off = 0
            while off < length:
                n = os.preadv(fd, [memoryview(buf)[:min(request, length - off)]], start + off)
                if n <= 0:
                    raise RuntimeError(f"{path}: short read at {off}")
                off += n
            os.close(fd)

    t0 = time.perf_counter()
    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    total = sum(f[2] for f in files)
    return total / (time.perf_counter() - t0) / 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="/tmp/hfvfs-chunk-layout")
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default="", help="comma list of case names")
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    layouts = write_layouts(args.dir, args.mib)
    cases = [
        ("big pread 1M", "big", 1, MIB, False, 0),
        ("c1 pread 1M qd1", "c1", 1, MIB, False, 0),
        ("c1 pread 1M willneed64", "c1", 1, MIB, False, 64),
        ("c1 pread 1M 4 threads", "c1", 4, MIB, False, 0),
        ("c1 direct 1M 4 threads", "c1", 4, MIB, True, 0),
        ("c1 direct 1M 8 threads", "c1", 8, MIB, True, 0),
        ("c4 pread 1M qd1", "c4", 1, MIB, False, 0),
        ("c4 pread 4M 4 threads", "c4", 4, 4 * MIB, False, 0),
        ("c4 direct 4M 2 threads", "c4", 2, 4 * MIB, True, 0),
        ("c4 direct 4M 4 threads", "c4", 4, 4 * MIB, True, 0),
    ]
    if args.only:
        keep = set(args.only.split(","))
        cases = [c for c in cases if c[0] in keep]
    results = {c[0]: [] for c in cases}
    for r in range(args.rounds):
        for name, layout, threads, request, direct, ahead in cases:
            drop_caches()
            mbs = read_files(layouts[layout], threads, request, direct, ahead)
            results[name].append(mbs)
            print(f"round {r} {name}: {mbs:.0f} MB/s", file=sys.stderr, flush=True)
    print("| case | median MB/s | rounds |")
    print("|---|---|---|")
    for name, vals in results.items():
        print(f"| {name} | {statistics.median(vals):.0f} | "
              + ", ".join(f"{v:.0f}" for v in vals) + " |")


if __name__ == "__main__":
    import page_reporting  # beside this script: memory the host took back skews the figures

    with page_reporting.held_off():
        main()
