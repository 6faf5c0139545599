#!/usr/bin/python3
"""A Hugging Face Hub emulator for tests: the Hub's HTTP API, served from a fixtures folder.

HOW TO USE IT FROM A TEST
-------------------------
1. Generate the fixtures once (not committed; ~45 MB, plus 1 GiB with --big):

       /usr/bin/python3 tests/support/make_hub_fixtures.py --out build/hub-fixtures [--big]

2. Start the emulator (stdlib only, run with /usr/bin/python3):

       /usr/bin/python3 tests/support/hub_emulator.py --fixtures build/hub-fixtures \
           [--ready-file FILE] [--tokens-file FILE] [--cdn-ttl SECONDS] [--tree-page-size N] [-v]

   It binds 127.0.0.1 on a free port for the Hub and a second free port for the CDN, then prints
   exactly one JSON line on stdout (and writes the same line to --ready-file if given, via an
   atomic rename, so a test may poll for the file instead of reading the pipe):

       {"port": 40123, "cdn_port": 40124, "pid": 4242}

   Endpoint for clients: http://127.0.0.1:<port> (HF_ENDPOINT / hubUrl / `endpoint` in a spec).
   Read that line before sending requests; the servers are listening once it is printed.
3. Stop it with SIGTERM to that pid (`kill <pid>`); it exits 0. Never kill it by name.

Under ctest, the fixture `hub_fixtures` (tests/hub_emulator/CMakeLists.txt) generates
${CMAKE_BINARY_DIR}/hub-fixtures: add `FIXTURES_REQUIRED hub_fixtures` to a test and pass it that
folder. Benchmarks run make_hub_fixtures.py --big themselves (same folder; a no-op once done).
The fixtures' manifest.json gives every repo's commit shas, files folders, tokens and tensors.

From C++ (GoogleTest) the usual pattern is: posix_spawn it with stdout on a pipe, read one
line, parse "port"/"cdn_port"/"pid", and kill(pid, SIGTERM) + waitpid in the fixture teardown.
tests/support/hub_emulator_test.py has a Python example (class EmulatorProcess).

Tokens: `--tokens-file` (default: <fixtures>/tokens.json) is either JSON
{"hf_xxx": {"name": "user", "repos": ["*"]}} (repos: "type/ns/name" ids or "*") or plain text,
one token per line (access to everything). Tokens must start with "hf_" like the real Hub's.

WHAT IT SERVES (as the real Hub does)
-------------------------------------
  GET  /api/{models|datasets|spaces}/{repo}[/revision/{rev}]   repo info (?expand=..., ?blobs=true)
  GET  /api/{type}s/{repo}/tree/{rev}[/{path}]?recursive=&expand=&limit=&cursor=
       pages of at most --tree-page-size entries (default 1000), `Link: <absolute>; rel="next"`
  POST /api/{type}s/{repo}/paths-info/{rev}   JSON {"paths": [...], "expand": b} or form-encoded
  GET  /api/{type}s/{repo}/refs[?include_prs=1]             branches, tags, pullRequests
  GET  /api/whoami-v2
  HEAD|GET /{repo}|/datasets/{repo}|/spaces/{repo}/(resolve|raw)/{rev}/{path}
       non-LFS: 200/206 with ETag "<git blob oid>", X-Repo-Commit, Content-Length, Accept-Ranges
       LFS: 302 to a signed CDN URL on the CDN port (expires after --cdn-ttl seconds) with
            X-Linked-Size, X-Linked-Etag "<sha256>", X-Repo-Commit
  CDN port: HEAD|GET /lfs/{sha256}?Expires=..&Signature=..&Key-Pair-Id=..   (403 when expired
       or badly signed; ETag "<sha256>"; Range)
  Range on both ports: 206 + Content-Range, suffix ranges, 416 + "bytes */size" when unsatisfiable.
  Revisions: branch, tag, full (or >= 7 char prefix) commit sha, "HEAD", refs/pr/N, refs/heads/X,
  refs/tags/X. A revision is ONE path segment: refs/pr/1 must be sent as refs%2Fpr%2F1.
  Errors: JSON {"error": msg} + X-Error-Message; X-Error-Code RepoNotFound / RevisionNotFound /
  EntryNotFound on 404. Like the real Hub, a missing or private repo asked WITHOUT a token
  answers 401 + X-Error-Code: RepoNotFound (it does not reveal which); with a valid token that
  lacks access, or for a missing repo, it answers 404 RepoNotFound. An unknown token gets 401
  "Invalid credentials in Authorization header" on every endpoint. A gated repo (repo.json
  "gated": "auto"|"manual") lists freely, but its resolve answers 401 (no token) or 403 (token
  not granted) with X-Error-Code: GatedRepo.
  Not emulated: Xet (no xetHash in listings, no CAS; every big file is plain LFS as on older
  repos), commits/refs mutation endpoints, buckets, and renamed-repo relative redirects.

CONTROL API (hub port, not counted in stats)
--------------------------------------------
  POST /_emulator/faults  one object or a list:
       {"path_glob": "*/resolve/*/config.json", "kind": "status|delay|ratelimit|drop|truncate",
        "times": 1 (<=0: until reset), "port": "hub|cdn|any" (default any), "method": "GET" (opt),
        "status": 500, "delay_ms": 100, "ratelimit_t": 1, "after_bytes": N (drop/truncate; default
        half the body)}
       path_glob is fnmatch'ed against the request path without query, both raw and
       percent-decoded. status: answers `status` with an error body. delay: sleeps then serves.
       ratelimit: 429 with `RateLimit: "api";r=0;t=N` and `RateLimit-Policy`. drop: sends headers
       and after_bytes of the body, then resets the connection (RST). truncate: promises the full
       Content-Length, sends after_bytes, then closes cleanly (FIN).
       -> {"ids": [...]}.  GET lists the faults with remaining counts; DELETE removes them all.
  GET  /_emulator/stats   {"requests": {"hub": n, "cdn": n}, "by_kind": {...}, "by_path":
       {"hub GET /path": n}, "status": {"hub 200": n}, "bytes_sent": {"hub": n, "cdn": n},
       "faults_fired": {...}, "cdn_authorization": [headers seen by the CDN port],
       "hub_authorization_count": n, "log": [last 2000 requests: port, method, path, status,
       range, auth (bool)]}
  POST /_emulator/reset   clears counters, faults, moved refs, added tokens and config overrides.
  POST /_emulator/refs    {"repo": "hfvfs-test/tiny-model", "repo_type": "model", "branch": "main",
       "sha": "<commit>"} (or "tag": ...) moves or creates a ref.  -> {"old": sha|null, "new": sha}
  POST /_emulator/config  {"cdn_ttl": seconds, "tree_page_size": n}
  POST /_emulator/tokens  {"token": "hf_...", "repos": ["*"], "name": "x"} adds one;
       {"revoke": "hf_..."} removes one.
  GET  /_emulator/info    repos, refs and commit shas (handy for tests).

FIXTURE FORMAT (written by make_hub_fixtures.py)
------------------------------------------------
  <root>/tokens.json
  <root>/repos/{models|datasets|spaces}/<ns>/<name>/repo.json   {"private", "gated", "_id", ...}
  <root>/repos/.../refs.json     {"branches": {"main": sha}, "tags": {...}, "prs": {"1": sha}}
  <root>/repos/.../commits/<sha>/commit.json  {"date": RFC3339, "parents": [...], "title": ...}
  <root>/repos/.../commits/<sha>/files/...    the commit's tree, as plain files
  Files named *.safetensors, *.bin, *.onnx, or larger than 10 MiB are served as LFS files.
  Hashes (git blob sha1, LFS sha256) are computed at start-up and cached in <root>/.hash-cache.json
  keyed by inode, size and mtime, so a 1 GiB file is hashed once (hardlinked copies share it).
"""

