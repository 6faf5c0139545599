#!/usr/bin/python3
"""Generates the Hub emulator's fixtures folder (see hub_emulator.py for the format).

    /usr/bin/python3 tests/support/make_hub_fixtures.py --out DIR [--big] [--force]

Repos written (commit shas are real git commit ids of the trees, so they are stable):
  model   hfvfs-test/tiny-model     main, tag v1.0 (older commit, different content),
                                    branch feature/x (= v1.0), refs/pr/1 (main + an extra file)
  model   hfvfs-test/private-model  private: needs a token from tokens.json
  model   hfvfs-test/gated-model    gated: lists freely, files need a granted token
  dataset hfvfs-test/many-files     10,000 files: train/part-000..099/row-000..099.json
  space   hfvfs-test/tiny-space     a few small files
  model   hfvfs-test/big-file       (--big) big.dat, 1 GiB of seeded pseudo-random bytes (LFS)
DIR/manifest.json records the shas, tokens and the tensors of every safetensors file, and the
generator is a no-op when DIR already holds fixtures of this version (unless --force), so
tests can call it before every run. Hashes are cached for the emulator (DIR/.hash-cache.json).
"""

import argparse
import json
import os
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hub_emulator as hub  # noqa: E402  (hashing helpers and the fixture reader)

VERSION = 5
TOKEN_READER = "hf_hfvfstest_reader_0123456789abcdefABCDEF"
TOKEN_NO_ACCESS = "hf_hfvfstest_noaccess_0123456789abcdefAB"
BIG_SIZE = 1 << 30


