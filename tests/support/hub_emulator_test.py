#!/usr/bin/python3
"""Tests of the Hub emulator, with http.client only.

    cd tests/support && /usr/bin/python3 -m unittest hub_emulator_test -v

Fixtures: $HFVFS_HUB_FIXTURES if set (a folder made by make_hub_fixtures.py), else generated
into a temporary folder for this run.
"""

import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import hub_emulator as hub  # noqa: E402

PY = "/usr/bin/python3"
TINY = "hfvfs-test/tiny-model"
PRIVATE = "hfvfs-test/private-model"
MANY = "hfvfs-test/many-files"


class EmulatorProcess:
    """Starts hub_emulator.py on free ports and stops it by pid (the pattern tests should use)."""

    def __init__(self, fixtures, *extra):
        self.proc = subprocess.Popen([PY, os.path.join(HERE, "hub_emulator.py"), "--fixtures",
                                      fixtures] + list(extra), stdout=subprocess.PIPE)
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the emulator exited before printing its ready line")
        self.ready = json.loads(line)
        self.port = self.ready["port"]
        self.cdn_port = self.ready["cdn_port"]

    def stop(self):
        os.kill(self.ready["pid"], signal.SIGTERM)
        rc = self.proc.wait(timeout=10)
        self.proc.stdout.close()
        return rc


FIXTURES = None
TMP = None
EMU = None
MANIFEST = None


def setUpModule():
    global FIXTURES, TMP, EMU, MANIFEST
    FIXTURES = os.environ.get("HFVFS_HUB_FIXTURES")
    if not FIXTURES:
        TMP = tempfile.mkdtemp(prefix="hub-fixtures-")
        FIXTURES = os.path.join(TMP, "fx")
    subprocess.run([PY, os.path.join(HERE, "make_hub_fixtures.py"), "--out", FIXTURES],
                   check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(FIXTURES, "manifest.json")) as f:
        MANIFEST = json.load(f)
    EMU = EmulatorProcess(FIXTURES)


def tearDownModule():
    rc = EMU.stop()
    if TMP:
        shutil.rmtree(TMP)
    assert rc == 0, "the emulator should exit 0 on SIGTERM, got %r" % rc


def q(s):
    return urllib.parse.quote(s, safe="")


def qpath(p):
    return "/".join(q(s) for s in p.split("/"))


class Resp:

    def __init__(self, r, body):
        self.status = r.status
        self.headers = r.headers
        self.body = body

    def header(self, name):
        return self.headers.get(name)

    def json(self):
        return json.loads(self.body)