import argparse
import base64
import email.utils
import fnmatch
import hashlib
import hmac
import http.server
import json
import math
import mimetypes
import os
import secrets
import signal
import socket
import struct
import sys
import threading
import time
import urllib.parse

LFS_SUFFIXES = (".safetensors", ".bin", ".onnx")
LFS_MIN_SIZE = 10 * 1024 * 1024
REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
RESOLVE_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
API_ACTIONS = ("revision", "tree", "paths-info", "refs", "commits", "xet-read-token")
LOG_KEEP = 2000


# ----------------------------------------------------------------------------------------------
# Git object hashing (shared with make_hub_fixtures.py)


def git_blob_oid(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256_hex, size):
    return ("version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n" %
            (sha256_hex, size)).encode()


def git_tree_oid(children):
    """children: list of (name, is_dir, oid_hex). Returns the git tree object id."""

    def key(c):
        return c[0].encode() + (b"/" if c[1] else b"")

    body = b"".join((b"40000 " if is_dir else b"100644 ") + name.encode() + b"\0" +
                    bytes.fromhex(oid) for name, is_dir, oid in sorted(children, key=key))
    return hashlib.sha1(b"tree %d\0" % len(body) + body).hexdigest()


def git_commit_oid(tree, parents, epoch, title):
    text = "tree %s\n" % tree
    for p in parents:
        text += "parent %s\n" % p
    who = "hfvfs-test <test@hfvfs.invalid> %d +0000" % epoch
    text += "author %s\ncommitter %s\n\n%s\n" % (who, who, title)
    data = text.encode()
    return hashlib.sha1(b"commit %d\0" % len(data) + data).hexdigest()


def is_lfs_path(path, size):
    return path.endswith(LFS_SUFFIXES) or size > LFS_MIN_SIZE


def iso_date(epoch):
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(epoch))