def safetensors_bytes(tensors, metadata):
    """tensors: list of (name, numpy array). Returns the file bytes and the header dict."""
    dtypes = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16",
              np.dtype(np.int64): "I64", np.dtype(np.int32): "I32", np.dtype(np.uint8): "U8"}
    header = {"__metadata__": metadata}
    blobs, off = [], 0
    for name, arr in tensors:
        raw = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtypes[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    hjson = json.dumps(header, separators=(",", ":")).encode()
    hjson += b" " * (-len(hjson) % 8)  # the data section starts 8-byte aligned
    return len(hjson).to_bytes(8, "little") + hjson + b"".join(blobs), header


def tiny_tensors(version):
    sign = 1.0 if version >= 2 else -1.0
    return [
        ("embed.weight", (np.arange(128, dtype=np.float32).reshape(16, 8) / 8.0 * sign +
                          np.float32(version))),
        ("layer0.bias", np.linspace(-1.0, 1.0, 8, dtype=np.float32) * np.float32(version)),
        ("norm.weight", np.full((8,), 0.5 * version, dtype=np.float16)),
        ("position_ids", np.arange(16, dtype=np.int64).reshape(1, 16) + 100 * version),
    ]


def pseudo_random(seed, n):
    return np.random.default_rng(seed).bytes(n)


class RepoWriter:

    def __init__(self, root, cache, rtype, rid, meta):
        self.cache = cache
        self.rtype = rtype
        self.rid = rid
        self.folder = os.path.join(root, "repos", rtype + "s", *rid.split("/"))
        os.makedirs(os.path.join(self.folder, "commits"))
        with open(os.path.join(self.folder, "repo.json"), "w") as f:
            json.dump(meta, f, indent=1)
        self.shas = {}  # commit key -> sha
        self.files = {}  # commit key -> {path: bytes | ("copy", src path)}

    def commit(self, key, date, title, files, parent=None):
        """files: {path: bytes, or callable(dest_path) writing the file}. Returns the sha."""
        stage = os.path.join(self.folder, "commits", ".staging")
        fdir = os.path.join(stage, "files")
        os.makedirs(fdir)
        for path, content in files.items():
            dest = os.path.join(fdir, *path.split("/"))
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            if callable(content):
                content(dest)
            else:
                with open(dest, "wb") as f:
                    f.write(content)
        parents = [self.shas[parent]] if parent else []
        tree = hub.Commit("staging", {}, fdir, self.cache).tree_oid[""]
        sha = hub.git_commit_oid(tree, parents, hub.parse_iso(date), title)
        with open(os.path.join(stage, "commit.json"), "w") as f:
            json.dump({"date": date, "parents": parents, "title": title}, f, indent=1)
        os.rename(stage, os.path.join(self.folder, "commits", sha))
        self.shas[key] = sha
        return sha

    def refs(self, branches, tags=None, prs=None):
        refs = {"branches": {k: self.shas[v] for k, v in branches.items()},
                "tags": {k: self.shas[v] for k, v in (tags or {}).items()},
                "prs": {k: self.shas[v] for k, v in (prs or {}).items()}}
        with open(os.path.join(self.folder, "refs.json"), "w") as f:
            json.dump(refs, f, indent=1)
        return refs

    def describe(self, refs):
        return {"type": self.rtype, "id": self.rid, "refs": refs, "commits": self.shas,
                "files_dir": {k: os.path.join(self.folder, "commits", s, "files")
                              for k, s in self.shas.items()}}


def json_bytes(obj):
    return (json.dumps(obj, indent=2) + "\n").encode()


def make_tiny_model(root, cache, manifest):
    w = RepoWriter(root, cache, "model", "hfvfs-test/tiny-model", {
        "_id": "65f0c0ffee0000000000a001", "downloads": 1234, "likes": 5,
        "pipeline_tag": "text-generation", "library_name": "transformers",
        "tags": ["transformers", "safetensors", "tiny", "license:mit"],
        "config": {"architectures": ["TinyModel"], "model_type": "tiny"},
        "cardData": {"license": "mit"}})
    tokenizer = {"version": "1.0", "model": {"type": "WordLevel", "unk_token": "[UNK]",
                                             "vocab": {"[UNK]": 0, **{"tok%d" % i: i
                                                                      for i in range(1, 16)}}}}
    readme = b"---\nlicense: mit\n---\n# tiny-model\n\nA tiny model for hfvfs tests.\n"
    st = {}
    files = {}
    for version in (1, 2):
        data, header = safetensors_bytes(tiny_tensors(version), {"format": "pt",
                                                                 "version": str(version)})
        st[version] = header
        files[version] = {
            "config.json": json_bytes({"architectures": ["TinyModel"], "model_type": "tiny",
                                       "hidden_size": 8, "vocab_size": 16,
                                       "version": version}),
            "tokenizer.json": json_bytes(tokenizer),
            "README.md": readme,
            "model.safetensors": data,
            "a/b/c/deep.txt": b"a deep file, version %d\n" % version,
        }
    files[2].update({
        "onnx/model.onnx": pseudo_random(7, 64 * 1024),
        "onnx/config.json": json_bytes({"opset": 17}),
        "with space #1.txt": b"a file whose name has a space and a hash\n",
        "dir with space/a+b=c%.txt": b"plus, equals and percent in a name\n",
        "empty.txt": b"",
        "vocab/" + "long_name_" * 10 + ".txt": b"a long file name\n",
        "unicode/h\u00e9llo w\u00f6rld \u65e5\u672c.txt": "UTF-8 in a name\n".encode(),
    })
    w.commit("v1", "2024-01-15T10:00:00.000Z", "Initial commit", files[1])
    w.commit("main", "2024-03-01T12:30:00.000Z", "Update the weights, add onnx", files[2],
             parent="v1")
    pr = dict(files[2])
    pr["pr-extra.txt"] = b"only on refs/pr/1\n"
    pr["README.md"] = readme + b"\nEdited in a pull request.\n"
    w.commit("pr1", "2024-04-02T08:00:00.000Z", "Add pr-extra.txt", pr, parent="main")
    refs = w.refs({"main": "main", "feature/x": "v1"}, {"v1.0": "v1"}, {"1": "pr1"})
    d = w.describe(refs)
    d["safetensors"] = {"v1": st[1], "main": st[2], "pr1": st[2]}
    manifest["repos"]["model/hfvfs-test/tiny-model"] = d


def make_private_model(root, cache, manifest):
    w = RepoWriter(root, cache, "model", "hfvfs-test/private-model", {
        "_id": "65f0c0ffee0000000000a002", "private": True, "tags": ["private"]})
    data, header = safetensors_bytes(tiny_tensors(3), {"format": "pt"})
    w.commit("main", "2024-02-01T09:00:00.000Z", "Private weights", {
        "config.json": json_bytes({"private": True, "hidden_size": 8}),
        "README.md": b"# private-model\n",
        "model.safetensors": data,
    })
    d = w.describe(w.refs({"main": "main"}))
    d["safetensors"] = {"main": header}
    manifest["repos"]["model/hfvfs-test/private-model"] = d


def make_gated_model(root, cache, manifest):
    w = RepoWriter(root, cache, "model", "hfvfs-test/gated-model", {
        "_id": "65f0c0ffee0000000000a004", "gated": "auto", "tags": ["gated"]})
    w.commit("main", "2024-02-10T09:00:00.000Z", "Gated files", {
        "config.json": json_bytes({"gated": True}),
        "README.md": b"# gated-model\n\nAccept the conditions to access its files.\n",
    })
    manifest["repos"]["model/hfvfs-test/gated-model"] = w.describe(w.refs({"main": "main"}))


def make_many_files(root, cache, manifest):
    w = RepoWriter(root, cache, "dataset", "hfvfs-test/many-files", {
        "_id": "65f0c0ffee0000000000b001", "downloads": 7, "tags": ["size_categories:10K<n<100K"]})
    files = {}
    for i in range(100):
        for j in range(100):
            files["train/part-%03d/row-%03d.json" % (i, j)] = b'{"part": %d, "row": %d}\n' % (i, j)
    w.commit("main", "2024-05-05T05:05:05.000Z", "10,000 files", files)
    manifest["repos"]["dataset/hfvfs-test/many-files"] = w.describe(w.refs({"main": "main"}))


def make_space(root, cache, manifest):
    w = RepoWriter(root, cache, "space", "hfvfs-test/tiny-space", {
        "_id": "65f0c0ffee0000000000c001", "sdk": "gradio", "likes": 1})
    w.commit("main", "2024-06-01T00:00:00.000Z", "A tiny space", {
        "README.md": b"---\nsdk: gradio\n---\n# tiny-space\n",
        "app.py": b"print('hello from a tiny space')\n",
        "requirements.txt": b"gradio\n",
    })
    manifest["repos"]["space/hfvfs-test/tiny-space"] = w.describe(w.refs({"main": "main"}))


def make_big(root, cache, manifest):
    w = RepoWriter(root, cache, "model", "hfvfs-test/big-file", {
        "_id": "65f0c0ffee0000000000a003", "tags": ["benchmark"]})

    def write_big(dest):
        rng = np.random.default_rng(1234)
        block = 16 << 20
        with open(dest, "wb") as f:
            for _ in range(BIG_SIZE // block):
                f.write(rng.bytes(block))

    w.commit("main", "2024-07-01T00:00:00.000Z", "A 1 GiB file", {
        "README.md": b"# big-file\n\nbig.dat: 1 GiB of seeded pseudo-random bytes.\n",
        "big.dat": write_big,
    })
    manifest["repos"]["model/hfvfs-test/big-file"] = w.describe(w.refs({"main": "main"}))


def write_manifest(mpath, manifest):
    with open(mpath + ".tmp", "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(mpath + ".tmp", mpath)  # written last: its presence means "complete"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--big", action="store_true", help="also write the 1 GiB benchmark file")
    ap.add_argument("--force", action="store_true", help="regenerate even if up to date")
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    mpath = os.path.join(out, "manifest.json")
    if not args.force and os.path.exists(mpath):
        try:
            with open(mpath) as f:
                old = json.load(f)
        except ValueError:
            old = {}
        if old.get("version") == VERSION and (old.get("big") or not args.big):
            print("fixtures in %s are up to date" % out)
            return 0
        if old.get("version") == VERSION:  # only the big repo is missing: add it in place
            cache = hub.HashCache(os.path.join(out, ".hash-cache.json"))
            big_dir = os.path.join(out, "repos", "models", "hfvfs-test", "big-file")
            if os.path.exists(big_dir):
                shutil.rmtree(big_dir)  # left over from an interrupted run
            make_big(out, cache, old)
            cache.save()
            old["big"] = True
            write_manifest(mpath, old)
            print("added the 1 GiB file to %s" % out)
            return 0
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    cache = hub.HashCache(os.path.join(out, ".hash-cache.json"))
    manifest = {"version": VERSION, "big": args.big, "root": out,
                "tokens": {"reader": TOKEN_READER, "no_access": TOKEN_NO_ACCESS},
                "repos": {}}
    with open(os.path.join(out, "tokens.json"), "w") as f:
        json.dump({TOKEN_READER: {"name": "hfvfs-reader", "repos": ["*"]},
                   TOKEN_NO_ACCESS: {"name": "hfvfs-nobody", "repos": []}}, f, indent=1)
    make_tiny_model(out, cache, manifest)
    make_private_model(out, cache, manifest)
    make_gated_model(out, cache, manifest)
    make_many_files(out, cache, manifest)
    make_space(out, cache, manifest)
    if args.big:
        make_big(out, cache, manifest)
    cache.save()
    write_manifest(mpath, manifest)
    print("wrote fixtures to %s" % out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