def request(method, path, port=None, headers=None, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port or EMU.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return Resp(r, r.read())
    finally:
        conn.close()


def control(path, obj=None, method="POST"):
    r = request(method, "/_emulator/" + path, body=json.dumps(obj) if obj is not None else None,
                headers={"Content-Type": "application/json"})
    assert r.status == 200, (r.status, r.body)
    return r.json()


def files_dir(repo_key, commit_key):
    return MANIFEST["repos"][repo_key]["files_dir"][commit_key]


def disk_tree(root):
    files, dirs = {}, set()
    for d, dn, fn in os.walk(root):
        rel = os.path.relpath(d, root).replace(os.sep, "/")
        rel = "" if rel == "." else rel + "/"
        for x in dn:
            dirs.add(rel + x)
        for x in fn:
            files[rel + x] = os.path.join(d, x)
    return files, dirs


def read(path):
    with open(path, "rb") as f:
        return f.read()


def auth(token):
    return {"Authorization": "Bearer " + token}


class EmulatorTest(unittest.TestCase):

    def setUp(self):
        control("reset")
        self.main_sha = MANIFEST["repos"]["model/" + TINY]["commits"]["main"]
        self.v1_sha = MANIFEST["repos"]["model/" + TINY]["commits"]["v1"]
        self.pr_sha = MANIFEST["repos"]["model/" + TINY]["commits"]["pr1"]
        self.reader = MANIFEST["tokens"]["reader"]
        self.noaccess = MANIFEST["tokens"]["no_access"]

    def assertError(self, r, status, code=None):
        self.assertEqual(r.status, status, r.body)
        self.assertEqual(r.header("X-Error-Code"), code)
        self.assertTrue(r.header("X-Error-Message"))
        self.assertEqual(r.json()["error"], r.header("X-Error-Message"))


class StartupTest(EmulatorTest):

    def test_ready_line(self):
        self.assertEqual(EMU.ready["pid"], EMU.proc.pid)
        self.assertNotEqual(EMU.port, EMU.cdn_port)
        self.assertGreater(EMU.port, 0)

    def test_ready_file_and_sigterm(self):
        with tempfile.TemporaryDirectory() as d:
            rf = os.path.join(d, "ready.json")
            e = EmulatorProcess(FIXTURES, "--ready-file", rf)
            with open(rf) as f:
                self.assertEqual(json.load(f), e.ready)
            self.assertEqual(request("GET", "/api/models/" + TINY, port=e.port).status, 200)
            self.assertEqual(e.stop(), 0)


class RepoInfoTest(EmulatorTest):

    def test_model_info(self):
        r = request("GET", "/api/models/" + TINY)
        self.assertEqual(r.status, 200)
        self.assertTrue(r.header("Content-Type").startswith("application/json"))
        info = r.json()
        self.assertEqual(info["id"], TINY)
        self.assertEqual(info["_id"], "65f0c0ffee0000000000a001")
        self.assertEqual(info["sha"], self.main_sha)
        self.assertEqual(info["lastModified"], "2024-03-01T12:30:00.000Z")
        self.assertIs(info["private"], False)
        self.assertIs(info["gated"], False)
        self.assertEqual(info["downloads"], 1234)
        self.assertEqual(info["likes"], 5)
        files, _ = disk_tree(files_dir("model/" + TINY, "main"))
        self.assertEqual(sorted(s["rfilename"] for s in info["siblings"]), sorted(files))
        self.assertEqual(info["safetensors"]["parameters"], {"F32": 136, "F16": 8, "I64": 16})

    def test_revision_forms(self):
        for rev, sha in (("main", self.main_sha), ("HEAD", self.main_sha),
                         ("v1.0", self.v1_sha), (q("refs/pr/1"), self.pr_sha),
                         (q("feature/x"), self.v1_sha), (self.pr_sha, self.pr_sha),
                         (self.v1_sha[:10], self.v1_sha), (q("refs/heads/main"), self.main_sha),
                         (q("refs/tags/v1.0"), self.v1_sha)):
            r = request("GET", "/api/models/%s/revision/%s" % (TINY, rev))
            self.assertEqual(r.status, 200, rev)
            self.assertEqual(r.json()["sha"], sha, rev)
        self.assertEqual(request("GET", "/api/models/%s/revision/v1.0" % TINY).json()
                         ["lastModified"], "2024-01-15T10:00:00.000Z")
        self.assertError(request("GET", "/api/models/%s/revision/nope" % TINY), 404,
                         "RevisionNotFound")

    def test_expand_and_blobs(self):
        r = request("GET", "/api/models/%s/revision/HEAD?expand=likes&expand=private" % TINY)
        self.assertEqual(r.json(), {"_id": "65f0c0ffee0000000000a001", "id": TINY, "likes": 5,
                                    "private": False})
        sib = {s["rfilename"]: s for s in
               request("GET", "/api/models/%s?blobs=true" % TINY).json()["siblings"]}
        st = read(os.path.join(files_dir("model/" + TINY, "main"), "model.safetensors"))
        self.assertEqual(sib["model.safetensors"]["size"], len(st))
        self.assertEqual(sib["model.safetensors"]["lfs"]["sha256"], hashlib.sha256(st).hexdigest())
        cfg = read(os.path.join(files_dir("model/" + TINY, "main"), "config.json"))
        self.assertEqual(sib["config.json"]["blobId"], hub.git_blob_oid(cfg))

    def test_dataset_and_space(self):
        d = request("GET", "/api/datasets/" + MANY).json()
        self.assertEqual(d["id"], MANY)
        self.assertEqual(len(d["siblings"]), 10000)
        s = request("GET", "/api/spaces/hfvfs-test/tiny-space").json()
        self.assertEqual(s["sdk"], "gradio")
        self.assertError(request("GET", "/api/datasets/" + TINY), 401, "RepoNotFound")

    def test_refs(self):
        r = request("GET", "/api/models/%s/refs?include_prs=1" % TINY).json()
        self.assertEqual({b["name"]: b["targetCommit"] for b in r["branches"]},
                         {"main": self.main_sha, "feature/x": self.v1_sha})
        self.assertEqual(r["tags"][0]["ref"], "refs/tags/v1.0")
        self.assertEqual(r["pullRequests"][0]["ref"], "refs/pr/1")

    def test_whoami(self):
        self.assertEqual(request("GET", "/api/whoami-v2", headers=auth(self.reader)).json()
                         ["name"], "hfvfs-reader")
        self.assertEqual(request("GET", "/api/whoami-v2").status, 401)


class TreeTest(EmulatorTest):

    def tree(self, rev="main", path="", query="", repo=TINY, rtype="models", headers=None):
        url = "/api/%s/%s/tree/%s%s" % (rtype, repo, rev, "/" + qpath(path) if path else "")
        return request("GET", url + ("?" + query if query else ""), headers=headers)

    def check_entries(self, entries, root):
        files, dirs = disk_tree(root)
        for e in entries:
            if e["type"] == "directory":
                self.assertIn(e["path"], dirs)
                self.assertEqual(e["size"], 0)
                self.assertRegex(e["oid"], "^[0-9a-f]{40}$")
                continue
            data = read(files[e["path"]])
            if hub.is_lfs_path(e["path"], len(data)):
                sha = hashlib.sha256(data).hexdigest()
                ptr = hub.lfs_pointer(sha, len(data))
                self.assertEqual(e["lfs"], {"oid": sha, "size": len(data),
                                            "pointerSize": len(ptr)})
                self.assertEqual(e["size"], len(ptr))
                self.assertEqual(e["oid"], hub.git_blob_oid(ptr))
            else:
                self.assertNotIn("lfs", e)
                self.assertEqual(e["size"], len(data))
                self.assertEqual(e["oid"], hub.git_blob_oid(data))

    def test_root_level(self):
        root = files_dir("model/" + TINY, "main")
        entries = self.tree().json()
        self.assertEqual(sorted(e["path"] for e in entries), sorted(os.listdir(root)))
        self.check_entries(entries, root)
        self.assertIn("onnx/model.onnx", [e["path"] for e in self.tree(path="onnx").json()])
        self.assertEqual([e["path"] for e in self.tree(path="a/b").json()], ["a/b/c"])
        sub = self.tree(path="dir with space").json()
        self.assertEqual([e["path"] for e in sub], ["dir with space/a+b=c%.txt"])

    def test_recursive_each_revision(self):
        for rev, key in (("main", "main"), ("v1.0", "v1"), (q("refs/pr/1"), "pr1")):
            root = files_dir("model/" + TINY, key)
            entries = self.tree(rev, query="recursive=true").json()
            files, dirs = disk_tree(root)
            self.assertEqual(sorted(e["path"] for e in entries), sorted(list(files) + list(dirs)))
            self.check_entries(entries, root)

    def test_pagination(self):
        seen, url, pages = [], "/api/datasets/%s/tree/main?recursive=true" % MANY, 0
        while url:
            r = request("GET", url)
            self.assertEqual(r.status, 200)
            seen += [e["path"] for e in r.json()]
            pages += 1
            link = r.header("Link")
            url = None
            if link:
                self.assertRegex(link, r'^<http://127\.0\.0\.1:%d/api/datasets/.*cursor=.*>; '
                                 r'rel="next"$' % EMU.port)
                url = link[link.index("<") + 1:link.index(">")]
                url = url[len("http://127.0.0.1:%d" % EMU.port):]
        self.assertEqual(pages, 11)
        self.assertEqual(len(seen), 10101)  # 10,000 files, 100 dirs and train/
        self.assertEqual(len(set(seen)), len(seen))
        # limit and a smaller configured page size keep the other parameters in the next link.
        control("config", {"tree_page_size": 40})
        r = self.tree(path="train/part-003", repo=MANY, rtype="datasets", query="limit=60")
        self.assertEqual(len(r.json()), 40)
        self.assertIn("limit=60", r.header("Link"))
        r = self.tree(path="train/part-003", repo=MANY, rtype="datasets", query="limit=30")
        self.assertEqual(len(r.json()), 30)

    def test_expand_last_commit(self):
        entries = {e["path"]: e for e in self.tree(query="recursive=true&expand=true").json()}
        self.assertEqual(entries["a/b/c/deep.txt"]["lastCommit"]["id"], self.main_sha)
        self.assertEqual(entries["tokenizer.json"]["lastCommit"]["id"], self.v1_sha)
        self.assertEqual(entries["tokenizer.json"]["lastCommit"]["title"], "Initial commit")
        self.assertEqual(entries["tokenizer.json"]["securityFileStatus"]["status"], "safe")
        plain = self.tree().json()
        self.assertNotIn("lastCommit", plain[0])

    def test_errors(self):
        self.assertError(self.tree(path="no/such"), 404, "EntryNotFound")
        self.assertError(self.tree(rev="nope"), 404, "RevisionNotFound")
        # An unencoded refs/pr/1 is not one segment: the revision is "refs".
        self.assertError(self.tree(rev="refs/pr/1"), 404, "RevisionNotFound")
        self.assertError(self.tree(repo="hfvfs-test/nope"), 401, "RepoNotFound")
        self.assertError(self.tree(repo="hfvfs-test/nope", headers=auth(self.reader)), 404,
                         "RepoNotFound")


class GitHashTest(EmulatorTest):
    """The oids and commit shas the emulator serves are those real git computes."""

    def test_against_git(self):
        repo = MANIFEST["repos"]["model/" + TINY]
        parent_of = {"v1": None, "main": "v1", "pr1": "main"}
        with tempfile.TemporaryDirectory() as tmp:
            gitdir = os.path.join(tmp, "git")
            env = dict(os.environ, GIT_DIR=gitdir, GIT_AUTHOR_NAME="hfvfs-test",
                       GIT_AUTHOR_EMAIL="test@hfvfs.invalid", GIT_COMMITTER_NAME="hfvfs-test",
                       GIT_COMMITTER_EMAIL="test@hfvfs.invalid")

            def git(cwd, *args):
                return subprocess.run(["git"] + list(args), cwd=cwd, env=env, check=True,
                                      capture_output=True, text=True).stdout.strip()

            git(tmp, "init", "-q", "--bare", gitdir)
            for key in ("v1", "main", "pr1"):  # parents first
                sha = repo["commits"][key]
                work = os.path.join(tmp, key)  # the commit's tree, LFS files as pointers
                files, _ = disk_tree(repo["files_dir"][key])
                for path, src in files.items():
                    dest = os.path.join(work, path)
                    os.makedirs(os.path.dirname(dest), exist_ok=True)
                    data = read(src)
                    if hub.is_lfs_path(path, len(data)):
                        data = hub.lfs_pointer(hashlib.sha256(data).hexdigest(), len(data))
                    with open(dest, "wb") as f:
                        f.write(data)
                git(work, "--work-tree", work, "read-tree", "--empty")
                git(work, "--work-tree", work, "add", "-A")
                tree = git(work, "write-tree")
                info = request("GET", "/api/models/%s/revision/%s" % (TINY, sha)).json()
                env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = "%d +0000" % (
                    hub.parse_iso(info["lastModified"]))
                paths = request("GET", "/api/models/%s/tree/%s?expand=true" % (TINY, sha)).json()
                title = [e["lastCommit"]["title"] for e in paths if e["lastCommit"]["id"] == sha]
                args = ["commit-tree", tree, "-m", title[0]]
                if parent_of[key]:
                    args += ["-p", repo["commits"][parent_of[key]]]
                self.assertEqual(git(work, *args), sha, key)
                entries = request("GET", "/api/models/%s/tree/%s?recursive=1" % (TINY, sha)).json()
                for e in entries:
                    self.assertEqual(git(work, "rev-parse", "%s:%s" % (tree, e["path"])),
                                     e["oid"], e["path"])


class PathsInfoTest(EmulatorTest):

    def test_json_and_form(self):
        url = "/api/models/%s/paths-info/%s" % (TINY, q("refs/pr/1"))
        body = json.dumps({"paths": ["pr-extra.txt", "onnx", "model.safetensors", "missing"],
                           "expand": False})
        r = request("POST", url, body=body, headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 200)
        got = {e["path"]: e for e in r.json()}
        self.assertEqual(set(got), {"pr-extra.txt", "onnx", "model.safetensors"})
        self.assertEqual(got["onnx"]["type"], "directory")
        self.assertEqual(got["model.safetensors"]["lfs"]["size"], 1016)
        self.assertNotIn("lastCommit", got["pr-extra.txt"])
        form = urllib.parse.urlencode([("paths", "pr-extra.txt"), ("paths", "config.json"),
                                       ("expand", "True")])
        r = request("POST", url, body=form,
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
        got = {e["path"]: e for e in r.json()}
        self.assertEqual(got["pr-extra.txt"]["lastCommit"]["id"], self.pr_sha)
        self.assertEqual(got["config.json"]["lastCommit"]["id"], self.main_sha)
        self.assertEqual(request("GET", url).status, 405)
        # A chunked body (no Content-Length) is read whole; the connection stays usable.
        conn = http.client.HTTPConnection("127.0.0.1", EMU.port, timeout=10)
        try:
            conn.request("POST", url, body=iter([b'{"paths": ["onnx", ', b'"README.md"]}']),
                         headers={"Content-Type": "application/json"}, encode_chunked=True)
            r = conn.getresponse()
            self.assertEqual(sorted(e["path"] for e in json.loads(r.read())),
                             ["README.md", "onnx"])
            conn.request("GET", "/api/models/" + TINY)
            self.assertEqual(conn.getresponse().status, 200)
        finally:
            conn.close()


class ResolveTest(EmulatorTest):

    def resolve(self, path, rev="main", method="GET", repo=TINY, prefix="", headers=None):
        return request(method, "/%s%s/resolve/%s/%s" % (prefix, repo, rev, qpath(path)),
                       headers=headers)

    def test_small_file_get_and_head(self):
        data = read(os.path.join(files_dir("model/" + TINY, "main"), "config.json"))
        for method in ("GET", "HEAD"):
            r = self.resolve("config.json", method=method)
            self.assertEqual(r.status, 200)
            self.assertEqual(r.header("ETag"), '"%s"' % hub.git_blob_oid(data))
            self.assertEqual(r.header("X-Repo-Commit"), self.main_sha)
            self.assertEqual(int(r.header("Content-Length")), len(data))
            self.assertEqual(r.header("Accept-Ranges"), "bytes")
            self.assertIsNone(r.header("X-Linked-Size"))
            self.assertEqual(r.body, data if method == "GET" else b"")
        r = self.resolve("config.json", headers={"If-None-Match": '"%s"' % hub.git_blob_oid(data)})
        self.assertEqual(r.status, 304)

    def test_names_revisions_repo_types(self):
        root = files_dir("model/" + TINY, "main")
        for name in ("with space #1.txt", "dir with space/a+b=c%.txt", "a/b/c/deep.txt",
                     "empty.txt", "unicode/h\u00e9llo w\u00f6rld \u65e5\u672c.txt"):
            r = self.resolve(name)
            self.assertEqual((r.status, r.body), (200, read(os.path.join(root, name))), name)
        v1 = read(os.path.join(files_dir("model/" + TINY, "v1"), "config.json"))
        self.assertNotEqual(v1, read(os.path.join(root, "config.json")))
        for rev in ("v1.0", self.v1_sha, q("feature/x")):
            r = self.resolve("config.json", rev=rev)
            self.assertEqual(r.body, v1)
            self.assertEqual(r.header("X-Repo-Commit"), self.v1_sha)
        self.assertEqual(self.resolve("pr-extra.txt", rev=q("refs/pr/1")).status, 200)
        self.assertError(self.resolve("pr-extra.txt"), 404, "EntryNotFound")
        self.assertError(self.resolve("config.json", rev="nope"), 404, "RevisionNotFound")
        self.assertError(self.resolve("x", repo="hfvfs-test/nope"), 401, "RepoNotFound")
        r = self.resolve("train/part-001/row-002.json", repo=MANY, prefix="datasets/")
        self.assertEqual(r.body, b'{"part": 1, "row": 2}\n')
        r = self.resolve("app.py", repo="hfvfs-test/tiny-space", prefix="spaces/")
        self.assertEqual(r.status, 200)
        # raw of an LFS file is its pointer.
        r = request("GET", "/%s/raw/main/model.safetensors" % TINY)
        self.assertTrue(r.body.startswith(b"version https://git-lfs.github.com/spec/v1\n"))

    def test_lfs_redirect_and_cdn(self):
        data = read(os.path.join(files_dir("model/" + TINY, "main"), "model.safetensors"))
        sha = hashlib.sha256(data).hexdigest()
        for method in ("HEAD", "GET"):
            r = self.resolve("model.safetensors", method=method)
            self.assertEqual(r.status, 302)
            self.assertEqual(r.header("X-Linked-Size"), str(len(data)))
            self.assertEqual(r.header("X-Linked-Etag"), '"%s"' % sha)
            self.assertEqual(r.header("X-Repo-Commit"), self.main_sha)
        loc = urllib.parse.urlsplit(r.header("Location"))
        self.assertEqual((loc.hostname, loc.port), ("127.0.0.1", EMU.cdn_port))
        params = urllib.parse.parse_qs(loc.query)
        self.assertIn("Signature", params)
        self.assertGreater(int(params["Expires"][0]), time.time() + 3000)
        target = loc.path + "?" + loc.query
        c = request("GET", target, port=EMU.cdn_port)
        self.assertEqual(c.status, 200)
        self.assertEqual(c.body, data)
        self.assertEqual(c.header("ETag"), '"%s"' % sha)
        self.assertEqual(c.header("Accept-Ranges"), "bytes")
        h = request("HEAD", target, port=EMU.cdn_port)
        self.assertEqual((h.status, h.body, h.header("Content-Length")), (200, b"", str(len(data))))
        # A range on the hub URL still redirects; the CDN serves the range.
        r = self.resolve("model.safetensors", headers={"Range": "bytes=0-7"})
        self.assertEqual(r.status, 302)
        c = request("GET", target, port=EMU.cdn_port, headers={"Range": "bytes=0-7"})
        self.assertEqual((c.status, c.body), (206, data[:8]))
        self.assertEqual(c.header("Content-Range"), "bytes 0-7/%d" % len(data))

    def test_cdn_signature_and_expiry(self):
        r = self.resolve("model.safetensors")
        loc = urllib.parse.urlsplit(r.header("Location"))
        params = dict(urllib.parse.parse_qsl(loc.query))

        def cdn(path, **changes):
            p = dict(params, **changes)
            return request("GET", path + "?" + urllib.parse.urlencode(p), port=EMU.cdn_port)

        self.assertEqual(cdn(loc.path).status, 200)
        bad = "0" * 64
        self.assertEqual(cdn(loc.path, Signature=bad).status, 403)
        self.assertEqual(cdn(loc.path, Expires=str(int(params["Expires"]) + 1)).status, 403)
        onnx = self.resolve("onnx/model.onnx").header("Location")
        self.assertEqual(cdn(urllib.parse.urlsplit(onnx).path).status, 403)  # other path
        self.assertEqual(request("GET", loc.path, port=EMU.cdn_port).status, 403)  # unsigned
        control("config", {"cdn_ttl": 1})
        short = urllib.parse.urlsplit(self.resolve("model.safetensors").header("Location"))
        target = short.path + "?" + short.query
        self.assertEqual(request("GET", target, port=EMU.cdn_port).status, 200)
        time.sleep(2.1)
        r = request("GET", target, port=EMU.cdn_port)
        self.assertEqual(r.status, 403)
        self.assertIn(b"expired", r.body)

    def test_ranges(self):
        data = read(os.path.join(files_dir("model/" + TINY, "main"), "tokenizer.json"))
        n = len(data)
        for rng, start, end in (("bytes=3-9", 3, 9), ("bytes=10-", 10, n - 1),
                                ("bytes=-5", n - 5, n - 1), ("bytes=0-0", 0, 0),
                                ("bytes=%d-%d" % (n - 2, n + 100), n - 2, n - 1),
                                ("bytes=-%d" % (n + 50), 0, n - 1)):
            r = self.resolve("tokenizer.json", headers={"Range": rng})
            self.assertEqual(r.status, 206, rng)
            self.assertEqual(r.body, data[start:end + 1], rng)
            self.assertEqual(r.header("Content-Range"), "bytes %d-%d/%d" % (start, end, n))
            self.assertEqual(int(r.header("Content-Length")), end - start + 1)
        for rng in ("bytes=%d-" % n, "bytes=%d-%d" % (n + 10, n + 20), "bytes=-0"):
            r = self.resolve("tokenizer.json", headers={"Range": rng})
            self.assertEqual(r.status, 416, rng)
            self.assertEqual(r.header("Content-Range"), "bytes */%d" % n)
        r = self.resolve("tokenizer.json", headers={"Range": "bytes=5-2"})
        self.assertEqual((r.status, r.body), (200, data))  # invalid: ignored
        r = self.resolve("tokenizer.json", method="HEAD", headers={"Range": "bytes=3-9"})
        self.assertEqual((r.status, r.header("Content-Length"), r.body), (206, "7", b""))
        loc = urllib.parse.urlsplit(self.resolve("onnx/model.onnx").header("Location"))
        r = request("GET", loc.path + "?" + loc.query, port=EMU.cdn_port,
                    headers={"Range": "bytes=70000-"})
        self.assertEqual((r.status, r.header("Content-Range")), (416, "bytes */65536"))

    def test_private_repo(self):
        root = files_dir("model/" + PRIVATE, "main")
        for url in ("/api/models/" + PRIVATE, "/api/models/%s/tree/main" % PRIVATE,
                    "/%s/resolve/main/config.json" % PRIVATE):
            self.assertError(request("GET", url), 401, "RepoNotFound")
            self.assertError(request("GET", url, headers=auth(self.noaccess)), 404,
                             "RepoNotFound")
            r = request("GET", url, headers=auth("hf_not_a_known_token"))
            self.assertEqual(r.status, 401)
            self.assertEqual(r.header("X-Error-Message"),
                             "Invalid credentials in Authorization header")
            self.assertEqual(request("GET", url, headers=auth(self.reader)).status, 200)
        r = request("GET", "/%s/resolve/main/config.json" % PRIVATE, headers=auth(self.reader))
        self.assertEqual(r.body, read(os.path.join(root, "config.json")))
        # Tokens added and revoked at run time (token rotation tests).
        control("tokens", {"token": "hf_rotated_0001", "repos": ["model/" + PRIVATE]})
        self.assertEqual(request("GET", "/api/models/" + PRIVATE,
                                 headers=auth("hf_rotated_0001")).status, 200)
        control("tokens", {"revoke": "hf_rotated_0001"})
        self.assertEqual(request("GET", "/api/models/" + PRIVATE,
                                 headers=auth("hf_rotated_0001")).status, 401)

    def test_gated_repo(self):
        gated = "hfvfs-test/gated-model"
        info = request("GET", "/api/models/" + gated).json()
        self.assertEqual(info["gated"], "auto")
        self.assertEqual(request("GET", "/api/models/%s/tree/main" % gated).status, 200)
        url = "/%s/resolve/main/config.json" % gated
        self.assertError(request("GET", url), 401, "GatedRepo")
        self.assertError(request("GET", url, headers=auth(self.noaccess)), 403, "GatedRepo")
        self.assertEqual(request("GET", url, headers=auth(self.reader)).status, 200)

    def test_keep_alive(self):
        conn = http.client.HTTPConnection("127.0.0.1", EMU.port, timeout=30)
        try:
            for path in ("/%s/resolve/main/config.json" % TINY, "/api/models/" + TINY,
                         "/%s/resolve/main/nope" % TINY, "/%s/resolve/main/README.md" % TINY):
                conn.request("GET", path)
                r = conn.getresponse()
                r.read()
                self.assertIn(r.status, (200, 404))
            sock = conn.sock
            conn.request("HEAD", "/%s/resolve/main/model.safetensors" % TINY)
            r = conn.getresponse()
            r.read()
            self.assertIs(conn.sock, sock)  # one connection for all five
        finally:
            conn.close()
        stats = control("stats", method="GET")
        self.assertEqual(stats["by_kind"]["hub resolve"], 4)


class FaultTest(EmulatorTest):

    URL = "/%s/resolve/main/tokenizer.json" % TINY

    def test_status_n_times_and_counters(self):
        ids = control("faults", {"path_glob": "*/tokenizer.json", "kind": "status",
                                 "status": 503, "times": 2})["ids"]
        self.assertEqual(len(ids), 1)
        self.assertEqual([request("GET", self.URL).status for _ in range(3)], [503, 503, 200])
        stats = control("stats", method="GET")
        self.assertEqual(stats["status"]["hub 503"], 2)
        self.assertEqual(stats["faults_fired"]["status */tokenizer.json"], 2)
        self.assertEqual(stats["by_path"]["hub GET " + self.URL], 3)
        self.assertEqual(control("faults", method="GET"), [])

    def test_delay(self):
        control("faults", {"path_glob": "/api/models/*", "kind": "delay", "delay_ms": 300})
        t = time.monotonic()
        self.assertEqual(request("GET", "/api/models/" + TINY).status, 200)
        self.assertGreaterEqual(time.monotonic() - t, 0.3)
        self.assertEqual(control("faults", method="GET"), [])  # one-shot: consumed
        self.assertEqual(control("stats", method="GET")["faults_fired"],
                         {"delay /api/models/*": 1})

    def test_ratelimit(self):
        control("faults", {"path_glob": "*/tree/*", "kind": "ratelimit", "ratelimit_t": 3,
                           "times": 1})
        r = request("GET", "/api/models/%s/tree/main" % TINY)
        self.assertEqual(r.status, 429)
        self.assertEqual(r.header("RateLimit"), '"api";r=0;t=3')
        self.assertIn("q=", r.header("RateLimit-Policy"))
        self.assertEqual(request("GET", "/api/models/%s/tree/main" % TINY).status, 200)

    def raw_get(self, path, port=None):
        """Returns (status, promised length, bytes received, how the stream ended)."""
        s = socket.create_connection(("127.0.0.1", port or EMU.port), timeout=10)
        try:
            s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path).encode())
            buf, end = b"", "eof"
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
            except ConnectionResetError:
                end = "reset"
            except socket.timeout:
                end = "timeout"
        finally:
            s.close()
        head, _, body = buf.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        hdrs = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        return int(lines[0].split()[1]), int(hdrs["Content-Length"]), body, end

    def test_truncate_and_drop(self):
        data = read(os.path.join(files_dir("model/" + TINY, "main"), "tokenizer.json"))
        control("faults", {"path_glob": self.URL, "kind": "truncate", "after_bytes": 100})
        status, promised, body, end = self.raw_get(self.URL)
        self.assertEqual((status, promised, body, end), (200, len(data), data[:100], "eof"))
        control("faults", {"path_glob": self.URL, "kind": "drop"})  # default: half the body
        status, promised, body, end = self.raw_get(self.URL)
        self.assertEqual((status, promised), (200, len(data)))
        self.assertEqual(body, data[:len(data) // 2])
        self.assertEqual(end, "reset")
        # Both are one-shot; http.client sees the cut as IncompleteRead.
        control("faults", {"path_glob": self.URL, "kind": "truncate", "after_bytes": 10})
        conn = http.client.HTTPConnection("127.0.0.1", EMU.port, timeout=10)
        conn.request("GET", self.URL)
        with self.assertRaises(http.client.IncompleteRead):
            conn.getresponse().read()
        conn.close()
        self.assertEqual(request("GET", self.URL).body, data)

    def test_cdn_port_faults_and_auth_seen(self):
        control("faults", [{"path_glob": "/lfs/*", "kind": "status", "status": 500,
                            "port": "cdn", "times": 0},
                           {"path_glob": "*", "kind": "truncate", "port": "cdn",
                            "method": "HEAD"}])
        r = request("GET", "/%s/resolve/main/model.safetensors" % TINY,
                    headers=auth(self.reader))
        self.assertEqual(r.status, 302)  # the hub port is not affected
        loc = urllib.parse.urlsplit(r.header("Location"))
        for _ in range(3):
            self.assertEqual(request("GET", loc.path + "?" + loc.query, port=EMU.cdn_port,
                                     headers=auth(self.reader)).status, 500)
        control("faults", method="DELETE")
        self.assertEqual(request("GET", loc.path + "?" + loc.query, port=EMU.cdn_port).status,
                         200)
        stats = control("stats", method="GET")
        self.assertEqual(stats["requests"], {"hub": 1, "cdn": 4})
        self.assertEqual(stats["cdn_authorization"], ["Bearer " + self.reader] * 3)
        self.assertEqual(stats["hub_authorization_count"], 1)
        self.assertEqual(stats["bytes_sent"]["cdn"] - stats["bytes_sent"]["hub"] > 0, True)
        self.assertEqual(stats["by_kind"]["cdn cdn"], 4)

    def test_bad_fault_and_reset(self):
        r = request("POST", "/_emulator/faults", body=json.dumps({"kind": "explode"}))
        self.assertEqual(r.status, 400)
        control("faults", {"path_glob": "*", "kind": "status", "times": 0})
        self.assertEqual(request("GET", self.URL).status, 500)
        control("reset")
        self.assertEqual(request("GET", self.URL).status, 200)
        self.assertEqual(control("stats", method="GET")["requests"], {"hub": 1, "cdn": 0})


class RefsControlTest(EmulatorTest):

    def test_move_branch(self):
        r = control("refs", {"repo": TINY, "branch": "main", "sha": self.pr_sha})
        self.assertEqual(r, {"old": self.main_sha, "new": self.pr_sha})
        self.assertEqual(request("GET", "/api/models/" + TINY).json()["sha"], self.pr_sha)
        self.assertEqual(request("GET", "/%s/resolve/main/pr-extra.txt" % TINY).status, 200)
        control("refs", {"repo": TINY, "tag": "v2.0", "sha": self.main_sha})
        self.assertEqual(request("GET", "/api/models/%s/revision/v2.0" % TINY).json()["sha"],
                         self.main_sha)
        r = request("POST", "/_emulator/refs",
                    body=json.dumps({"repo": TINY, "branch": "main", "sha": "0" * 40}))
        self.assertEqual(r.status, 400)
        control("reset")
        self.assertEqual(request("GET", "/api/models/" + TINY).json()["sha"], self.main_sha)
        info = control("info", method="GET")
        tiny = [x for x in info["repos"] if x["id"] == TINY][0]
        self.assertEqual(tiny["prs"], {"1": self.pr_sha})


if __name__ == "__main__":
    unittest.main()
