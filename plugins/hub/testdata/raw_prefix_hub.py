#!/usr/bin/python3
"""A deliberately sloppy Hub for one test: its tree API matches a raw key prefix, as the bucket
tree API does (hf-mount #207), so a listing of `a` also returns `ab/...`, `a` itself and deeper
entries, split over two pages linked with `Link`. Prints {"port": P, "pid": N} and serves until
SIGTERM. Binds 127.0.0.1 on a free port."""
import http.server
import json
import os
import signal
import sys

SHA = "c" * 40
PAGES = {
    "a": [
        [{"type": "file", "path": "a/x.txt", "size": 3, "oid": "1" * 40},
         {"type": "file", "path": "ab/neighbour.txt", "size": 5, "oid": "2" * 40},
         {"type": "directory", "path": "a", "size": 0, "oid": "3" * 40}],
        [{"type": "file", "path": "a/b/deeper.txt", "size": 7, "oid": "4" * 40},
         {"type": "directory", "path": "a/b", "size": 0, "oid": "5" * 40},
         {"type": "file", "path": "a.json", "size": 9, "oid": "6" * 40},
         {"type": "file", "path": "a/big.bin", "size": 134, "oid": "7" * 40,
          "lfs": {"oid": "8" * 64, "size": 123456789, "pointerSize": 134}}],
    ],
    "": [[{"type": "directory", "path": "a", "size": 0, "oid": "3" * 40},
          {"type": "directory", "path": "ab", "size": 0, "oid": "9" * 40},
          {"type": "file", "path": "a.json", "size": 9, "oid": "6" * 40}]],
}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, obj, link=None):
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if link:
            self.send_header("Link", f'<{link}>; rel="next"')
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path, _, query = self.path.partition("?")
        base = "/api/models/o/n"
        if path == f"{base}/revision/main":
            return self.send_json({"id": "o/n", "sha": SHA,
                                   "lastModified": "2024-01-01T00:00:00.000Z"})
        prefix = f"{base}/tree/{SHA}"
        if path == prefix or path.startswith(prefix + "/"):
            d = path[len(prefix) + 1:]
            pages = PAGES.get(d)
            if pages is None:
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            page = int(query.split("cursor=")[1]) if "cursor=" in query else 0
            link = None
            if page + 1 < len(pages):
                link = f"http://127.0.0.1:{self.server.server_port}{path}?cursor={page + 1}"
            return self.send_json(pages[page], link)
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()


def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    sys.stdout.write(json.dumps({"port": server.server_port, "pid": os.getpid()}) + "\n")
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
