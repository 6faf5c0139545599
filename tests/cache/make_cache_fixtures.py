#!/usr/bin/python3
"""Hub emulator fixtures for the cache's end-to-end tests (tests/cache/cache_e2e_test.cc).

    /usr/bin/python3 tests/cache/make_cache_fixtures.py --out DIR

Writes one repo, hfvfs-test/cache-e2e (branch main): weights.bin, 24 MiB of seeded
pseudo-random bytes (served as LFS through the emulator's CDN port), and notes.txt (small). A
no-op when DIR is already complete (manifest.json present).
"""
import argparse
import fcntl
import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))

import make_hub_fixtures as fixtures  # noqa: E402
import hub_emulator as hub  # noqa: E402

WEIGHTS_SIZE = 24 << 20
WEIGHTS_SEED = 4242


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    # ctest runs several tests of one binary at once, each asking for the fixtures: one writes
    # them while the others wait on the lock, then find them complete.
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return write_fixtures(out)


def write_fixtures(out):
    if os.path.exists(os.path.join(out, "manifest.json")):
        return 0
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    cache = hub.HashCache(os.path.join(out, ".hash-cache.json"))
    with open(os.path.join(out, "tokens.json"), "w") as f:
        json.dump({fixtures.TOKEN_READER: {"name": "hfvfs-reader", "repos": ["*"]}}, f)
    w = fixtures.RepoWriter(out, cache, "model", "hfvfs-test/cache-e2e",
                            {"_id": "65f0c0ffee0000000000c001", "tags": ["cache"]})
    w.commit("main", "2024-08-01T00:00:00.000Z", "weights for the cache tests", {
        "weights.bin": fixtures.pseudo_random(WEIGHTS_SEED, WEIGHTS_SIZE),
        "notes.txt": b"cached through hfvfs\n",
    })
    manifest = {"root": out, "repos": {
        "model/hfvfs-test/cache-e2e": w.describe(w.refs({"main": "main"}))}}
    cache.save()
    with open(os.path.join(out, "manifest.json.tmp"), "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(os.path.join(out, "manifest.json.tmp"), os.path.join(out, "manifest.json"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