def parse_iso(text):
    import datetime
    return int(datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


class HashCache:
    """sha1/sha256 of fixture files keyed by (dev, ino, size, mtime_ns); persisted as JSON."""

    def __init__(self, path):
        self.path = path
        self.dirty = False
        try:
            with open(path) as f:
                self.entries = json.load(f)
        except (OSError, ValueError):
            self.entries = {}

    def hashes(self, fpath, st, need_sha256):
        key = "%d:%d:%d:%d" % (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        got = self.entries.get(key)
        if got and (not need_sha256 or "sha256" in got) and (need_sha256 or "blob" in got):
            return got
        got = dict(got or {})
        h1 = hashlib.sha1(b"blob %d\0" % st.st_size)
        h256 = hashlib.sha256()
        with open(fpath, "rb") as f:
            while True:
                chunk = f.read(16 << 20)
                if not chunk:
                    break
                if need_sha256:
                    h256.update(chunk)
                else:
                    h1.update(chunk)
        if need_sha256:
            got["sha256"] = h256.hexdigest()
        else:
            got["blob"] = h1.hexdigest()
        self.entries[key] = got
        self.dirty = True
        return got

    def save(self):
        if not self.dirty:
            return
        try:
            tmp = self.path + ".tmp.%d" % os.getpid()
            with open(tmp, "w") as f:
                json.dump(self.entries, f)
            os.replace(tmp, self.path)
            self.dirty = False
        except OSError:
            pass  # A read-only fixtures folder only costs re-hashing next time.


# ----------------------------------------------------------------------------------------------
# The fixture model: repos, commits, files


class FileEntry:
    __slots__ = ("path", "local", "size", "oid", "lfs", "mtime")

    def __init__(self, path, local, size, oid, lfs, mtime):
        self.path = path
        self.local = local  # absolute path of the content on disk
        self.size = size  # real size
        self.oid = oid  # git blob oid (of the pointer file for LFS files)
        self.lfs = lfs  # None or {"oid": sha256, "size": n, "pointerSize": n}
        self.mtime = mtime


class Commit:
    """One commit: its files, directories (child lists in git order) and tree oids."""

    def __init__(self, sha, meta, files_dir, cache):
        self.sha = sha
        self.title = meta.get("title", "commit")
        self.date = parse_iso(meta["date"]) if "date" in meta else 0
        self.parents = list(meta.get("parents", []))
        self.files = {}  # path -> FileEntry
        self.dirs = {"": []}  # dir path -> [(name, is_dir)] sorted git-wise
        self.tree_oid = {}  # dir path -> oid
        self._scan(files_dir, cache)

    def _scan(self, files_dir, cache):
        for root, dnames, fnames in os.walk(files_dir):
            rel = os.path.relpath(root, files_dir)
            rel = "" if rel == "." else rel.replace(os.sep, "/")
            kids = self.dirs.setdefault(rel, [])
            for d in dnames:
                kids.append((d, True))
                self.dirs.setdefault((rel + "/" + d) if rel else d, [])
            for fn in fnames:
                local = os.path.join(root, fn)
                st = os.stat(local)
                path = (rel + "/" + fn) if rel else fn
                lfs = None
                if is_lfs_path(path, st.st_size):
                    sha256 = cache.hashes(local, st, True)["sha256"]
                    ptr = lfs_pointer(sha256, st.st_size)
                    lfs = {"oid": sha256, "size": st.st_size, "pointerSize": len(ptr)}
                    oid = git_blob_oid(ptr)
                else:
                    oid = cache.hashes(local, st, False)["blob"]
                self.files[path] = FileEntry(path, local, st.st_size, oid, lfs, st.st_mtime)
                kids.append((fn, False))
        # Tree oids bottom-up: deepest directories first.
        for d in sorted(self.dirs, key=lambda p: (p.count("/") + 1) if p else 0, reverse=True):
            kids = self.dirs[d]
            kids.sort(key=lambda c: c[0].encode() + (b"/" if c[1] else b""))
            self.tree_oid[d] = git_tree_oid([(n, isd, self.oid_of(self.join(d, n), isd))
                                             for n, isd in kids])

    @staticmethod
    def join(d, name):
        return (d + "/" + name) if d else name

    def oid_of(self, path, is_dir):
        return self.tree_oid[path] if is_dir else self.files[path].oid

    def kind(self, path):
        if path in self.files:
            return "file"
        if path in self.dirs:
            return "directory"
        return None


class Repo:

    def __init__(self, rtype, rid, folder, cache):
        self.type = rtype
        self.id = rid
        self.folder = folder
        with open(os.path.join(folder, "repo.json")) as f:
            self.meta = json.load(f)
        with open(os.path.join(folder, "refs.json")) as f:
            refs = json.load(f)
        self.branches = dict(refs.get("branches", {}))
        self.tags = dict(refs.get("tags", {}))
        self.prs = {str(k): v for k, v in refs.get("prs", {}).items()}
        self.default_branch = self.meta.get("default_branch", "main")
        self.orig_refs = (dict(self.branches), dict(self.tags), dict(self.prs))
        self.commits = {}
        cdir = os.path.join(folder, "commits")
        for sha in sorted(os.listdir(cdir)):
            with open(os.path.join(cdir, sha, "commit.json")) as f:
                meta = json.load(f)
            self.commits[sha] = Commit(sha, meta, os.path.join(cdir, sha, "files"), cache)
        self.created = min((c.date for c in self.commits.values()), default=0)
        self._last_commit_cache = {}

    @property
    def private(self):
        return bool(self.meta.get("private", False))

    @property
    def full_id(self):
        return "%s/%s" % (self.type, self.id)

    def resolve_rev(self, rev):
        """Returns the commit for a decoded revision string, or None."""
        if rev == "HEAD":
            rev = self.default_branch
        for table, prefix in ((self.branches, "refs/heads/"), (self.tags, "refs/tags/")):
            if rev.startswith(prefix) and rev[len(prefix):] in table:
                return self.commits.get(table[rev[len(prefix):]])
        if rev in self.branches:
            return self.commits.get(self.branches[rev])
        if rev in self.tags:
            return self.commits.get(self.tags[rev])
        if rev.startswith("refs/pr/") and rev[len("refs/pr/"):] in self.prs:
            return self.commits.get(self.prs[rev[len("refs/pr/"):]])
        low = rev.lower()
        if len(low) >= 7 and all(c in "0123456789abcdef" for c in low):
            hits = [s for s in self.commits if s.startswith(low)]
            if len(hits) == 1:
                return self.commits[hits[0]]
        return None

    def last_commit(self, commit, path, is_dir):
        """The newest commit on the first-parent chain from `commit` that changed `path`."""
        key = (commit.sha, path)
        got = self._last_commit_cache.get(key)
        if got:
            return got
        cur = commit
        want = cur.oid_of(path, is_dir)
        while cur.parents:
            parent = self.commits.get(cur.parents[0])
            if parent is None or parent.kind(path) != ("directory" if is_dir else "file"):
                break
            if parent.oid_of(path, is_dir) != want:
                break
            cur = parent
        self._last_commit_cache[key] = cur
        return cur


def load_repos(root, cache):
    repos = {}
    base = os.path.join(root, "repos")
    for plural, rtype in REPO_TYPES.items():
        tdir = os.path.join(base, plural)
        if not os.path.isdir(tdir):
            continue
        for ns in sorted(os.listdir(tdir)):
            nsdir = os.path.join(tdir, ns)
            if os.path.exists(os.path.join(nsdir, "repo.json")):  # namespace-less legacy id
                repos[(rtype, ns)] = Repo(rtype, ns, nsdir, cache)
                continue
            for name in sorted(os.listdir(nsdir)):
                folder = os.path.join(nsdir, name)
                if os.path.exists(os.path.join(folder, "repo.json")):
                    rid = "%s/%s" % (ns, name)
                    repos[(rtype, rid)] = Repo(rtype, rid, folder, cache)
    return repos


def safetensors_params(path):
    """{"parameters": {dtype: n}, "total": n} from a safetensors header, or None."""
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
    except (OSError, ValueError, struct.error):
        return None
    params = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        count = 1
        for d in t.get("shape", []):
            count *= d
        params[t["dtype"]] = params.get(t["dtype"], 0) + count
    return {"parameters": params, "total": sum(params.values())}


# ----------------------------------------------------------------------------------------------
# Shared mutable state


class Fault:

    def __init__(self, fid, spec):
        self.id = fid
        self.kind = spec.get("kind", "status")
        if self.kind not in ("status", "delay", "ratelimit", "drop", "truncate"):
            raise ValueError("unknown fault kind %r" % self.kind)
        self.glob = spec.get("path_glob", "*")
        self.port = spec.get("port", "any")
        if self.port not in ("hub", "cdn", "any"):
            raise ValueError("port must be hub, cdn or any")
        self.method = spec.get("method")
        self.times = int(spec.get("times", 1))
        self.status = int(spec.get("status", 500))
        self.delay_ms = int(spec.get("delay_ms", 100))
        self.ratelimit_t = int(spec.get("ratelimit_t", 1))
        self.after_bytes = spec.get("after_bytes")
        self.fired = 0

    def matches(self, port, method, raw_path, path):
        if self.port != "any" and self.port != port:
            return False
        if self.method and self.method.upper() != method:
            return False
        return fnmatch.fnmatchcase(raw_path, self.glob) or fnmatch.fnmatchcase(path, self.glob)

    def describe(self):
        return {"id": self.id, "kind": self.kind, "path_glob": self.glob, "port": self.port,
                "method": self.method, "times": self.times, "fired": self.fired,
                "status": self.status, "delay_ms": self.delay_ms,
                "ratelimit_t": self.ratelimit_t, "after_bytes": self.after_bytes}


class State:
    """Everything the request threads share. `lock` guards every attribute below it and the refs
    tables of every Repo (branches/tags/prs); it is a leaf lock (nothing else is taken under it)."""

    def __init__(self, args, repos, tokens):
        self.lock = threading.Lock()
        self.repos = repos
        self.base_tokens = tokens
        self.tokens = dict(tokens)
        self.default_cdn_ttl = args.cdn_ttl
        self.default_page = args.tree_page_size
        self.cdn_ttl = args.cdn_ttl
        self.page_size = args.tree_page_size
        self.secret = secrets.token_bytes(32)
        self.lfs_index = {}  # sha256 -> local path (immutable after start)
        for repo in repos.values():
            for c in repo.commits.values():
                for fe in c.files.values():
                    if fe.lfs:
                        self.lfs_index[fe.lfs["oid"]] = fe
        self.faults = []
        self.next_fault = 1
        self.in_flight = 0  # counted requests not yet recorded; stats waits for them
        self.idle = threading.Condition(self.lock)
        self.reset_stats()

    def reset_stats(self):
        self.stats = {"requests": {"hub": 0, "cdn": 0}, "by_kind": {}, "by_path": {},
                      "status": {}, "bytes_sent": {"hub": 0, "cdn": 0}, "faults_fired": {},
                      "cdn_authorization": [], "hub_authorization_count": 0, "log": []}

    def reset(self):
        with self.lock:
            # Requests already answered are recorded first, so they do not leak into new stats.
            self.idle.wait_for(lambda: self.in_flight == 0, timeout=2.0)
            self.reset_stats()
            self.faults = []
            self.tokens = dict(self.base_tokens)
            self.cdn_ttl = self.default_cdn_ttl
            self.page_size = self.default_page
            for repo in self.repos.values():
                b, t, p = repo.orig_refs
                repo.branches, repo.tags, repo.prs = dict(b), dict(t), dict(p)

    def take_fault(self, port, method, raw_path, path):
        with self.lock:
            for f in self.faults:
                if f.matches(port, method, raw_path, path):
                    f.fired += 1
                    if f.times > 0 and f.fired >= f.times:
                        self.faults.remove(f)
                    key = "%s %s" % (f.kind, f.glob)
                    self.stats["faults_fired"][key] = self.stats["faults_fired"].get(key, 0) + 1
                    return f
        return None

    def begin(self):
        with self.lock:
            self.in_flight += 1

    def snapshot(self):
        """The stats, once the requests already received have been recorded (at most 2 s)."""
        with self.lock:
            self.idle.wait_for(lambda: self.in_flight == 0, timeout=2.0)
            return json.loads(json.dumps(self.stats))

    def record(self, port, method, raw_path, kind, status, sent, auth, rng):
        with self.lock:
            self.in_flight -= 1
            self.idle.notify_all()
            s = self.stats
            s["requests"][port] += 1
            k = "%s %s" % (port, kind)
            s["by_kind"][k] = s["by_kind"].get(k, 0) + 1
            k = "%s %s %s" % (port, method, raw_path)
            s["by_path"][k] = s["by_path"].get(k, 0) + 1
            k = "%s %d" % (port, status)
            s["status"][k] = s["status"].get(k, 0) + 1
            s["bytes_sent"][port] += sent
            if auth is not None:
                if port == "cdn":
                    s["cdn_authorization"].append(auth)
                else:
                    s["hub_authorization_count"] += 1
            s["log"].append({"port": port, "method": method, "path": raw_path, "kind": kind,
                             "status": status, "range": rng, "auth": auth is not None,
                             "bytes": sent, "t": time.time()})
            if len(s["log"]) > LOG_KEEP:
                del s["log"][:len(s["log"]) - LOG_KEEP]

    def sign(self, path, expires):
        return hmac.new(self.secret, ("%s\n%d" % (path, expires)).encode(),
                        hashlib.sha256).hexdigest()


def load_tokens(path):
    tokens = {}
    if not path or not os.path.exists(path):
        return tokens
    with open(path) as f:
        text = f.read()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        for tok, info in data.items():
            tokens[tok] = {"name": info.get("name", "user"),
                           "repos": list(info.get("repos", ["*"]))}
    else:
        for line in text.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                tokens[line] = {"name": "user", "repos": ["*"]}
    return tokens


# ----------------------------------------------------------------------------------------------
# HTTP plumbing


class HttpError(Exception):

    def __init__(self, status, message, code=None, headers=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or []


class Body:
    """A response body: bytes, or a byte range of a file sent with sendfile."""

    def __init__(self, data=b"", path=None, offset=0, length=None):
        self.data = data
        self.path = path
        self.offset = offset
        self.length = len(data) if path is None else length


REASONS = {200: "OK", 206: "Partial Content", 302: "Found", 304: "Not Modified",
           400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 416: "Range Not Satisfiable", 429: "Too Many Requests",
           500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
           504: "Gateway Timeout"}


def classify(port_name, path):
    """The request kind used in the stats ("tree", "resolve", "cdn", ...)."""
    if port_name == "cdn":
        return "cdn"
    if path.startswith("/_emulator/"):
        return "control"
    segs = path.split("/")[1:]
    if segs[:1] == ["api"]:
        if segs[1:] == ["whoami-v2"]:
            return "whoami"
        for s in segs[3:6]:
            if s in ("tree", "paths-info", "refs", "revision"):
                return {"paths-info": "paths_info", "revision": "repo_info"}.get(s, s)
        return "repo_info" if segs[1:2] and segs[1] in REPO_TYPES else "other"
    for s in segs[1:4]:
        if s in ("resolve", "raw"):
            return s
    return "other"


def ascii_name(name):
    """The plain `filename=` of Content-Disposition: ASCII, no quotes (filename* has the rest)."""
    return "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name)


def parse_range(header, size):
    """Returns None (serve all), (start, end_inclusive), or "unsatisfiable"."""
    if not header:
        return None
    header = header.strip()
    if not header.startswith("bytes=") or "," in header:
        return None  # unknown unit or multi-range: ignoring Range is allowed (RFC 9110 14.2)
    spec = header[6:].strip()
    if "-" not in spec:
        return None
    a, b = spec.split("-", 1)
    a, b = a.strip(), b.strip()
    try:
        if a == "":
            if b == "":
                return None
            n = int(b)
            if n <= 0 or size == 0:
                return "unsatisfiable"
            return (max(0, size - n), size - 1)
        start = int(a)
        end = int(b) if b else size - 1
    except ValueError:
        return None
    if start < 0 or (b and end < start):
        return None
    if start >= size:
        return "unsatisfiable"
    return (start, min(end, size - 1))


def http_date(epoch):
    return email.utils.formatdate(epoch, usegmt=True)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hfvfs-hub-emulator"
    sys_version = ""
    port_name = "hub"  # overridden per server
    state = None  # set per server class
    verbose = False

    def setup(self):
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def log_message(self, fmt, *args):
        if self.verbose:
            sys.stderr.write("[%s] %s\n" % (self.port_name, fmt % args))

    def do_GET(self):
        self.dispatch("GET")

    def do_HEAD(self):
        self.dispatch("HEAD")

    def do_POST(self):
        self.dispatch("POST")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def do_PUT(self):
        self.dispatch("PUT")

    # -- request helpers ----------------------------------------------------------------------

    def read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            body = b""
            while True:
                n = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return body
                body += self.rfile.read(n)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def base_url(self):
        host = self.headers.get("Host") or "127.0.0.1:%d" % self.server.server_address[1]
        return "http://" + host

    def dispatch(self, method):
        self.kind = "other"
        self.fault = None
        self.sent = 0
        self.status_sent = 0
        raw = self.path
        if raw.startswith("http://") or raw.startswith("https://"):
            raw = "/" + raw.split("/", 3)[-1]  # absolute-form request target
        raw_path, _, query = raw.partition("?")
        self.raw_path = raw_path
        self.query = urllib.parse.parse_qs(query, keep_blank_values=True)
        self.query_string = query
        body = self.read_body() if method in ("POST", "PUT", "DELETE") else b""
        decoded = urllib.parse.unquote(raw_path)
        self.kind = classify(self.port_name, decoded)
        auth = self.headers.get("Authorization")
        fault = None
        if self.kind != "control":
            self.state.begin()
        try:
            if self.kind == "control":
                return self.send_json(200, control(self.state, method, raw_path, body, self))
            fault = self.state.take_fault(self.port_name, method, raw_path, decoded)
            if fault and fault.kind == "delay":
                time.sleep(fault.delay_ms / 1000.0)
                fault = None
            if fault and fault.kind == "status":
                raise HttpError(fault.status, "Injected fault: status %d" % fault.status)
            if fault and fault.kind == "ratelimit":
                raise HttpError(429, "You have exceeded our hourly quotas for action 'api'. "
                                "Retry after %d seconds." % fault.ratelimit_t, headers=[
                                    ("RateLimit", '"api";r=0;t=%d' % fault.ratelimit_t),
                                    ("RateLimit-Policy", '"fixed window";"api";q=500;w=300')])
            self.fault = fault
            if self.port_name == "cdn":
                self.handle_cdn(method)
            else:
                self.handle_hub(method, body)
        except HttpError as e:
            self.send_error_json(e)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # a bug in the emulator: answer 500 and say so on stderr
            import traceback
            traceback.print_exc()
            try:
                self.send_error_json(HttpError(500, "emulator bug: %r" % e))
            except OSError:
                self.close_connection = True
        finally:
            if self.kind != "control":
                self.state.record(self.port_name, method, raw_path, self.kind, self.status_sent,
                                  self.sent, auth, self.headers.get("Range"))

    # -- responses -----------------------------------------------------------------------------

    def send(self, status, headers, body=None, head_only=False):
        body = body or Body()
        fault = getattr(self, "fault", None)
        self.fault = None
        lines = ["HTTP/1.1 %d %s" % (status, REASONS.get(status, "Status"))]
        lines.append("Date: " + http_date(time.time()))
        lines.append("Server: " + self.server_version)
        lines += ["%s: %s" % kv for kv in headers]
        if status != 304:  # a 304 has no body, and 0 would not be the representation's length
            lines.append("Content-Length: %d" % body.length)
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        self.status_sent = status
        limit = 0 if head_only else body.length
        cut = None
        if fault and fault.kind in ("drop", "truncate"):
            cut = fault.after_bytes if fault.after_bytes is not None else body.length // 2
            cut = max(0, min(int(cut), limit))
            limit = cut
        sock = self.connection
        if body.path is None or limit == 0:
            sock.sendall(head + body.data[:limit])
            self.sent += limit
        else:
            sock.sendall(head)
            fd = os.open(body.path, os.O_RDONLY)
            try:
                off, left = body.offset, limit
                while left > 0:
                    n = os.sendfile(sock.fileno(), fd, off, min(left, 1 << 30))
                    if n == 0:
                        break
                    off += n
                    left -= n
                    self.sent += n
            finally:
                os.close(fd)
        if cut is not None:
            self.close_connection = True
            if fault.kind == "drop":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
            else:
                sock.shutdown(socket.SHUT_WR)

    def send_json(self, status, obj, headers=(), head_only=False):
        data = json.dumps(obj, separators=(",", ":")).encode()
        self.send(status, [("Content-Type", "application/json; charset=utf-8")] + list(headers),
                  Body(data), head_only=self.command == "HEAD" or head_only)

    def send_error_json(self, e):
        if self.port_name == "cdn":
            data = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>%s'
                    '</Message></Error>' % ("AccessDenied" if e.status == 403 else "Error",
                                            e.message)).encode()
            return self.send(e.status, [("Content-Type", "application/xml")] + e.headers,
                             Body(data), head_only=self.command == "HEAD")
        headers = list(e.headers) + [("X-Error-Message", e.message)]
        if e.code:
            headers.append(("X-Error-Code", e.code))
        self.send_json(e.status, {"error": e.message}, headers)

    # -- the Hub -------------------------------------------------------------------------------

    def auth_token(self):
        """None when no Authorization header; raises 401 for an unknown token."""
        h = self.headers.get("Authorization")
        if not h:
            return None
        scheme, _, tok = h.partition(" ")
        tok = tok.strip()
        with self.state.lock:
            info = self.state.tokens.get(tok) if scheme.lower() == "bearer" else None
        if info is None:
            raise HttpError(401, "Invalid credentials in Authorization header")
        return (tok, info)

    def get_repo(self, rtype, rid):
        token = self.auth_token()
        repo = self.state.repos.get((rtype, rid))
        allowed = repo is not None
        if repo is not None and repo.private:
            repos = token[1]["repos"] if token else []
            allowed = "*" in repos or repo.full_id in repos or repo.id in repos
        if not allowed:
            if token is None:
                raise HttpError(401, "Repository not found. Invalid username or password.",
                                "RepoNotFound")
            raise HttpError(404, "Repository not found", "RepoNotFound")
        return repo

    def check_gated(self, repo):
        """Gated repos list and describe freely but serve file contents only to granted tokens."""
        if not repo.meta.get("gated"):
            return
        token = self.auth_token()
        repos = token[1]["repos"] if token else []
        if "*" in repos or repo.full_id in repos or repo.id in repos:
            return
        what = "%s %s" % (repo.type, repo.id)
        if token is None:
            raise HttpError(401, "Access to %s is restricted. You must have access to it and be "
                            "authenticated to access it. Please log in." % what, "GatedRepo")
        raise HttpError(403, "Access to %s is restricted and you are not in the authorized list. "
                        "Visit %s/%s to ask for access." % (what, self.base_url(), repo.id),
                        "GatedRepo")

    def get_commit(self, repo, rev):
        with self.state.lock:
            commit = repo.resolve_rev(rev)
        if commit is None:
            raise HttpError(404, "Invalid rev id: %s" % rev, "RevisionNotFound")
        return commit

    def handle_hub(self, method, body):
        segs = self.raw_path.split("/")[1:]
        dec = [urllib.parse.unquote(s) for s in segs]
        if dec[:1] == ["api"]:
            return self.handle_api(method, segs, dec, body)
        # resolve / raw: /[datasets|spaces/]{repo}/(resolve|raw)/{rev}/{path}
        plural = "models"
        rest_dec = dec
        if dec and dec[0] in ("datasets", "spaces"):
            plural, rest_dec = dec[0], dec[1:]
        for i in (2, 1):
            if len(rest_dec) > i + 1 and rest_dec[i] in ("resolve", "raw"):
                if method not in ("GET", "HEAD"):
                    raise HttpError(405, "Method not allowed")
                return self.handle_resolve(method, REPO_TYPES[plural], "/".join(rest_dec[:i]),
                                           rest_dec[i], rest_dec[i + 1], rest_dec[i + 2:])
        raise HttpError(404, "Sorry, we can't find the page you are looking for.")

    def handle_api(self, method, segs, dec, body):
        if dec[1:] == ["whoami-v2"]:
            self.kind = "whoami"
            tok = self.auth_token()
            if tok is None:
                raise HttpError(401, "Invalid username or password.")
            return self.send_json(200, {"type": "user", "name": tok[1]["name"],
                                        "auth": {"type": "access_token",
                                                 "accessToken": {"role": "read"}}})
        if len(dec) < 3 or dec[1] not in REPO_TYPES:
            raise HttpError(404, "Sorry, we can't find the page you are looking for.")
        rtype = REPO_TYPES[dec[1]]
        rest = dec[2:]
        if len(rest) >= 2 and (len(rest) == 2 or rest[2] in API_ACTIONS):
            rid, tail = rest[0] + "/" + rest[1], rest[2:]
        elif len(rest) == 1 or rest[1] in API_ACTIONS:
            rid, tail = rest[0], rest[1:]
        else:
            raise HttpError(404, "Sorry, we can't find the page you are looking for.")
        if not tail:
            self.kind = "repo_info"
            repo = self.get_repo(rtype, rid)
            return self.send_json(200, self.repo_info(repo, self.get_commit(repo, "HEAD")))
        action = tail[0]
        if action == "revision" and len(tail) == 2:
            self.kind = "repo_info"
            repo = self.get_repo(rtype, rid)
            return self.send_json(200, self.repo_info(repo, self.get_commit(repo, tail[1])))
        if action == "tree" and len(tail) >= 2:
            self.kind = "tree"
            repo = self.get_repo(rtype, rid)
            return self.handle_tree(repo, self.get_commit(repo, tail[1]), "/".join(tail[2:]))
        if action == "paths-info" and len(tail) == 2:
            self.kind = "paths_info"
            if method != "POST":
                raise HttpError(405, "Method not allowed")
            repo = self.get_repo(rtype, rid)
            return self.handle_paths_info(repo, self.get_commit(repo, tail[1]), body)
        if action == "refs" and len(tail) == 1:
            self.kind = "refs"
            return self.handle_refs(self.get_repo(rtype, rid))
        raise HttpError(404, "Sorry, we can't find the page you are looking for.")

    def repo_info(self, repo, commit):
        ns = repo.id.split("/")[0] if "/" in repo.id else None
        meta = repo.meta
        info = {"_id": meta.get("_id", hashlib.sha1(repo.full_id.encode()).hexdigest()[:24]),
                "id": repo.id, "author": ns, "sha": commit.sha,
                "lastModified": iso_date(commit.date), "private": repo.private,
                "gated": meta.get("gated", False), "disabled": False,
                "downloads": meta.get("downloads", 0), "likes": meta.get("likes", 0),
                "tags": meta.get("tags", []), "createdAt": iso_date(repo.created),
                "cardData": meta.get("cardData", {}),
                "usedStorage": sum(f.size for f in commit.files.values())}
        blobs = self.query.get("blobs", ["false"])[0] in ("true", "1", "True")
        sibs = []
        for p in sorted(commit.files):
            fe = commit.files[p]
            s = {"rfilename": p}
            if blobs:
                s["blobId"] = fe.oid
                s["size"] = fe.size
                if fe.lfs:
                    s["lfs"] = {"sha256": fe.lfs["oid"], "size": fe.size,
                                "pointerSize": fe.lfs["pointerSize"]}
            sibs.append(s)
        info["siblings"] = sibs
        if repo.type == "model":
            info["modelId"] = repo.id
            info["pipeline_tag"] = meta.get("pipeline_tag")
            info["library_name"] = meta.get("library_name")
            info["config"] = meta.get("config", {})
            sts = [safetensors_params(fe.local) for p, fe in commit.files.items()
                   if p.endswith(".safetensors")]
            sts = [s for s in sts if s]
            if sts:
                params = {}
                for s in sts:
                    for k, v in s["parameters"].items():
                        params[k] = params.get(k, 0) + v
                info["safetensors"] = {"parameters": params, "total": sum(params.values())}
        elif repo.type == "space":
            info["sdk"] = meta.get("sdk", "static")
            info["runtime"] = {"stage": "RUNNING", "hardware": {"current": "cpu-basic"}}
            info["subdomain"] = repo.id.replace("/", "-").lower()
        wanted = self.query.get("expand", []) + self.query.get("expand[]", [])
        if wanted:
            info = {k: v for k, v in info.items() if k in ("_id", "id") or k in wanted}
        return info

    def entry_json(self, repo, commit, path, expand):
        if path in commit.files:
            fe = commit.files[path]
            e = {"type": "file", "oid": fe.oid,
                 "size": fe.lfs["pointerSize"] if fe.lfs else fe.size, "path": path}
            if fe.lfs:
                e["lfs"] = dict(fe.lfs)
            is_dir = False
        else:
            e = {"type": "directory", "oid": commit.tree_oid[path], "size": 0, "path": path}
            is_dir = True
        if expand:
            lc = repo.last_commit(commit, path, is_dir)
            e["lastCommit"] = {"id": lc.sha, "title": lc.title, "date": iso_date(lc.date)}
            if not is_dir:
                e["securityFileStatus"] = {"status": "safe"}
        return e

    def handle_tree(self, repo, commit, path):
        path = path.strip("/")
        kind = commit.kind(path)
        if kind is None:
            raise HttpError(404, "Entry not found", "EntryNotFound")
        if kind == "file":
            raise HttpError(404, "%s is not a directory" % path, "EntryNotFound")
        truthy = ("true", "1", "True")
        recursive = self.query.get("recursive", ["false"])[0] in truthy
        expand = self.query.get("expand", ["false"])[0] in truthy
        paths = []

        def walk(d):
            for name, is_dir in commit.dirs[d]:
                p = commit.join(d, name)
                paths.append(p)
                if recursive and is_dir:
                    walk(p)

        walk(path)
        with self.state.lock:
            page = self.state.page_size
        try:
            limit = int(self.query.get("limit", [page])[0])
        except ValueError:
            raise HttpError(400, "Invalid limit")
        limit = max(1, min(limit, page))
        offset = 0
        if "cursor" in self.query:
            try:
                offset = int(base64.urlsafe_b64decode(self.query["cursor"][0] + "==").decode())
            except (ValueError, UnicodeDecodeError):
                raise HttpError(400, "Invalid cursor")
        chunk = paths[offset:offset + limit]
        headers = []
        if offset + limit < len(paths):
            cur = base64.urlsafe_b64encode(str(offset + limit).encode()).decode().rstrip("=")
            q = [(k, v) for k, v in urllib.parse.parse_qsl(self.query_string,
                                                           keep_blank_values=True)
                 if k != "cursor"] + [("cursor", cur)]
            url = self.base_url() + self.raw_path + "?" + urllib.parse.urlencode(q)
            headers.append(("Link", '<%s>; rel="next"' % url))
        self.send_json(200, [self.entry_json(repo, commit, p, expand) for p in chunk], headers)

    def handle_paths_info(self, repo, commit, body):
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        if ctype == "application/json":
            try:
                req = json.loads(body or b"{}")
            except ValueError:
                raise HttpError(400, "Invalid JSON body")
            paths, expand = req.get("paths", []), bool(req.get("expand"))
        else:  # form-encoded, as huggingface_hub sends it: paths=a&paths=b&expand=True
            form = urllib.parse.parse_qs(body.decode(), keep_blank_values=True)
            paths = form.get("paths", [])
            expand = form.get("expand", ["false"])[0].lower() in ("true", "1")
        if isinstance(paths, str):
            paths = [paths]
        if not isinstance(paths, list):
            raise HttpError(400, "paths must be a list")
        out = []
        for p in paths:
            p = str(p).strip("/")
            if p and commit.kind(p):
                out.append(self.entry_json(repo, commit, p, expand))
        self.send_json(200, out)

    def handle_refs(self, repo):
        with self.state.lock:
            branches, tags, prs = dict(repo.branches), dict(repo.tags), dict(repo.prs)
        out = {"branches": [{"name": n, "ref": "refs/heads/" + n, "targetCommit": s}
                            for n, s in sorted(branches.items())],
               "converts": [],
               "tags": [{"name": n, "ref": "refs/tags/" + n, "targetCommit": s}
                        for n, s in sorted(tags.items())]}
        if self.query.get("include_prs", ["0"])[0] in ("1", "true", "True"):
            out["pullRequests"] = [{"name": "refs/pr/" + n, "ref": "refs/pr/" + n,
                                    "targetCommit": s} for n, s in sorted(prs.items())]
        self.send_json(200, out)

    def handle_resolve(self, method, rtype, rid, action, rev, path_parts):
        self.kind = action
        repo = self.get_repo(rtype, rid)
        commit = self.get_commit(repo, rev)
        self.check_gated(repo)
        path = "/".join(path_parts)
        fe = commit.files.get(path)
        if fe is None:
            raise HttpError(404, "Entry not found", "EntryNotFound")
        head_only = method == "HEAD"
        name = path.rsplit("/", 1)[-1]
        quoted_name = urllib.parse.quote(name)
        common = [("X-Repo-Commit", commit.sha), ("Access-Control-Allow-Origin", "*"),
                  ("Access-Control-Expose-Headers",
                   "X-Repo-Commit,X-Linked-Size,X-Linked-Etag,X-Error-Code,X-Error-Message,"
                   "ETag,Link,Accept-Ranges,Content-Range"),
                  ("Vary", "Origin, Accept"),
                  ("X-Request-Id", "Root=1-" + secrets.token_hex(12))]
        lc = repo.last_commit(commit, path, False)
        if fe.lfs and action == "resolve":
            sha = fe.lfs["oid"]
            with self.state.lock:
                ttl = self.state.cdn_ttl
            expires = math.ceil(time.time()) + ttl  # valid for at least ttl seconds
            cdn_path = "/lfs/" + sha
            disp = "inline; filename*=UTF-8''%s; filename=\"%s\";" % (quoted_name,
                                                                      ascii_name(name))
            q = urllib.parse.urlencode([("response-content-disposition", disp),
                                        ("Expires", str(expires)),
                                        ("Signature", self.state.sign(cdn_path, expires)),
                                        ("Key-Pair-Id", "KEMULATOR")])
            location = "http://127.0.0.1:%d%s?%s" % (self.server.cdn_port, cdn_path, q)
            data = ("Found. Redirecting to %s" % location).encode()
            self.send(302, common + [("Content-Type", "text/plain; charset=utf-8"),
                                     ("Location", location), ("ETag", '"%s"' % fe.oid),
                                     ("X-Linked-Size", str(fe.size)),
                                     ("X-Linked-Etag", '"%s"' % sha)], Body(data), head_only)
            return
        if fe.lfs:  # raw of an LFS file: the pointer
            data = lfs_pointer(fe.lfs["oid"], fe.size)
            return self.send_range(common + [("ETag", '"%s"' % fe.oid)], Body(data), len(data),
                                   "text/plain; charset=utf-8", head_only, lc.date)
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype == "application/json":
            ctype += "; charset=utf-8"
        headers = common + [("ETag", '"%s"' % fe.oid),
                            ("Content-Disposition",
                             "inline; filename*=UTF-8''%s; filename=\"%s\";" %
                             (quoted_name, ascii_name(name)))]
        self.send_range(headers, Body(path=fe.local, length=fe.size), fe.size, ctype, head_only,
                        lc.date)

    def send_range(self, headers, body, size, ctype, head_only, mtime):
        headers = headers + [("Accept-Ranges", "bytes"), ("Content-Type", ctype),
                             ("Last-Modified", http_date(mtime))]
        etag = next((v for k, v in headers if k == "ETag"), None)
        inm = self.headers.get("If-None-Match")
        if inm and etag and etag in [t.strip() for t in inm.split(",")] + ["*"]:
            return self.send(304, headers, None, True)
        rng = parse_range(self.headers.get("Range"), size)
        if rng == "unsatisfiable":
            return self.send(416, headers + [("Content-Range", "bytes */%d" % size)], None, True)
        if rng is None:
            return self.send(200, headers, body, head_only)
        start, end = rng
        if body.path is None:
            part = Body(body.data[start:end + 1])
        else:
            part = Body(path=body.path, offset=body.offset + start, length=end - start + 1)
        self.send(206, headers + [("Content-Range", "bytes %d-%d/%d" % (start, end, size))], part,
                  head_only)

    # -- the CDN -------------------------------------------------------------------------------

    def handle_cdn(self, method):
        self.kind = "cdn"
        if method not in ("GET", "HEAD"):
            raise HttpError(405, "Method not allowed")
        path = self.raw_path
        if not path.startswith("/lfs/"):
            raise HttpError(404, "Not found")
        sha = path[len("/lfs/"):]
        try:
            expires = int(self.query.get("Expires", ["0"])[0])
        except ValueError:
            expires = 0
        sig = self.query.get("Signature", [""])[0]
        if not hmac.compare_digest(sig, self.state.sign(path, expires)):
            raise HttpError(403, "Invalid signature")
        if time.time() > expires:
            raise HttpError(403, "Request has expired")
        fe = self.state.lfs_index.get(sha)
        if fe is None:
            raise HttpError(404, "Not found")
        headers = [("ETag", '"%s"' % sha), ("X-Cache", "Miss from cloudfront"),
                   ("Cache-Control", "public, max-age=604800, immutable")]
        disp = self.query.get("response-content-disposition")
        if disp:
            headers.append(("Content-Disposition", disp[0]))
        self.send_range(headers, Body(path=fe.local, length=fe.size), fe.size,
                        "application/octet-stream", method == "HEAD", fe.mtime)


# ----------------------------------------------------------------------------------------------
# Control API


def control(state, method, path, body, handler):
    try:
        req = json.loads(body) if body.strip() else {}
    except ValueError:
        raise HttpError(400, "control API: body is not JSON")
    if path == "/_emulator/faults":
        if method == "GET":
            with state.lock:
                return [f.describe() for f in state.faults]
        if method == "DELETE":
            with state.lock:
                state.faults = []
            return {"ok": True}
        specs = req if isinstance(req, list) else [req]
        ids = []
        with state.lock:
            for spec in specs:
                try:
                    f = Fault(state.next_fault, spec)
                except (ValueError, TypeError) as e:
                    raise HttpError(400, "control API: bad fault: %s" % e)
                state.next_fault += 1
                state.faults.append(f)
                ids.append(f.id)
        return {"ids": ids}
    if path == "/_emulator/stats":
        return state.snapshot()
    if path == "/_emulator/reset":
        state.reset()
        return {"ok": True}
    if path == "/_emulator/config":
        with state.lock:
            if "cdn_ttl" in req:
                state.cdn_ttl = int(req["cdn_ttl"])
            if "tree_page_size" in req:
                state.page_size = max(1, int(req["tree_page_size"]))
            return {"cdn_ttl": state.cdn_ttl, "tree_page_size": state.page_size}
    if path == "/_emulator/tokens":
        with state.lock:
            if "revoke" in req:
                state.tokens.pop(req["revoke"], None)
            elif "token" in req:
                if not str(req["token"]).startswith("hf_"):
                    raise HttpError(400, "control API: tokens start with hf_")
                state.tokens[req["token"]] = {"name": req.get("name", "user"),
                                              "repos": list(req.get("repos", ["*"]))}
            return {"count": len(state.tokens)}
    if path == "/_emulator/refs":
        rtype = req.get("repo_type", "model")
        repo = state.repos.get((rtype, req.get("repo", "")))
        if repo is None:
            raise HttpError(404, "control API: no repo %s %s" % (rtype, req.get("repo")))
        sha = req.get("sha", "")
        if sha not in repo.commits:
            raise HttpError(400, "control API: %s has no commit %s" % (repo.id, sha))
        with state.lock:
            if "tag" in req:
                table, name = repo.tags, req["tag"]
            elif "pr" in req:
                table, name = repo.prs, str(req["pr"])
            else:
                table, name = repo.branches, req.get("branch", repo.default_branch)
            old = table.get(name)
            table[name] = sha
        return {"old": old, "new": sha}
    if path == "/_emulator/info":
        out = []
        with state.lock:
            for repo in state.repos.values():
                out.append({"type": repo.type, "id": repo.id, "private": repo.private,
                            "branches": dict(repo.branches), "tags": dict(repo.tags),
                            "prs": dict(repo.prs),
                            "commits": {s: {"date": iso_date(c.date), "title": c.title,
                                            "parents": c.parents, "files": len(c.files)}
                                        for s, c in repo.commits.items()}})
        return {"repos": out, "cdn_port": handler.server.cdn_port}
    raise HttpError(404, "control API: unknown endpoint %s" % path)


# ----------------------------------------------------------------------------------------------
# Start-up


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def make_server(host, port, port_name, state, verbose):
    cls = type("Handler_" + port_name, (Handler,),
               {"port_name": port_name, "state": state, "verbose": verbose})
    return Server((host, port), cls)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Hugging Face Hub emulator for tests")
    ap.add_argument("--fixtures", required=True, help="folder written by make_hub_fixtures.py")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--cdn-port", type=int, default=0)
    ap.add_argument("--ready-file", help="also write the ready JSON line to this file")
    ap.add_argument("--tokens-file", help="default: <fixtures>/tokens.json")
    ap.add_argument("--cdn-ttl", type=int, default=3600, help="signed CDN URL lifetime, seconds")
    ap.add_argument("--tree-page-size", type=int, default=1000)
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)

    root = os.path.abspath(args.fixtures)
    if not os.path.isdir(os.path.join(root, "repos")):
        sys.exit("hub_emulator: %s has no repos/ folder; run make_hub_fixtures.py" % root)
    cache = HashCache(os.path.join(root, ".hash-cache.json"))
    repos = load_repos(root, cache)
    cache.save()
    tokens = load_tokens(args.tokens_file or os.path.join(root, "tokens.json"))
    state = State(args, repos, tokens)

    hub = make_server(args.host, args.port, "hub", state, args.verbose)
    cdn = make_server(args.host, args.cdn_port, "cdn", state, args.verbose)
    hub.cdn_port = cdn.cdn_port = cdn.server_address[1]
    for srv in (hub, cdn):
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2},
                         daemon=True).start()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    line = json.dumps({"port": hub.server_address[1], "cdn_port": cdn.server_address[1],
                       "pid": os.getpid()})
    if args.ready_file:
        tmp = args.ready_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(line + "\n")
        os.replace(tmp, args.ready_file)
    sys.stdout.write(line + "\n")
    sys.stdout.flush()

    while not stop.wait(0.1):
        pass
    hub.shutdown()
    cdn.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
